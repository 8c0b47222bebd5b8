// Package engine is Cairn's service layer on the admin node: nodes, users, sessions,
// tokens and the engine's own settings, kept in the state store. The API and the web
// console both call it; neither reaches the store directly.
package engine

import (
	"errors"
	"time"

	"github.com/cairn-os/cairn/supervisor/service"
)

// Sentinel errors. The API maps each to one HTTP status in one place; wrap them with
// the operation and object, and write the message so that it says what to do.
var (
	ErrNotFound     = errors.New("not found")
	ErrExists       = errors.New("already exists")
	ErrInUse        = errors.New("in use")
	ErrQuota        = errors.New("quota exceeded")
	ErrInvalid      = errors.New("invalid")
	ErrUnauthorized = errors.New("unauthorized")
	ErrForbidden    = errors.New("forbidden")
	// ErrUnavailable means a node could not do its part now (unreachable, or it
	// refused); trying again later or elsewhere may work.
	ErrUnavailable = errors.New("unavailable")
)

// Role is what a user may do: admins everything, users their own resources, readonly
// users look without changing anything.
type Role string

// The roles a user can have.
const (
	RoleAdmin    Role = "admin"
	RoleUser     Role = "user"
	RoleReadonly Role = "readonly"
)

// User is an account of the engine.
type User struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Role      Role      `json:"role"`
	CreatedAt time.Time `json:"created_at"`
	// PasswordHash is a bcrypt hash; it never leaves the engine.
	PasswordHash []byte `json:"-"`
}

// NodeState is where a node is in its life.
type NodeState string

// The states of a node.
const (
	NodeJoining     NodeState = "joining"
	NodeReady       NodeState = "ready"
	NodeMaintenance NodeState = "maintenance"
	NodeDown        NodeState = "down"
)

// Node roles.
const (
	NodeRoleAdmin   = "admin"
	NodeRoleCompute = "compute"
)

// Disk is a block device a node reported when it joined.
type Disk struct {
	Name      string `json:"name"`
	SizeBytes uint64 `json:"size_bytes"`
	Model     string `json:"model,omitempty"`
}

// NIC is a network interface a node reported when it joined.
type NIC struct {
	Name      string   `json:"name"`
	MAC       string   `json:"mac"`
	Addresses []string `json:"addresses,omitempty"`
}

// Node is a compute machine of the engine (the admin node is one too).
type Node struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Named is true once an admin has named the node: the name then stays when the
	// node boots and joins again (otherwise it is the host name the node reports).
	Named           bool      `json:"named,omitempty"`
	MAC             string    `json:"mac"`
	Address         string    `json:"address"`
	Roles           []string  `json:"roles"`
	State           NodeState `json:"state"`
	CPUs            int       `json:"cpus"`
	MemoryBytes     uint64    `json:"memory_bytes"`
	MemoryFreeBytes uint64    `json:"memory_free_bytes"`
	Load1           float64   `json:"load1"`
	Disks           []Disk    `json:"disks,omitempty"`
	NICs            []NIC     `json:"nics,omitempty"`
	KVM             bool      `json:"kvm"`
	// Libvirt is what the admin read from the node's libvirtd over mutual TLS
	// ("libvirt 9.0.0, QEMU 7.2.0"); empty until it has reached it.
	Libvirt  string    `json:"libvirt,omitempty"`
	Version  string    `json:"version,omitempty"`
	JoinedAt time.Time `json:"joined_at"`
	LastSeen time.Time `json:"last_seen"`
	Owner    string    `json:"owner"`
}

// Info describes the engine as a whole: what the dashboard shows at the top.
type Info struct {
	Name             string    `json:"name"`
	Version          string    `json:"version"`
	URL              string    `json:"url"`
	CAFingerprint    string    `json:"ca_fingerprint"`
	StartedAt        time.Time `json:"started_at"`
	NodesTotal       int       `json:"nodes_total"`
	NodesReady       int       `json:"nodes_ready"`
	CPUsTotal        int       `json:"cpus_total"`
	MemoryBytesTotal uint64    `json:"memory_bytes_total"`
	MemoryFreeBytes  uint64    `json:"memory_free_bytes"`
	Settings         []string  `json:"warnings,omitempty"`
}

// Session is a browser login.
type Session struct {
	ID        string    `json:"-"`
	UserID    string    `json:"user_id"`
	CSRF      string    `json:"-"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Token is an API token of a user. The secret is shown once, when it is made.
type Token struct {
	ID        string    `json:"id"`
	UserID    string    `json:"user_id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	LastUsed  time.Time `json:"last_used,omitzero"`
	Secret    string    `json:"secret,omitempty"`
	// Hash is the SHA-256 of the secret; only it is stored.
	Hash []byte `json:"-"`
}

// ServiceStatus is the state of one supervised program, as the supervisor reports it.
type ServiceStatus = service.Status

// JoinRequest is what a compute node sends to join: its hardware and a PEM
// certificate request for the key it keeps in RAM. It carries the join token in the
// Authorization header as "Bearer <token>".
type JoinRequest struct {
	Name        string `json:"name"`
	MAC         string `json:"mac"`
	Address     string `json:"address"`
	CPUs        int    `json:"cpus"`
	MemoryBytes uint64 `json:"memory_bytes"`
	KVM         bool   `json:"kvm"`
	Disks       []Disk `json:"disks"`
	NICs        []NIC  `json:"nics"`
	Version     string `json:"version"`
	CSR         string `json:"csr"`
}

// JoinResponse gives the node its record, a certificate signed by the engine's CA and
// how often to beat.
type JoinResponse struct {
	Node             Node   `json:"node"`
	Certificate      string `json:"certificate"`
	CA               string `json:"ca"`
	HeartbeatSeconds int    `json:"heartbeat_seconds"`
	// Pools are the shared pools the node mounts over NFS from the admin, each at
	// the same path as on the admin.
	Pools []PoolExport `json:"pools,omitempty"`
	// LocalDir is where the node keeps child images on its local storage.
	LocalDir string `json:"local_dir,omitempty"`
}

// PoolExport is a shared pool as a node mounts it.
type PoolExport struct {
	ID   int    `json:"id"`
	Path string `json:"path"`
}

// Heartbeat is what a node sends every HeartbeatSeconds over mutual TLS.
type Heartbeat struct {
	Address         string  `json:"address"`
	CPUs            int     `json:"cpus"`
	MemoryBytes     uint64  `json:"memory_bytes"`
	MemoryFreeBytes uint64  `json:"memory_free_bytes"`
	Load1           float64 `json:"load1"`
	UptimeSeconds   float64 `json:"uptime_seconds"`
	// NetworkVersion is the NodeNetwork version the node applied last; the engine
	// hands the node its network again when it differs from the one it wants.
	NetworkVersion string `json:"network_version,omitempty"`
}
