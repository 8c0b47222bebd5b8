package engine

import (
	"context"
	"fmt"

	"github.com/cairn-os/cairn/supervisor/store"
	"github.com/cairn-os/cairn/supervisor/virt"
)

// Live migration of a running server between nodes on shared storage.

// MigrateServer moves a running server to another node without stopping it, as an
// operation. All its disks must be on shared pools.
func (e *Engine) MigrateServer(ctx context.Context, u User, id, target string) (Operation, error) {
	op := serverOp("migrate", id)
	s, err := e.serverOnNode(ctx, u, id, op, ServerRunning, ServerPaused)
	if err != nil {
		return Operation{}, err
	}
	if local := e.localNodeOf(s); local != "" {
		return Operation{}, fmt.Errorf("%s: %w: a disk is on node %s's local storage; live migration needs all disks on shared pools", op, ErrInvalid, local)
	}
	if s.LockNode != "" && s.LockNode != target {
		return Operation{}, fmt.Errorf("%s: %w: it is locked to node %s; unlock it first", op, ErrInvalid, s.LockNode)
	}
	if target == s.Node {
		return Operation{}, fmt.Errorf("%s: %w: it already runs on node %s", op, ErrInvalid, target)
	}
	nodes, err := store.List[Node](e.store, bucketNodes)
	if err != nil {
		return Operation{}, err
	}
	servers, err := store.List[Server](e.store, bucketServers)
	if err != nil {
		return Operation{}, err
	}
	st, _ := e.Settings(ctx, u)
	dst, err := place(nodes, servers, st, demand{server: s.ID, vcpus: s.VCPUs, memoryMiB: s.MemoryMiB, lock: target})
	if err != nil {
		return Operation{}, fmt.Errorf("%s: %w", op, err)
	}
	return e.startOp(u.ID, "migrate", s.ID, func(ctx context.Context, p progress) (string, error) {
		p.Set(0, "migrating to "+dst.ID)
		release := e.holdServer(s.ID, dst.ID)
		defer release()
		if err := e.syncFor(ctx, s, dst.ID); err != nil {
			return "", fmt.Errorf("networks on node %s: %w", dst.ID, err)
		}
		src, err := e.hypervisor(ctx, s.Node)
		if err != nil {
			return "", err
		}
		defer src.Close()
		to, err := e.hypervisor(ctx, dst.ID)
		if err != nil {
			return "", err
		}
		defer to.Close()
		if err := virt.Migrate(ctx, src, to, s.UUID, dst.Address); err != nil {
			return "", err
		}
		e.ensureWatcher(dst.ID)
		err = e.store.Update(func(tx *store.Tx) error {
			var cur Server
			if err := tx.Get(bucketServers, s.ID, &cur); err != nil {
				return err
			}
			cur.Node, cur.Reason = dst.ID, "migrated"
			return tx.Put(bucketServers, s.ID, cur)
		})
		release()
		e.syncNetworks(ctx)
		return s.ID, err
	}), nil
}
