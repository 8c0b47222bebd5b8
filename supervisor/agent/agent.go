package agent

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairn-os/cairn/supervisor/engine"
)

// Defaults of Config.
const (
	DefaultLibvirtSocket = "/run/libvirt/libvirt-sock"
	DefaultListenAddr    = ":16514"
	DefaultInterval      = 5 * time.Second
)

// Config is what a node agent needs to run.
type Config struct {
	// Args are the node's kernel arguments; AdminURL, Token and CAFingerprint are required.
	Args Args
	// Interval is the time between heartbeats until the admin says otherwise in its
	// join response (DefaultInterval when zero).
	Interval time.Duration
	// Logger receives the agent's log; slog.Default() when nil.
	Logger *slog.Logger
	// LibvirtSocket is the local libvirtd socket the proxy pipes to
	// (DefaultLibvirtSocket when empty).
	LibvirtSocket string
	// ListenAddr is where the libvirt proxy listens (DefaultListenAddr when empty).
	ListenAddr string
	// Version is the supervisor's version, reported when joining.
	Version string
	// Joined, when set, is called after every successful join with the admin's
	// answer (the shared pools to mount), in its own goroutine.
	Joined func(ctx context.Context, resp engine.JoinResponse)
	// ApplyNetwork, when set, applies what the admin hands the node of Cairn's
	// networks (network_proxy.go); NetworkVersion reports the version it applied
	// last, sent with every heartbeat.
	ApplyNetwork   func(ctx context.Context, nn engine.NodeNetwork) error
	NetworkVersion func() string
}

// Agent is a compute node's link to the admin: it joins, beats, and serves the local
// libvirt socket to the admin over mutual TLS.
type Agent struct {
	cfg Config
	log *slog.Logger

	// Backoff between join attempts: it doubles from minBackoff up to maxBackoff.
	minBackoff, maxBackoff time.Duration

	// ident is the node's certificate and the CA, nil until the first join.
	ident atomic.Pointer[nodeIdentity]

	// listening is closed once the proxy listens on addr.
	listening chan struct{}
	addr      net.Addr

	stateMu sync.Mutex
	state   string
}

// nodeIdentity is what a join gives the node.
type nodeIdentity struct {
	id   string
	cert tls.Certificate
	ca   *x509.CertPool
}

// New makes an agent from cfg, filling in the defaults.
func New(cfg Config) *Agent {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.LibvirtSocket == "" {
		cfg.LibvirtSocket = DefaultLibvirtSocket
	}
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = DefaultListenAddr
	}
	return &Agent{
		cfg:        cfg,
		log:        cfg.Logger.With("component", "agent"),
		minBackoff: time.Second,
		maxBackoff: 30 * time.Second,
		listening:  make(chan struct{}),
	}
}

// Run joins the admin and keeps the node known to it until ctx ends, then returns nil.
// While the admin is unreachable or refuses the join it retries with backoff, forever;
// when the admin no longer knows the node (a heartbeat gets 401, 403 or 404) it joins
// again. The libvirt proxy listens from the start but serves only once the node has
// a certificate. Run returns an error only when it cannot start: bad arguments, or the
// proxy's address is taken.
// Call Run once per Agent.
func (a *Agent) Run(ctx context.Context) error {
	args := a.cfg.Args
	if args.AdminURL == "" || args.Token == "" || args.CAFingerprint == "" {
		return errors.New("agent: cairn.admin, cairn.token and cairn.ca are all needed to join")
	}
	fp, err := parseFingerprint(args.CAFingerprint)
	if err != nil {
		return fmt.Errorf("agent: ca fingerprint %q: %w", args.CAFingerprint, err)
	}
	host, err := adminHost(args.AdminURL)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	// The key lives in RAM only: a node keeps no state, and joins again after a reboot.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("agent: generate node key: %w", err)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", a.cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("agent: libvirt proxy listen %s: %w", a.cfg.ListenAddr, err)
	}
	a.addr = ln.Addr()
	close(a.listening)

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		ln.Close()
		wg.Wait()
	}()
	wg.Go(func() { a.serveProxy(ctx, ln) })
	a.log.Info("libvirt proxy listening", "addr", ln.Addr().String(), "socket", a.cfg.LibvirtSocket)

	joinClient := httpClient(adminTLS(fp, host))
	defer joinClient.CloseIdleConnections()
	for ctx.Err() == nil {
		if a.safely("join and heartbeat", func() { a.session(ctx, joinClient, key, fp, host) }) {
			sleep(ctx, a.minBackoff) // a panic: do not spin
		}
	}
	return nil
}

