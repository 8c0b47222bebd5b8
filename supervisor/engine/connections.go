package engine

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/cairn-os/cairn/supervisor/netdhcp"
	"github.com/cairn-os/cairn/supervisor/store"
	"github.com/cairn-os/cairn/supervisor/vnet"
)

// Connections: a server's network interfaces. Each has a MAC and fixed addresses,
// allocated inside one store transaction, and can be attached to a server and
// detached again, also while it runs (NIC hot-plug).

const bucketConnections = "connections"

func connOp(verb, id string) string { return fmt.Sprintf("%s connection %q", verb, id) }

// Connections lists the connections the user may see: their own, all for admins.
func (e *Engine) Connections(ctx context.Context, u User) ([]Connection, error) {
	if err := requireUser(u, "list connections"); err != nil {
		return nil, err
	}
	all, err := store.List[Connection](e.store, bucketConnections)
	if err != nil {
		return nil, fmt.Errorf("list connections: %w", err)
	}
	return slices.DeleteFunc(all, func(c Connection) bool { return !canSee(u, c.Owner) }), nil
}

// Connection returns one connection the user may see.
func (e *Engine) Connection(ctx context.Context, u User, id string) (Connection, error) {
	op := connOp("get", id)
	if err := requireUser(u, op); err != nil {
		return Connection{}, err
	}
	var c Connection
	err := e.store.View(func(tx *store.Tx) error {
		var err error
		c, err = getConnection(tx, u, id)
		return err
	})
	if err != nil {
		return Connection{}, fmt.Errorf("%s: %w", op, err)
	}
	return c, nil
}

func getConnection(tx *store.Tx, u User, id string) (Connection, error) {
	var c Connection
	if err := tx.Get(bucketConnections, id, &c); err != nil || !canSee(u, c.Owner) {
		return Connection{}, fmt.Errorf("%w: no connection %q; list them with GET /api/v1/connections", ErrNotFound, id)
	}
	return c, nil
}

// externalOf is the external address a connection holds, if any.
func externalOf(c Connection) (netip.Addr, bool) {
	var s string
	switch c.Kind {
	case ConnExternal:
		s = c.Address
	case ConnMapping:
		s = c.External
	default:
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s)
	return a, err == nil
}

// normalPorts parses a mapping's port list and writes it back in one spelling.
func normalPorts(s string) (string, []vnet.PortRule, error) {
	if strings.TrimSpace(s) == "" {
		return "", nil, nil
	}
	rules, err := vnet.ParsePorts(s)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	parts := make([]string, len(rules))
	for i, r := range rules {
		parts[i] = r.String()
	}
	return strings.Join(parts, ","), rules, nil
}

// CreateConnection makes a connection with its addresses and, when req.Server is
// given, attaches it to that server.
func (e *Engine) CreateConnection(ctx context.Context, u User, req ConnectionRequest) (Connection, error) {
	op := fmt.Sprintf("create %s connection", req.Kind)
	if err := requireWriter(u, op); err != nil {
		return Connection{}, err
	}
	if req.Kind != ConnInternal && req.Kind != ConnExternal && req.Kind != ConnMapping {
		return Connection{}, fmt.Errorf("create connection: %w: kind %q must be internal, external or mapping", ErrInvalid, req.Kind)
	}
	if req.Name == "" {
		req.Name = string(req.Kind)
	}
	if err := checkName("connection", req.Name); err != nil {
		return Connection{}, fmt.Errorf("%s: %w", op, err)
	}
	ports := ""
	if req.Kind == ConnMapping {
		var err error
		if ports, _, err = normalPorts(req.Ports); err != nil {
			return Connection{}, fmt.Errorf("%s: ports: %w", op, err)
		}
	} else if req.Ports != "" {
		return Connection{}, fmt.Errorf("%s: %w: only mapping connections take a port list", op, ErrInvalid)
	}
	c := Connection{ID: "c-" + randomHex(6), Name: req.Name, Owner: u.ID, Kind: req.Kind, MAC: randomMAC(),
		Ports: ports, CreatedAt: e.now()}
	err := e.store.Update(func(tx *store.Tx) error {
		conns, err := store.ListTx[Connection](tx, bucketConnections)
		if err != nil {
			return err
		}
		st := e.settingsTx(tx)
		if req.Kind != ConnInternal {
			if err := e.takeExternal(tx, u, &c, req, conns, st); err != nil {
				return err
			}
		}
		if req.Kind == ConnExternal {
			if req.Network != 0 || req.Address != "" && req.External != "" {
				return fmt.Errorf("%w: an external connection takes no network and one address (external)", ErrInvalid)
			}
			return tx.Put(bucketConnections, c.ID, c)
		}
		if err := takeInternal(tx, u, &c, req, conns); err != nil {
			return err
		}
		return tx.Put(bucketConnections, c.ID, c)
	})
	if err != nil {
		return Connection{}, fmt.Errorf("%s: %w", op, err)
	}
	e.log.Info("connection created", "connection", c.ID, "kind", c.Kind, "address", c.Address, "external", c.External, "by", u.Name)
	if req.Server != "" {
		attached, err := e.AttachConnection(ctx, u, c.ID, req.Server)
		if err != nil {
			// Nothing half-done: the connection goes again.
			e.deleteConnectionRecord(c)
			e.syncNetworks(ctx)
			return Connection{}, err
		}
		return attached, nil
	}
	e.syncNetworks(ctx)
	return c, nil
}

