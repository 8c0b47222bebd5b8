package engine

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cairn-os/cairn/supervisor/console"
	"github.com/cairn-os/cairn/supervisor/hostcmd"
	"github.com/cairn-os/cairn/supervisor/pki"
	"github.com/cairn-os/cairn/supervisor/pool"
	"github.com/cairn-os/cairn/supervisor/service"
	"github.com/cairn-os/cairn/supervisor/store"
	"github.com/cairn-os/cairn/supervisor/virt"
	"golang.org/x/crypto/bcrypt"
)

// Buckets of the state store and the keys of the meta bucket.
const (
	bucketMeta     = "meta"
	bucketUsers    = "users"
	bucketSessions = "sessions"
	bucketTokens   = "tokens"
	bucketNodes    = "nodes"

	metaJoinToken   = "join_token"
	metaAdminLoaded = "admin_bootstrapped"
)

// Where nodes keep local child images, console sockets and serial logs.
const (
	DefaultLocalDir      = "/var/lib/cairn/local"
	DefaultConsoleDir    = "/run/cairn/consoles"
	DefaultConsoleLogDir = "/var/log/cairn/consoles"
)

// DefaultHeartbeatInterval is how often nodes beat unless Config says otherwise.
const DefaultHeartbeatInterval = 5 * time.Second

// recheckInterval is how often a node's watcher compares libvirt's list of domains
// with the recorded server states, to catch a lost event.
const recheckInterval = time.Minute

// missedBeats is how many intervals without a beat make a node down.
const missedBeats = 3

// probeEvery is how many heartbeats pass between two probes of a node's libvirtd.
const probeEvery = 10

// Config is what the supervisor gives the engine.
type Config struct {
	// StateDir holds cairn.db and pki/.
	StateDir string
	// Name is the engine's name ("cairn" when empty).
	Name string
	// Version is the build's version, shown in Info.
	Version string
	// URL is the https URL people use, shown in Info.
	URL string
	// LANURL is the https URL compute nodes use (https://10.0.0.1); it goes into
	// their kernel arguments.
	LANURL string
	// HeartbeatInterval is how often nodes beat (DefaultHeartbeatInterval when 0).
	HeartbeatInterval time.Duration
	// Services reports the supervisor's services; nil means none.
	Services func() []service.Status
	// ProbeNode, when set, asks a node's libvirtd for its version over mutual TLS
	// after a join and every ten beats; the answer goes into Node.Libvirt.
	ProbeNode func(ctx context.Context, n Node) (string, error)
	// Logger receives the engine's log; nil discards it.
	Logger *slog.Logger
	// Now is the clock (time.Now when nil); tests set it.
	Now func() time.Time
	// PoolsDir is where pools are on every node (<StateDir>/pools when empty); pool
	// 0 is <PoolsDir>/0.
	PoolsDir string
	// Pool0Driver is the driver of pool 0: "btrfs" on the appliance's data disk,
	// "dir" when empty.
	Pool0Driver string
	// LocalDir is every node's local storage for child images (<StateDir>/local
	// when empty).
	LocalDir string
	// ConsoleDir and ConsoleLogDir are where each node keeps its servers' console
	// sockets and serial logs.
	ConsoleDir, ConsoleLogDir string
	// DomainType forces the libvirt domain type ("qemu" for TCG); empty chooses
	// "kvm" on nodes that have KVM.
	DomainType string
	// Runner runs host programs (qemu-img, btrfs, mkfs); hostcmd.Exec when nil.
	Runner hostcmd.Runner
	// Hypervisor connects to a node's libvirtd; the caller closes the connection.
	Hypervisor func(ctx context.Context, n Node) (*virt.Conn, error)
	// Console says how to reach a server's console on node n.
	Console func(n Node, uuid string, kind console.Kind) console.Target
	// PoolsChanged is told the shared pools whenever they change (NFS exports).
	PoolsChanged func(shared []Pool)
	// ApplyNetwork hands node n what it must have of Cairn's networks; nil leaves
	// networking out (tests of other parts).
	ApplyNetwork func(ctx context.Context, n Node, nn NodeNetwork) error
	// ReservedPrefixes are ranges inside 10.0.0.0/8 no internal network may take:
	// the appliance's LAN.
	ReservedPrefixes []netip.Prefix
	// BcryptCost is the cost of password hashes (bcrypt.DefaultCost when 0); tests
	// lower it.
	BcryptCost int
}

