// Package netnode is the node side of Cairn's networks: it applies the engine's
// NodeNetwork for one node, the data plane through vnet and, on the admin, one DHCP
// server per network through netdhcp, and remembers which version it applied so that
// the node can report it in its heartbeats.
package netnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/supervisor/netdhcp"
	"github.com/cairn-os/cairn/supervisor/vnet"
	"github.com/vishvananda/netns"
)

// Config says where a node's networks go.
type Config struct {
	// NS is the network namespace to change; zero means the caller's. The caller
	// keeps it open while the Applier is in use.
	NS netns.NsHandle
	// Underlay is the LAN interface that carries VXLAN; empty means none (one node).
	Underlay string
	// Uplink is, on the admin only, the interface towards the outside.
	Uplink string
	// Logger receives what changed; nil means slog.Default().
	Logger *slog.Logger
}

// Applier applies NodeNetworks to one node. Its methods are safe for concurrent use.
type Applier struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex // serialises Apply and Close
	servers map[int]*dhcpRun
	closed  bool

	vmu     sync.Mutex // only for version, so that Version does not wait for an Apply
	version string
	// dhcpFailed is set when a DHCP server ended with an error since the last Apply.
	dhcpFailed atomic.Bool
}

// New returns an Applier for cfg; nothing changes until Apply.
func New(cfg Config) *Applier {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Applier{cfg: cfg, log: cfg.Logger.With("component", "netnode"), servers: map[int]*dhcpRun{}}
}

// Apply makes the node match nn: links, addresses, routes and rules through vnet, then
// the DHCP servers of nn.DHCP on the networks' bridges. It checks all of nn before it
// changes anything. On success Version returns nn.Version; on failure it keeps the
// version applied before, so that the engine hands nn again.
func (a *Applier) Apply(ctx context.Context, nn engine.NodeNetwork) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return errors.New("netnode apply: the applier is closed")
	}
	want, err := a.dhcpConfigs(nn)
	if err != nil {
		return fmt.Errorf("netnode apply %s: %w", nn.Version, err)
	}
	state := vnet.State{Underlay: a.cfg.Underlay, Peers: nn.Peers, Networks: nn.Networks, Uplink: a.cfg.Uplink, Mappings: nn.Mappings}
	if err := (&vnet.Node{NS: a.cfg.NS, Logger: a.cfg.Logger}).Apply(ctx, state); err != nil {
		return fmt.Errorf("netnode apply %s: %w", nn.Version, err)
	}
	if err := a.reconcileDHCP(want); err != nil {
		return fmt.Errorf("netnode apply %s: %w", nn.Version, err)
	}
	a.vmu.Lock()
	changed := a.version != nn.Version
	a.version = nn.Version
	a.vmu.Unlock()
	if changed {
		a.log.Info("networks applied", "version", nn.Version, "networks", len(nn.Networks), "dhcp", len(want))
	}
	return nil
}

// Version returns the version of the last successful Apply, or "" before one. It also
// returns "" while a DHCP server has failed since (its socket could not be opened, say),
// so that the engine, seeing another version in the heartbeat, applies again, and that
// Apply restarts the server.
func (a *Applier) Version() string {
	if a.dhcpFailed.Load() {
		return ""
	}
	a.vmu.Lock()
	defer a.vmu.Unlock()
	return a.version
}

// Close stops the DHCP servers and refuses further Applies. The links, addresses and
// rules stay: a restarted supervisor takes them over with its first Apply.
func (a *Applier) Close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	for id := range a.servers {
		a.stop(id, "closing")
	}
}

// dhcpConfigs turns nn.DHCP into the servers' configurations and checks them.
func (a *Applier) dhcpConfigs(nn engine.NodeNetwork) ([]dhcpWant, error) {
	bridges := map[int]bool{} // network -> external
	for _, n := range nn.Networks {
		bridges[n.ID] = n.External
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	seen := map[int]bool{}
	var out []dhcpWant
	for _, d := range nn.DHCP {
		ext, ok := bridges[d.Network]
		if !ok {
			return nil, fmt.Errorf("dhcp for network %d, which has no bridge on this node", d.Network)
		}
		if ext != d.External {
			return nil, fmt.Errorf("dhcp for network %d: external is %v, the network's is %v", d.Network, d.External, ext)
		}
		if seen[d.Network] {
			return nil, fmt.Errorf("dhcp for network %d listed twice", d.Network)
		}
		seen[d.Network] = true
		cfg := netdhcp.Config{Interface: vnet.BridgeName(d.Network), Prefix: d.Prefix, Gateway: d.Gateway, DNS: d.DNS, MTU: d.MTU}
		if d.External {
			// The servers of an external segment are on the uplink's network, with the
			// admin's uplink address as router.
			if a.cfg.Uplink == "" {
				return nil, fmt.Errorf("dhcp for external segment %d on a node without an uplink: set Config.Uplink on the admin", d.Network)
			}
			up, err := vnet.UplinkAddress(a.cfg.NS, a.cfg.Uplink)
			if err != nil {
				return nil, fmt.Errorf("dhcp for external segment %d: %w", d.Network, err)
			}
			cfg.Prefix, cfg.Gateway = up.Masked(), up.Addr()
		}
		for _, l := range d.Leases {
			mac, err := net.ParseMAC(l.MAC)
			if err != nil {
				return nil, fmt.Errorf("dhcp for network %d: lease of %s: MAC %q: %w", d.Network, l.IP, l.MAC, err)
			}
			cfg.Leases = append(cfg.Leases, netdhcp.Lease{MAC: mac, IP: l.IP, Hostname: l.Hostname})
		}
		if _, err := netdhcp.New(cfg, quiet); err != nil {
			return nil, fmt.Errorf("dhcp for network %d: %w", d.Network, err)
		}
		out = append(out, dhcpWant{d.Network, cfg})
	}
	return out, nil
}
