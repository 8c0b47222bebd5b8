package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/cairn-os/cairn/supervisor/store"
	"github.com/cairn-os/cairn/supervisor/virt"
	"github.com/cairn-os/cairn/supervisor/vnet"
)

// Attaching and detaching connections: a NIC in the server's record and, while it
// runs, a NIC hot-plugged into the guest on a bridge that its node has first.

// running reports whether a server has a running guest to hot-plug into.
func running(s Server) bool {
	return s.Node != "" && (s.State == ServerRunning || s.State == ServerPaused)
}

// nicOf is the server NIC of connection c.
func nicOf(c Connection) ServerNIC {
	return ServerNIC{MAC: c.MAC, Model: "virtio", Connection: c.ID, Kind: c.Kind, Network: c.Network,
		Address: c.Address, External: c.External}
}

// virtNIC is the libvirt NIC of a server NIC: bridged to its network's bridge with
// the MTU that fits VXLAN, or a user-mode placeholder.
func virtNIC(n ServerNIC) virt.NIC {
	v := virt.NIC{MAC: n.MAC, Model: n.Model}
	if n.Connection != "" {
		v.Bridge = vnet.BridgeName(n.Network)
		v.MTU = GuestMTU
	}
	return v
}

// attachTx attaches connection id to s inside tx (the caller stores s).
func attachTx(tx *store.Tx, u User, s *Server, id string) (Connection, error) {
	c, err := getConnection(tx, u, id)
	if err != nil {
		return Connection{}, err
	}
	if c.Server != "" {
		return Connection{}, fmt.Errorf("%w: connection %s is attached to server %s; detach it first", ErrInUse, c.ID, c.Server)
	}
	if c.Owner != s.Owner {
		return Connection{}, fmt.Errorf("%w: connection %s and server %s belong to different users", ErrForbidden, c.ID, s.ID)
	}
	if len(s.NICs) >= MaxNICs {
		return Connection{}, fmt.Errorf("%w: server %s has %d NICs, the most a server has; detach one first", ErrInvalid, s.ID, MaxNICs)
	}
	s.NICs = append(s.NICs, nicOf(c))
	c.Server = s.ID
	return c, tx.Put(bucketConnections, c.ID, c)
}

// AttachConnection attaches a connection to a server. A running server gets the NIC
// at once (hot-plug), after its node has the network's bridge.
func (e *Engine) AttachConnection(ctx context.Context, u User, id, serverID string) (Connection, error) {
	op := connOp("attach", id)
	if err := requireWriter(u, op); err != nil {
		return Connection{}, err
	}
	// One at a time with starts and migrations: the server stays where it is.
	e.placeMu.Lock()
	defer e.placeMu.Unlock()
	var c Connection
	var s Server
	err := e.store.Update(func(tx *store.Tx) error {
		var err error
		if s, err = getServer(tx, u, serverID); err != nil {
			return err
		}
		if err := requireOwnerOrAdmin(u, s.Owner, op); err != nil {
			return err
		}
		if c, err = attachTx(tx, u, &s, id); err != nil {
			return err
		}
		return tx.Put(bucketServers, s.ID, s)
	})
	if err != nil {
		return Connection{}, fmt.Errorf("%s to server %q: %w", op, serverID, err)
	}
	if running(s) {
		err := e.syncNode(ctx, s.Node)
		if err == nil {
			err = e.onNode(ctx, s.Node, func(vc *virt.Conn) error { return vc.AttachNIC(ctx, s.UUID, virtNIC(nicOf(c))) })
		}
		if err != nil {
			e.undoAttach(c)
			e.syncNetworks(ctx)
			return Connection{}, fmt.Errorf("%s to server %s on node %s: %w", op, s.ID, s.Node, virtErr(err))
		}
	}
	e.log.Info("connection attached", "connection", c.ID, "server", s.ID, "live", running(s), "by", u.Name)
	e.syncNetworks(ctx)
	return c, nil
}

// undoAttach takes an attachment back out of the records.
func (e *Engine) undoAttach(c Connection) {
	err := e.store.Update(func(tx *store.Tx) error { return detachTx(tx, c) })
	if err != nil {
		e.log.Warn("undo attach failed", "connection", c.ID, "err", err)
	}
}

// detachTx removes connection c from its server's NICs and marks it detached.
func detachTx(tx *store.Tx, c Connection) error {
	var s Server
	if err := tx.Get(bucketServers, c.Server, &s); err == nil {
		s.NICs = slices.DeleteFunc(s.NICs, func(n ServerNIC) bool { return n.Connection == c.ID })
		if err := tx.Put(bucketServers, s.ID, s); err != nil {
			return err
		}
	} else if !isNotFound(err) {
		return err
	}
	var cur Connection
	if err := tx.Get(bucketConnections, c.ID, &cur); err != nil {
		return err
	}
	cur.Server = ""
	return tx.Put(bucketConnections, c.ID, cur)
}

// DetachConnection detaches a connection from its server, unplugging the NIC from a
// running guest. The connection keeps its addresses.
func (e *Engine) DetachConnection(ctx context.Context, u User, id string) (Connection, error) {
	op := connOp("detach", id)
	if err := requireWriter(u, op); err != nil {
		return Connection{}, err
	}
	e.placeMu.Lock()
	defer e.placeMu.Unlock()
	c, err := e.Connection(ctx, u, id)
	if err != nil {
		return Connection{}, err
	}
	if err := requireOwnerOrAdmin(u, c.Owner, op); err != nil {
		return Connection{}, err
	}
	if c.Server == "" {
		return Connection{}, fmt.Errorf("%s: %w: it is not attached to a server", op, ErrInvalid)
	}
	var s Server
	if err := e.store.Get(bucketServers, c.Server, &s); err != nil && !isNotFound(err) {
		return Connection{}, fmt.Errorf("%s: %w", op, err)
	}
	var unplug error
	if running(s) {
		unplug = e.onNode(ctx, s.Node, func(vc *virt.Conn) error { return vc.DetachNIC(ctx, s.UUID, c.MAC) })
		if unplug != nil && !errors.Is(unplug, virt.ErrNotReleased) {
			return Connection{}, fmt.Errorf("%s from server %s on node %s: %w", op, s.ID, s.Node, virtErr(unplug))
		}
	}
	if err := e.store.Update(func(tx *store.Tx) error { return detachTx(tx, c) }); err != nil {
		return Connection{}, fmt.Errorf("%s: %w", op, err)
	}
	e.log.Info("connection detached", "connection", c.ID, "server", s.ID, "by", u.Name)
	e.syncNetworks(ctx)
	c.Server = ""
	if unplug != nil {
		return c, fmt.Errorf("%s: %w: detached from the configuration, but the guest of server %s did not release the NIC; it goes when the server powers off: %v", op, ErrInUse, s.ID, unplug)
	}
	return c, nil
}

// releaseConnections detaches the connections of a deleted server inside tx.
func releaseConnections(tx *store.Tx, s Server) error {
	for _, n := range s.NICs {
		if n.Connection == "" {
			continue
		}
		var c Connection
		if err := tx.Get(bucketConnections, n.Connection, &c); err != nil {
			continue
		}
		c.Server = ""
		if err := tx.Put(bucketConnections, c.ID, c); err != nil {
			return err
		}
	}
	return nil
}
