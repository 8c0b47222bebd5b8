package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cairn-os/cairn/supervisor/qimg"
	"github.com/cairn-os/cairn/supervisor/store"
	"github.com/cairn-os/cairn/supervisor/virt"
)

// A server's power: defined on a node from the engine's state and started there, and
// the actions that follow libvirt's events (shutdown, force off, reboot, suspend).

// domain builds the libvirt definition of s for node n.
func (e *Engine) domain(s Server, n Node) (virt.Domain, error) {
	typ := e.cfg.DomainType
	if typ == "" {
		typ = "qemu"
		if n.KVM {
			typ = "kvm"
		}
	}
	d := virt.Domain{
		UUID: s.UUID, Name: "cairn-" + s.ID, Type: typ, VCPUs: s.VCPUs, MemoryMiB: s.MemoryMiB,
		ConsoleDir: e.cfg.ConsoleDir, LogDir: e.cfg.ConsoleLogDir,
	}
	for _, b := range s.Boot {
		d.Boot = append(d.Boot, bootDevices[b])
	}
	for _, sd := range s.Disks {
		var im Image
		if err := e.store.Get(bucketImages, sd.Image, &im); err != nil {
			return virt.Domain{}, fmt.Errorf("disk image %s: %w", sd.Image, notFound(err))
		}
		disk := virt.Disk{Path: im.Path, Format: qimg.Format(im.Format).QemuName(), Bus: virt.Bus(sd.Bus), Serial: im.ID}
		if im.Node != "" {
			// A diskless node's local storage is in RAM, which has no O_DIRECT; such
			// disks never migrate, so the host's page cache is safe for them.
			disk.Cache = "writeback"
		}
		d.Disks = append(d.Disks, disk)
	}
	d.CDROM = &virt.CDROM{}
	if s.CDROM != "" {
		var im Image
		if err := e.store.Get(bucketImages, s.CDROM, &im); err != nil {
			return virt.Domain{}, fmt.Errorf("cdrom image %s: %w", s.CDROM, notFound(err))
		}
		d.CDROM.Path = im.Path
	}
	for _, nic := range s.NICs {
		d.NICs = append(d.NICs, virtNIC(nic))
	}
	return d, nil
}

// localNodeOf returns the node whose local storage holds one of s's disks.
func (e *Engine) localNodeOf(s Server) string {
	for _, sd := range s.Disks {
		var im Image
		if e.store.Get(bucketImages, sd.Image, &im) == nil && im.Node != "" {
			return im.Node
		}
	}
	return ""
}

// StartServer places a shut-off server on a node (unless it is pinned), defines it
// there from the engine's state and starts it.
func (e *Engine) StartServer(ctx context.Context, u User, id string) (Server, error) {
	op := serverOp("start", id)
	if err := requireWriter(u, op); err != nil {
		return Server{}, err
	}
	e.placeMu.Lock()
	defer e.placeMu.Unlock()
	s, err := e.Server(ctx, u, id)
	if err != nil {
		return Server{}, err
	}
	if s.State != ServerShutoff && s.State != ServerCrashed {
		return Server{}, fmt.Errorf("%s: %w: it is %s", op, ErrInvalid, s.State)
	}
	nodes, err := store.List[Node](e.store, bucketNodes)
	if err != nil {
		return Server{}, err
	}
	servers, err := store.List[Server](e.store, bucketServers)
	if err != nil {
		return Server{}, err
	}
	st, _ := e.Settings(ctx, u)
	n, err := place(nodes, servers, st, demand{server: s.ID, vcpus: s.VCPUs, memoryMiB: s.MemoryMiB, lock: s.LockNode, local: e.localNodeOf(s)})
	if err != nil {
		return Server{}, fmt.Errorf("%s: %w", op, err)
	}
	d, err := e.domain(s, n)
	if err != nil {
		return Server{}, fmt.Errorf("%s: %w", op, err)
	}
	// The node gets the bridges of the server's networks before the server starts.
	release := e.holdServer(s.ID, n.ID)
	defer release()
	if err := e.syncFor(ctx, s, n.ID); err != nil {
		return Server{}, fmt.Errorf("%s: networks on node %s: %w", op, n.ID, err)
	}
	if s.Node != "" && s.Node != n.ID {
		// Nodes keep no state of their own, but a reachable old node should not keep
		// a stale definition.
		old := s.Node
		e.onNode(ctx, old, func(c *virt.Conn) error { return c.Undefine(ctx, s.UUID) })
	}
	var state virt.State
	err = e.onNode(ctx, n.ID, func(c *virt.Conn) error {
		if err := c.Define(ctx, d); err != nil {
			return err
		}
		if err := c.Start(ctx, s.UUID); err != nil {
			return err
		}
		state, err = c.State(ctx, s.UUID)
		return err
	})
	if err != nil {
		return Server{}, fmt.Errorf("%s on node %s: %w", op, n.ID, virtErr(err))
	}
	e.ensureWatcher(n.ID)
	err = e.store.Update(func(tx *store.Tx) error {
		var cur Server
		if err := tx.Get(bucketServers, s.ID, &cur); err != nil {
			return err
		}
		cur.Node, cur.State, cur.Reason, cur.StateAt, cur.Stopped = n.ID, serverState(state), "started", e.now(), false
		s = cur
		return tx.Put(bucketServers, s.ID, s)
	})
	if err != nil {
		return Server{}, err
	}
	e.notifyServers()
	e.log.Info("server started", "server", s.ID, "node", n.ID, "by", u.Name)
	// The node it left (if any) no longer needs the server's networks.
	e.syncNetworks(ctx)
	return s, nil
}