// takeInternal sets c's network and internal address from req.
func takeInternal(tx *store.Tx, u User, c *Connection, req ConnectionRequest, conns []Connection) error {
	if req.Network == 0 {
		return fmt.Errorf("%w: name the internal network (network) the connection is on", ErrInvalid)
	}
	n, err := getNetwork(tx, u, req.Network)
	if err != nil {
		return err
	}
	if n.Kind != NetworkInternal {
		return fmt.Errorf("%w: network %d is an external segment; give an internal network", ErrInvalid, n.ID)
	}
	if n.Owner != c.Owner {
		return fmt.Errorf("%w: network %d belongs to another user; connections go on their owner's networks", ErrForbidden, n.ID)
	}
	p, err := netip.ParsePrefix(n.Prefix)
	if err != nil {
		return fmt.Errorf("network %d has a broken prefix %q: %w", n.ID, n.Prefix, err)
	}
	gw, _ := netip.ParseAddr(n.Gateway)
	used := []netip.Addr{gw}
	for _, o := range conns {
		if o.Network == n.ID && o.Kind != ConnExternal {
			if a, err := netip.ParseAddr(o.Address); err == nil {
				used = append(used, a)
			}
		}
	}
	var a netip.Addr
	if req.Address != "" {
		a, err = netip.ParseAddr(strings.TrimSpace(req.Address))
		b := a.As4()
		if err != nil || !a.Is4() || !p.Contains(a) || b[3] < netdhcp.FirstHost || b[3] > netdhcp.LastHost {
			return fmt.Errorf("%w: address %q: give a host address of %s from .%d to .%d", ErrInvalid, req.Address, p, netdhcp.FirstHost, netdhcp.LastHost)
		}
		if slices.Contains(used, a) {
			return fmt.Errorf("%w: address %s is taken on network %d; leave it empty to get a free one", ErrExists, a, n.ID)
		}
	} else if a, err = netdhcp.NextHost(p, used); err != nil {
		return allocErr(err)
	}
	c.Network, c.Address = n.ID, a.String()
	return nil
}

// takeExternal gives c an external address from the configured range (the one asked
// for or the next free one) within the owner's quota; an external connection also gets
// the owner's external segment, made on first use.
func (e *Engine) takeExternal(tx *store.Tx, u User, c *Connection, req ConnectionRequest, conns []Connection, st Settings) error {
	r, err := parseRange(st.ExternalRange)
	if err != nil {
		return err
	}
	if r.empty() {
		return fmt.Errorf("%w: no external addresses are configured; an admin sets external_range in the engine's settings", ErrInvalid)
	}
	used := map[netip.Addr]bool{}
	held := 0
	for _, o := range conns {
		if a, ok := externalOf(o); ok {
			used[a] = true
			if o.Owner == c.Owner {
				held++
			}
		}
	}
	if held >= st.ExternalQuota {
		return fmt.Errorf("%w: you hold %d of your %d external addresses; delete an external or mapping connection or ask an admin", ErrQuota, held, st.ExternalQuota)
	}
	want := req.External
	if c.Kind == ConnExternal && want == "" {
		want = req.Address
	}
	var a netip.Addr
	if want != "" {
		a, err = netip.ParseAddr(strings.TrimSpace(want))
		if err != nil || !r.contains(a) {
			return fmt.Errorf("%w: external address %q is outside the configured range %s", ErrInvalid, want, r)
		}
		if used[a] {
			return fmt.Errorf("%w: external address %s is taken; leave it empty to get a free one", ErrExists, a)
		}
	} else {
		var ok bool
		if a, ok = r.next(used); !ok {
			return fmt.Errorf("%w: every external address of %s is taken", ErrQuota, r)
		}
	}
	if c.Kind == ConnMapping {
		c.External = a.String()
		return nil
	}
	c.Address = a.String()
	seg, err := externalSegment(tx, c.Owner, e.now())
	if err != nil {
		return err
	}
	c.Network = seg.ID
	return nil
}

