package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/cairn-os/cairn/supervisor/store"
)

// RunHealth is the health manager: every heartbeat interval it marks the nodes that
// missed three beats down, and drops expired sessions. It returns when ctx ends.
func (e *Engine) RunHealth(ctx context.Context) {
	t := time.NewTicker(e.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := e.CheckHealth(ctx); err != nil {
			e.log.Error("health check failed", "err", err)
		}
		if err := e.pruneSessions(); err != nil {
			e.log.Error("prune sessions failed", "err", err)
		}
	}
}

// CheckHealth makes one pass of the health manager: nodes that are ready (or still
// joining) and have not beaten for three intervals become down. Nodes in maintenance
// keep their state.
func (e *Engine) CheckHealth(ctx context.Context) error {
	var stale []string
	err := e.store.View(func(tx *store.Tx) error {
		nodes, err := store.ListTx[Node](tx, bucketNodes)
		for _, n := range nodes {
			if e.shouldGoDown(n) {
				stale = append(stale, n.ID)
			}
		}
		return err
	})
	if err != nil || len(stale) == 0 {
		return err
	}
	var down []Node
	err = e.store.Update(func(tx *store.Tx) error {
		down = down[:0]
		for _, id := range stale {
			var n Node
			if err := tx.Get(bucketNodes, id, &n); err != nil {
				if isNotFound(err) {
					continue
				}
				return err
			}
			if !e.shouldGoDown(n) { // it beat in between
				continue
			}
			n.State = NodeDown
			if err := tx.Put(bucketNodes, id, n); err != nil {
				return err
			}
			down = append(down, n)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("mark nodes down: %w", err)
	}
	for _, n := range down {
		e.log.Warn("node down", "node", n.ID, "address", n.Address, "last_seen", n.LastSeen)
	}
	return nil
}

func (e *Engine) shouldGoDown(n Node) bool {
	return (n.State == NodeReady || n.State == NodeJoining) && e.stale(n)
}

// probe asks ProbeNode, in the background, for the node's libvirt version and records
// it. Close waits for probes under way.
func (e *Engine) probe(n Node) {
	// libvirtd probes qemu's capabilities on the first connection: under TCG that
	// alone can take a minute, so the probe gets two.
	if e.cfg.ProbeNode == nil || e.bg.Err() != nil {
		return
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		ctx, cancel := context.WithTimeout(e.bg, 2*time.Minute)
		defer cancel()
		version, err := e.cfg.ProbeNode(ctx, n)
		if err != nil {
			e.log.Warn("probe node failed", "node", n.ID, "address", n.Address, "err", err)
			return
		}
		err = e.store.Update(func(tx *store.Tx) error {
			var cur Node
			if err := tx.Get(bucketNodes, n.ID, &cur); err != nil {
				return err
			}
			if cur.Libvirt == version {
				return nil
			}
			cur.Libvirt = version
			return tx.Put(bucketNodes, n.ID, cur)
		})
		if err != nil && !isNotFound(err) {
			e.log.Warn("record node libvirt version failed", "node", n.ID, "err", err)
		}
	}()
}