func virtErr(err error) error {
	if errors.Is(err, virt.ErrInvalid) {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if errors.Is(err, virt.ErrNotFound) {
		return fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	if errors.Is(err, virt.ErrExists) || errors.Is(err, virt.ErrNotReleased) {
		return fmt.Errorf("%w: %v", ErrInUse, err)
	}
	return err
}

// runningServer loads a server that is on a node, for an action on it.
func (e *Engine) serverOnNode(ctx context.Context, u User, id, op string, states ...ServerState) (Server, error) {
	if err := requireWriter(u, op); err != nil {
		return Server{}, err
	}
	s, err := e.Server(ctx, u, id)
	if err != nil {
		return Server{}, err
	}
	if err := requireOwnerOrAdmin(u, s.Owner, op); err != nil {
		return Server{}, err
	}
	if s.Node == "" || !slices.Contains(states, s.State) {
		return Server{}, fmt.Errorf("%s: %w: it is %s", op, ErrInvalid, s.State)
	}
	return s, nil
}

// action runs fn on the server's node and marks the server as stopped on purpose
// when stopped is set, so autostart leaves it off.
func (e *Engine) action(ctx context.Context, u User, id, verb string, stopped bool, states []ServerState, fn func(c *virt.Conn, uuid string) error) (Server, error) {
	op := serverOp(verb, id)
	s, err := e.serverOnNode(ctx, u, id, op, states...)
	if err != nil {
		return Server{}, err
	}
	if err := e.onNode(ctx, s.Node, func(c *virt.Conn) error { return fn(c, s.UUID) }); err != nil {
		return Server{}, fmt.Errorf("%s: %w", op, virtErr(err))
	}
	if stopped {
		e.setStopped(s.ID, true)
	}
	e.log.Info("server action", "server", s.ID, "action", verb, "by", u.Name)
	return e.Server(ctx, u, s.ID)
}

func (e *Engine) setStopped(id string, stopped bool) {
	e.store.Update(func(tx *store.Tx) error {
		var s Server
		if err := tx.Get(bucketServers, id, &s); err != nil {
			return err
		}
		s.Stopped = stopped
		return tx.Put(bucketServers, id, s)
	})
}

var live = []ServerState{ServerRunning, ServerPaused, ServerStopping, ServerUnknown}

// ShutdownServer presses the server's ACPI power button and waits, as an operation,
// until it is off. If it is not off within timeout, the operation fails and says to
// force it off.
func (e *Engine) ShutdownServer(ctx context.Context, u User, id string, timeout time.Duration) (Operation, error) {
	if timeout <= 0 {
		st, _ := e.Settings(ctx, u)
		timeout = time.Duration(st.ShutdownTimeoutSeconds) * time.Second
	}
	if timeout > time.Hour {
		return Operation{}, fmt.Errorf("%s: %w: the timeout is at most an hour", serverOp("shut down", id), ErrInvalid)
	}
	s, err := e.action(ctx, u, id, "shut down", true, []ServerState{ServerRunning, ServerStopping}, func(c *virt.Conn, uuid string) error { return c.Shutdown(ctx, uuid) })
	if err != nil {
		return Operation{}, err
	}
	return e.startOp(u.ID, "shutdown", s.ID, func(ctx context.Context, p progress) (string, error) {
		p.Set(0, "waiting for the guest to power off")
		wctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if _, err := e.waitServer(wctx, s.ID, ServerShutoff); err != nil {
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			return "", fmt.Errorf("the guest did not power off within %s; force it off (POST /api/v1/servers/%s/stop, `cairn servers stop %s`)", timeout, s.ID, s.ID)
		}
		return s.ID, nil
	}), nil
}

// StopServer forces a server off, like pulling the plug.
func (e *Engine) StopServer(ctx context.Context, u User, id string) (Server, error) {
	s, err := e.action(ctx, u, id, "force off", true, live, func(c *virt.Conn, uuid string) error { return c.Destroy(ctx, uuid) })
	if err != nil {
		return Server{}, err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if off, err := e.waitServer(wctx, s.ID, ServerShutoff); err == nil {
		return off, nil
	}
	return e.Server(ctx, u, s.ID)
}

// RebootServer asks the guest to reboot (ACPI).
func (e *Engine) RebootServer(ctx context.Context, u User, id string) (Server, error) {
	return e.action(ctx, u, id, "reboot", false, []ServerState{ServerRunning}, func(c *virt.Conn, uuid string) error { return c.Reboot(ctx, uuid) })
}

// SuspendServer pauses a running server in memory.
func (e *Engine) SuspendServer(ctx context.Context, u User, id string) (Server, error) {
	return e.action(ctx, u, id, "suspend", false, []ServerState{ServerRunning}, func(c *virt.Conn, uuid string) error { return c.Suspend(ctx, uuid) })
}

// ResumeServer resumes a suspended server.
func (e *Engine) ResumeServer(ctx context.Context, u User, id string) (Server, error) {
	return e.action(ctx, u, id, "resume", false, []ServerState{ServerPaused}, func(c *virt.Conn, uuid string) error { return c.Resume(ctx, uuid) })
}
