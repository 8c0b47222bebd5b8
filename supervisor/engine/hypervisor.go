package engine

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/cairn-os/cairn/supervisor/store"
	"github.com/cairn-os/cairn/supervisor/virt"
)

// onNode runs fn with a fresh connection to node id's libvirtd. Connections are
// short-lived: a node that rebooted is reached again on the next call.
func (e *Engine) onNode(ctx context.Context, id string, fn func(c *virt.Conn) error) error {
	c, err := e.hypervisor(ctx, id)
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(c)
}

// hypervisor connects to node id's libvirtd; the caller closes the connection.
func (e *Engine) hypervisor(ctx context.Context, id string) (*virt.Conn, error) {
	if e.cfg.Hypervisor == nil {
		return nil, fmt.Errorf("node %s: %w: this engine has no hypervisor connection", id, ErrInvalid)
	}
	var n Node
	if err := e.store.Get(bucketNodes, id, &n); err != nil {
		return nil, fmt.Errorf("node %q: %w", id, notFound(err))
	}
	if n.State == NodeDown {
		return nil, fmt.Errorf("node %s: %w: it is down; wait for it to come back", id, ErrInvalid)
	}
	dctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	c, err := e.cfg.Hypervisor(dctx, n)
	if err != nil {
		return nil, fmt.Errorf("reach libvirtd on node %s: %w", id, err)
	}
	return c, nil
}

// ensureWatcher starts, once per node, the loop that follows the node's libvirt
// events and keeps its servers' states.
func (e *Engine) ensureWatcher(id string) {
	if e.cfg.Hypervisor == nil || e.bg.Err() != nil {
		return
	}
	e.watchMu.Lock()
	defer e.watchMu.Unlock()
	if e.watching[id] {
		return
	}
	e.watching[id] = true
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		defer func() {
			// A bug in one node's watcher must not take the engine (PID 1) down;
			// the node's next heartbeat starts a new one.
			if r := recover(); r != nil {
				e.log.Error("node watcher failed", "node", id, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				e.watchMu.Lock()
				delete(e.watching, id)
				e.watchMu.Unlock()
			}
		}()
		e.watch(id)
	}()
}

// watch follows node id's libvirt events until the engine closes. On every
// (re)connection it first reconciles: the node's domains are what libvirt says,
// servers it does not know are shut off (a compute node that rebooted has none),
// and autostart servers that should run are started.
func (e *Engine) watch(id string) {
	log := e.log.With("node", id)
	backoff := time.Second
	for e.bg.Err() == nil {
		err := e.watchOnce(id)
		if e.bg.Err() != nil {
			return
		}
		if err != nil {
			log.Debug("node watch ended", "err", err)
			e.markNodeServers(id, ServerUnknown, "node unreachable")
		}
		select {
		case <-e.bg.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
		if err == nil {
			backoff = time.Second
		}
	}
}

func (e *Engine) watchOnce(id string) error {
	ctx, cancel := context.WithCancel(e.bg)
	defer cancel()
	c, err := e.hypervisor(ctx, id)
	if err != nil {
		return err
	}
	defer c.Close()
	events, err := c.Events(ctx)
	if err != nil {
		return fmt.Errorf("subscribe to events: %w", err)
	}
	domains, err := c.List(ctx)
	if err != nil {
		return fmt.Errorf("list domains: %w", err)
	}
	e.reconcile(id, domains)
	e.autostart(ctx, id)
	tick := time.NewTicker(recheckInterval)
	defer tick.Stop()
	var seen map[string]drift
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return errors.New("event stream closed")
			}
			e.applyEvent(id, ev)
		case <-tick.C:
			lctx, lcancel := context.WithTimeout(ctx, time.Minute)
			domains, err := c.List(lctx)
			lcancel()
			if err != nil {
				return fmt.Errorf("list domains: %w", err)
			}
			seen = e.recheckNode(id, domains, seen)
		}
	}
}

