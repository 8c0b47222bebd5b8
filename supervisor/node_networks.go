package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"sync"

	"github.com/cairn-os/cairn/supervisor/agent"
	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/supervisor/netnode"
)

// Cairn's networks on the nodes: the admin applies its own part (gateways, DHCP,
// masquerade, mappings) in-process; a compute node's part goes to its agent over
// mutual TLS (agent.PushNetwork) and the agent applies it the same way.

// networkApplier applies a node's part of the networks and says which version it has.
type networkApplier interface {
	Apply(ctx context.Context, nn engine.NodeNetwork) error
	Version() string
}

// applyNetwork hands node n its part: in-process for the admin, through the agent
// for a compute node.
func (l *nodeLink) applyNetwork(ctx context.Context, n engine.Node, nn engine.NodeNetwork) error {
	if n.ID == engine.LocalNodeID {
		if l.net == nil {
			return errors.New("this admin applies no networks")
		}
		return l.net.Apply(ctx, nn)
	}
	if l.e == nil {
		return errors.New("the engine is still starting")
	}
	cert, err := l.e.CA().ClientCertificate(agent.AdminCN)
	if err != nil {
		return err
	}
	return agent.PushNetwork(ctx, net.JoinHostPort(n.Address, "16514"), agent.ClientTLS(cert, l.e.CA().Pool(), n.ID), nn)
}

// localNetworkVersion is the version the admin's own part has.
func (l *nodeLink) localNetworkVersion() string {
	if l.net == nil {
		return ""
	}
	return l.net.Version()
}

// reservedPrefixes are the admin's own networks inside 10.0.0.0/8 that no internal
// network may take.
func reservedPrefixes(nw adminNetwork) []netip.Prefix {
	ten := netip.MustParsePrefix("10.0.0.0/8")
	var out []netip.Prefix
	for _, p := range append([]netip.Prefix{nw.lan}, nw.uplink...) {
		if p.IsValid() && p.Addr().Is4() && ten.Overlaps(p) {
			out = append(out, p.Masked())
		}
	}
	return out
}

// recordsOnly is the admin's part in development mode: the engine keeps networks and
// connections as records, and the host's network is left alone.
type recordsOnly struct {
	mu      sync.Mutex
	version string
}

func (r *recordsOnly) Apply(ctx context.Context, nn engine.NodeNetwork) error {
	if len(nn.Networks) > 0 {
		return errors.New("a development engine (--dev) makes no bridges, gateways or rules: run networks on the appliance")
	}
	r.mu.Lock()
	r.version = nn.Version
	r.mu.Unlock()
	return nil
}

func (r *recordsOnly) Version() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.version
}

// computeNetworks is a compute node's side: the LAN interface toward the admin
// carries VXLAN; it is looked up on the first apply (the node may have several NICs).
type computeNetworks struct {
	adminURL string
	log      *slog.Logger

	mu sync.Mutex
	a  *netnode.Applier
}

func (c *computeNetworks) Apply(ctx context.Context, nn engine.NodeNetwork) error {
	c.mu.Lock()
	a := c.a
	if a == nil {
		u, err := url.Parse(c.adminURL)
		if err != nil {
			c.mu.Unlock()
			return fmt.Errorf("admin url %q: %w", c.adminURL, err)
		}
		nic, _, err := agent.InterfaceToward(ctx, u.Hostname())
		if err != nil {
			c.mu.Unlock()
			return fmt.Errorf("LAN interface toward the admin: %w", err)
		}
		a = netnode.New(netnode.Config{Underlay: nic.Name, Logger: c.log})
		c.a = a
	}
	c.mu.Unlock()
	return a.Apply(ctx, nn)
}

func (c *computeNetworks) Version() string {
	c.mu.Lock()
	a := c.a
	c.mu.Unlock()
	if a == nil {
		return ""
	}
	return a.Version()
}