// DeleteConnection detaches a connection (unplugging it from a running server) and
// deletes it; its addresses are free again.
func (e *Engine) DeleteConnection(ctx context.Context, u User, id string) error {
	op := connOp("delete", id)
	if err := requireWriter(u, op); err != nil {
		return err
	}
	c, err := e.Connection(ctx, u, id)
	if err != nil {
		return err
	}
	if err := requireOwnerOrAdmin(u, c.Owner, op); err != nil {
		return err
	}
	if c.Server != "" {
		if _, err := e.DetachConnection(ctx, u, id); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	if err := e.deleteConnectionRecord(c); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	e.log.Info("connection deleted", "connection", id, "by", u.Name)
	e.syncNetworks(ctx)
	return nil
}

// deleteConnectionRecord deletes c and, with its owner's last external connection,
// the owner's external segment.
func (e *Engine) deleteConnectionRecord(c Connection) error {
	return e.store.Update(func(tx *store.Tx) error {
		if err := tx.Delete(bucketConnections, c.ID); err != nil && !isNotFound(err) {
			return err
		}
		if c.Kind != ConnExternal {
			return nil
		}
		conns, err := store.ListTx[Connection](tx, bucketConnections)
		if err != nil {
			return err
		}
		if slices.ContainsFunc(conns, func(o Connection) bool { return o.Network == c.Network }) {
			return nil
		}
		return tx.Delete(bucketNetworks, networkKey(c.Network))
	})
}

// UpdateConnection renames a connection or changes a mapping's port list.
func (e *Engine) UpdateConnection(ctx context.Context, u User, id string, upd ConnectionUpdate) (Connection, error) {
	op := connOp("update", id)
	if err := requireWriter(u, op); err != nil {
		return Connection{}, err
	}
	var c Connection
	err := e.store.Update(func(tx *store.Tx) error {
		var err error
		if c, err = getConnection(tx, u, id); err != nil {
			return err
		}
		if err := requireOwnerOrAdmin(u, c.Owner, op); err != nil {
			return err
		}
		if upd.Name != nil {
			if err := checkName("connection", *upd.Name); err != nil {
				return err
			}
			c.Name = *upd.Name
		}
		if upd.Ports != nil {
			if c.Kind != ConnMapping {
				return fmt.Errorf("%w: only mapping connections take a port list", ErrInvalid)
			}
			if c.Ports, _, err = normalPorts(*upd.Ports); err != nil {
				return fmt.Errorf("ports: %w", err)
			}
		}
		return tx.Put(bucketConnections, c.ID, c)
	})
	if err != nil {
		return Connection{}, fmt.Errorf("%s: %w", op, err)
	}
	if upd.Ports != nil {
		e.syncNetworks(ctx)
	}
	return c, nil
}

// externalSegment returns owner's external segment, making it when there is none.
func externalSegment(tx *store.Tx, owner string, now time.Time) (Network, error) {
	all, err := store.ListTx[Network](tx, bucketNetworks)
	if err != nil {
		return Network{}, err
	}
	for _, n := range all {
		if n.Kind == NetworkExternal && n.Owner == owner {
			return n, nil
		}
	}
	id, err := nextNetworkID(all)
	if err != nil {
		return Network{}, err
	}
	n := Network{ID: id, Name: "external", Owner: owner, Kind: NetworkExternal, CreatedAt: now}
	return n, tx.Put(bucketNetworks, networkKey(id), n)
}