// drift is a disagreement a recheck saw between a server's recorded state and
// libvirt's.
type drift struct {
	libvirt ServerState // what libvirt's list said
	state   ServerState // what was recorded
	stateAt time.Time   // when the recorded state was set
}

// recheck compares the recorded states of node id's servers with libvirt's list of
// domains. It returns the servers to correct — those that disagreed the same way in
// the previous check too, with nothing recorded for them since — and the
// disagreements seen now, for the next check. A disagreement seen once may be an
// event still on its way; seen twice a check interval apart, the event was lost
// (libvirtd has been seen to drop a subscription). Servers recorded on another node
// are left alone: during a live migration the destination runs the domain too, and
// the migration itself records the move.
func recheck(id string, servers []Server, domains map[string]virt.State, prev map[string]drift) (fix map[string]drift, seen map[string]drift) {
	for _, s := range servers {
		if s.Node != id {
			continue
		}
		st, known := domains[s.UUID]
		want, _ := libvirtView(st, known)
		if s.State == want {
			continue
		}
		d := drift{libvirt: want, state: s.State, stateAt: s.StateAt}
		if p, ok := prev[s.ID]; ok && p == d {
			if fix == nil {
				fix = map[string]drift{}
			}
			fix[s.ID] = d
			continue
		}
		if seen == nil {
			seen = map[string]drift{}
		}
		seen[s.ID] = d
	}
	return fix, seen
}

// recheckNode corrects the servers of node id that recheck finds, and returns the
// disagreements to confirm at the next check.
func (e *Engine) recheckNode(id string, domains map[string]virt.State, prev map[string]drift) map[string]drift {
	var seen map[string]drift
	var fixed []string
	err := e.store.Update(func(tx *store.Tx) error {
		servers, err := store.ListTx[Server](tx, bucketServers)
		if err != nil {
			return err
		}
		var fix map[string]drift
		fix, seen = recheck(id, servers, domains, prev)
		for _, s := range servers {
			d, ok := fix[s.ID]
			if !ok {
				continue
			}
			st, known := domains[s.UUID]
			s.State, s.Reason = libvirtView(st, known)
			s.StateAt = e.now()
			if err := tx.Put(bucketServers, s.ID, s); err != nil {
				return err
			}
			fixed = append(fixed, fmt.Sprintf("%s %s→%s", s.ID, d.state, d.libvirt))
		}
		return nil
	})
	if err != nil {
		e.log.Warn("recheck node failed", "node", id, "err", err)
		return nil
	}
	if len(fixed) > 0 {
		e.log.Warn("server states corrected from libvirt's list: an event was lost", "node", id, "servers", fixed)
		e.notifyServers()
	}
	return seen
}

// libvirtView is the state (and reason) to record for a server whose domain libvirt
// lists in state st (known) or does not list at all.
func libvirtView(st virt.State, known bool) (ServerState, string) {
	if !known {
		return ServerShutoff, "not running on the node"
	}
	return serverState(st), ""
}