// session joins (retrying until it succeeds or ctx ends) and beats until the admin
// loses the node or ctx ends.
func (a *Agent) session(ctx context.Context, hc *http.Client, key crypto.Signer, fp []byte, host string) {
	resp, id, err := a.joinLoop(ctx, hc, key, fp, host)
	if err != nil {
		return // ctx ended
	}
	a.ident.Store(id)
	if a.cfg.Joined != nil {
		// Mounting the shared pools can take a while (NFS); the heartbeats must not wait.
		go a.safely("joined", func() { a.cfg.Joined(ctx, resp) })
	}
	a.heartbeatLoop(ctx, resp, id, host)
}

// joinLoop sends join requests until one succeeds, waiting 1 s, 2 s, … 30 s between them.
func (a *Agent) joinLoop(ctx context.Context, hc *http.Client, key crypto.Signer, fp []byte, host string) (engine.JoinResponse, *nodeIdentity, error) {
	delay := a.minBackoff
	for {
		req, err := a.joinRequest(ctx, key, host)
		if err == nil {
			var resp engine.JoinResponse
			var cert tls.Certificate
			var pool *x509.CertPool
			resp, cert, pool, err = join(ctx, hc, a.cfg.Args.AdminURL, a.cfg.Args.Token, req, key, fp)
			if err == nil {
				a.setState("joined", slog.LevelInfo, "joined the admin",
					"node", resp.Node.ID, "admin", a.cfg.Args.AdminURL, "address", req.Address)
				return resp, &nodeIdentity{id: resp.Node.ID, cert: cert, ca: pool}, nil
			}
		}
		if ctx.Err() != nil {
			return engine.JoinResponse{}, nil, ctx.Err()
		}
		if errors.Is(err, errRejected) {
			a.setState("join rejected", slog.LevelError, "admin rejected the join token, retrying",
				"admin", a.cfg.Args.AdminURL, "err", err)
		} else {
			a.setState("join failing", slog.LevelWarn, "cannot join the admin, retrying",
				"admin", a.cfg.Args.AdminURL, "err", err)
		}
		if !sleep(ctx, delay) {
			return engine.JoinResponse{}, nil, ctx.Err()
		}
		delay = min(delay*2, a.maxBackoff)
	}
}

// joinRequest describes this machine, with the MAC and address of the interface that
// carries the route to the admin (that is where the admin will reach the node).
func (a *Agent) joinRequest(ctx context.Context, key crypto.Signer, host string) (engine.JoinRequest, error) {
	req, err := Inventory(ctx)
	if err != nil {
		return req, fmt.Errorf("join: %w", err)
	}
	if nic, addr, err := InterfaceToward(ctx, host); err == nil {
		req.Address = addr.String()
		if nic.MAC != "" {
			req.MAC = nic.MAC
		}
	}
	req.Version = a.cfg.Version
	if req.CSR, err = newCSR(key, req.Name); err != nil {
		return req, fmt.Errorf("join: %w", err)
	}
	return req, nil
}

// setState logs msg when the agent's state changes, so that a state that lasts (the
// admin unreachable for an hour) is logged once.
func (a *Agent) setState(state string, level slog.Level, msg string, attrs ...any) {
	a.stateMu.Lock()
	prev := a.state
	a.state = state
	a.stateMu.Unlock()
	if prev != state {
		a.log.Log(context.Background(), level, msg, attrs...)
	}
}

// safely runs fn and recovers a panic in it: the panic is logged with its stack and
// the caller carries on. It reports whether fn panicked.
func (a *Agent) safely(what string, fn func()) (panicked bool) {
	defer func() {
		if r := recover(); r != nil {
			a.log.Error("recovered from a panic", "in", what, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			panicked = true
		}
	}()
	fn()
	return false
}

// sleep waits d or until ctx ends; it reports whether the whole time passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