// Engine is the service layer of the admin node. Its methods take the calling user
// and check what that user may do, so the API and the web console enforce the same
// rules.
type Engine struct {
	cfg       Config
	log       *slog.Logger
	store     *store.Store
	ca        *pki.CA
	joinToken string
	started   time.Time

	// dummyHash makes a login with an unknown name cost as much as a wrong password.
	dummyHash []byte

	beatsMu sync.Mutex
	beats   map[string]int

	pools       map[int]pool.Pool
	poolsMu     sync.Mutex
	poolsCreate sync.Mutex
	rollbackMu  sync.Mutex

	opsMu sync.Mutex
	ops   map[string]*opRun

	uploadsMu sync.Mutex
	// uploading holds a channel per upload receiving a chunk, closed when it ends.
	uploading map[string]chan struct{}

	// placeMu makes placement and start one at a time, so two starts do not both
	// take the last free memory of a node.
	placeMu sync.Mutex

	watchMu  sync.Mutex
	watching map[string]bool

	net netSync

	stateMu sync.Mutex
	stateCh chan struct{}

	bg     context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Open opens the engine's state in cfg.StateDir: the state store, the CA and the join
// token (made on first boot and kept).
func Open(ctx context.Context, cfg Config) (*Engine, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("open engine: no state directory given")
	}
	if cfg.Name == "" {
		cfg.Name = "cairn"
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	// Without explicit folders (tests, --dev) pools and local storage live beside
	// the state; the appliance gives DefaultPoolsDir and DefaultLocalDir.
	if cfg.PoolsDir == "" {
		cfg.PoolsDir = filepath.Join(cfg.StateDir, "pools")
	}
	if cfg.Pool0Driver == "" {
		cfg.Pool0Driver = "dir"
	}
	if cfg.LocalDir == "" {
		cfg.LocalDir = filepath.Join(cfg.StateDir, "local")
	}
	if cfg.ConsoleDir == "" {
		cfg.ConsoleDir = DefaultConsoleDir
	}
	if cfg.ConsoleLogDir == "" {
		cfg.ConsoleLogDir = DefaultConsoleLogDir
	}
	if cfg.Runner == nil {
		cfg.Runner = hostcmd.Exec{}
	}
	if cfg.BcryptCost == 0 {
		cfg.BcryptCost = bcrypt.DefaultCost
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("open engine: %w", err)
	}
	st, err := store.Open(filepath.Join(cfg.StateDir, store.FileName))
	if err != nil {
		return nil, fmt.Errorf("open engine: %w", err)
	}
	ca, err := pki.LoadOrCreate(filepath.Join(cfg.StateDir, "pki"))
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("open engine: %w", err)
	}
	var token string
	err = st.Update(func(tx *store.Tx) error {
		if err := tx.Get(bucketMeta, metaJoinToken, &token); err == nil {
			return nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		token = randomHex(32)
		return tx.Put(bucketMeta, metaJoinToken, token)
	})
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("open engine: join token: %w", err)
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte(randomHex(16)), cfg.BcryptCost)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("open engine: %w", err)
	}
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e := &Engine{
		cfg:       cfg,
		log:       cfg.Logger.With("component", "engine"),
		store:     st,
		ca:        ca,
		joinToken: token,
		started:   cfg.Now(),
		dummyHash: dummy,
		beats:     map[string]int{},
		bg:        bg,
		cancel:    cancel,
		pools:     map[int]pool.Pool{},
		ops:       map[string]*opRun{},
		uploading: map[string]chan struct{}{},
		watching:  map[string]bool{},
		stateCh:   make(chan struct{}),
	}
	if err := e.failInterrupted(); err != nil {
		st.Close()
		return nil, fmt.Errorf("open engine: operations: %w", err)
	}
	if err := e.openPools(ctx); err != nil {
		st.Close()
		return nil, fmt.Errorf("open engine: %w", err)
	}
	// Only now, with the interrupted operations marked failed and the pools open, and
	// before anything can start new work, is every temporary folder a leftover.
	e.sweepTemp()
	// The watchers of the nodes' libvirt events start with each node's first
	// heartbeat to this engine, not here: the callbacks in cfg may not be ready
	// before Open returns.
	e.log.Info("engine opened", "state", cfg.StateDir, "ca", ca.Fingerprint())
	return e, nil
}

// Close waits for background probes and closes the state store.
func (e *Engine) Close() error {
	e.cancel()
	e.wg.Wait()
	return e.store.Close()
}

// CA is the engine's certificate authority.
func (e *Engine) CA() *pki.CA { return e.ca }

// JoinToken is the secret compute nodes present to join; it is made on first boot
// and goes into their kernel arguments.
func (e *Engine) JoinToken() string { return e.joinToken }

// HeartbeatInterval is how often nodes beat.
func (e *Engine) HeartbeatInterval() time.Duration { return e.cfg.HeartbeatInterval }

func (e *Engine) now() time.Time { return e.cfg.Now().UTC() }

// randomBytes returns n random bytes; crypto/rand.Read never fails (it crashes the
// program instead when the kernel has no randomness to give).
func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string { return hex.EncodeToString(randomBytes(n)) }

// randomB64 returns n random bytes in unpadded URL-safe base64.
func randomB64(n int) string { return base64.RawURLEncoding.EncodeToString(randomBytes(n)) }

// notFound turns the store's ErrNotFound (or a wrapped one of ours) into the bare
// engine sentinel, for the caller to wrap with its own operation.
func notFound(err error) error {
	if isNotFound(err) {
		return ErrNotFound
	}
	return err
}

// requireUser refuses a call without a signed-in user.
func requireUser(u User, op string) error {
	if u.ID == "" {
		return fmt.Errorf("%s: %w: sign in first", op, ErrUnauthorized)
	}
	return nil
}

// requireWriter refuses readonly users.
func requireWriter(u User, op string) error {
	if err := requireUser(u, op); err != nil {
		return err
	}
	if u.Role == RoleReadonly {
		return fmt.Errorf("%s: %w: readonly users can only look; ask an admin", op, ErrForbidden)
	}
	return nil
}

// requireAdmin refuses everyone but admins.
func requireAdmin(u User, op string) error {
	if err := requireUser(u, op); err != nil {
		return err
	}
	if u.Role != RoleAdmin {
		return fmt.Errorf("%s: %w: only admins can do this", op, ErrForbidden)
	}
	return nil
}

func jsonUnmarshal(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode stored %T: %w", v, err)
	}
	return nil
}

func isNotFound(err error) bool {
	return errors.Is(err, store.ErrNotFound) || errors.Is(err, ErrNotFound)
}