// reconcile sets the states of node id's servers from libvirt's list of domains.
func (e *Engine) reconcile(id string, domains map[string]virt.State) {
	err := e.store.Update(func(tx *store.Tx) error {
		servers, err := store.ListTx[Server](tx, bucketServers)
		if err != nil {
			return err
		}
		for _, s := range servers {
			st, known := domains[s.UUID]
			if s.Node != id {
				// A server that migrated or was placed elsewhere but still runs here.
				if !known || !occupying(serverState(st)) {
					continue
				}
				s.Node = id
			}
			next, reason := libvirtView(st, known)
			if s.State == next && s.Reason == reason {
				continue
			}
			s.State, s.Reason, s.StateAt = next, reason, e.now()
			if err := tx.Put(bucketServers, s.ID, s); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		e.log.Warn("reconcile node failed", "node", id, "err", err)
	}
}

// applyEvent records a lifecycle event of one of the node's domains.
func (e *Engine) applyEvent(node string, ev virt.Event) {
	err := e.store.Update(func(tx *store.Tx) error {
		servers, err := store.ListTx[Server](tx, bucketServers)
		if err != nil {
			return err
		}
		for _, s := range servers {
			if s.UUID != ev.UUID {
				continue
			}
			next := serverState(ev.State)
			// After a migration the source reports the domain gone; the
			// destination's event is the one that counts.
			if s.Node != node && !occupying(next) {
				return nil
			}
			s.Node, s.State, s.Reason, s.StateAt = node, next, ev.Reason, e.now()
			return tx.Put(bucketServers, s.ID, s)
		}
		return nil
	})
	if err != nil {
		e.log.Warn("record server event failed", "node", node, "domain", ev.UUID, "err", err)
	}
	e.notifyServers()
}

func serverState(s virt.State) ServerState {
	switch s {
	case virt.State("running"), virt.State("blocked"):
		return ServerRunning
	case virt.State("paused"), virt.State("pmsuspended"):
		return ServerPaused
	case virt.State("shutdown"):
		return ServerStopping
	case virt.State("crashed"):
		return ServerCrashed
	default:
		return ServerShutoff
	}
}

// markNodeServers sets the state of every server on node id that is not shut off.
func (e *Engine) markNodeServers(id string, state ServerState, reason string) {
	e.store.Update(func(tx *store.Tx) error {
		servers, err := store.ListTx[Server](tx, bucketServers)
		if err != nil {
			return err
		}
		for _, s := range servers {
			if s.Node != id || s.State == ServerShutoff || s.State == state {
				continue
			}
			s.State, s.Reason, s.StateAt = state, reason, e.now()
			if err := tx.Put(bucketServers, s.ID, s); err != nil {
				return err
			}
		}
		return nil
	})
	e.notifyServers()
}

// notifyServers wakes everyone waiting for a server state to change.
func (e *Engine) notifyServers() {
	e.stateMu.Lock()
	close(e.stateCh)
	e.stateCh = make(chan struct{})
	e.stateMu.Unlock()
}

func (e *Engine) stateChanged() <-chan struct{} {
	e.stateMu.Lock()
	defer e.stateMu.Unlock()
	return e.stateCh
}

// waitServer waits until server id is in one of states (as libvirt's events tell),
// or ctx ends.
func (e *Engine) waitServer(ctx context.Context, id string, states ...ServerState) (Server, error) {
	for {
		ch := e.stateChanged()
		var s Server
		if err := e.store.Get(bucketServers, id, &s); err != nil {
			return Server{}, fmt.Errorf("server %s: %w", id, notFound(err))
		}
		for _, want := range states {
			if s.State == want {
				return s, nil
			}
		}
		select {
		case <-ctx.Done():
			return s, ctx.Err()
		case <-ch:
		case <-time.After(5 * time.Second):
		}
	}
}

// autostart starts node id's autostart servers that are shut off.
func (e *Engine) autostart(ctx context.Context, id string) {
	servers, err := store.List[Server](e.store, bucketServers)
	if err != nil {
		return
	}
	for _, s := range servers {
		if !s.Autostart || s.Stopped || s.Node != id || s.State != ServerShutoff {
			continue
		}
		owner, err := e.userByID(s.Owner)
		if err != nil {
			e.log.Warn("autostart: owner gone", "server", s.ID, "owner", s.Owner)
			continue
		}
		if _, err := e.StartServer(ctx, owner, s.ID); err != nil {
			e.log.Warn("autostart failed", "server", s.ID, "node", id, "err", err)
			continue
		}
		e.log.Info("server autostarted", "server", s.ID, "node", id)
	}
}

// userByID reads a user record.
func (e *Engine) userByID(id string) (User, error) {
	var rec userRecord
	if err := e.store.Get(bucketUsers, id, &rec); err != nil {
		return User{}, fmt.Errorf("user %q: %w", id, notFound(err))
	}
	return rec.user(), nil
}
