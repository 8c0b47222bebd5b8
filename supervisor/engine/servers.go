package engine

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/cairn-os/cairn/supervisor/qimg"
	"github.com/cairn-os/cairn/supervisor/store"
	"github.com/cairn-os/cairn/supervisor/virt"
)

const bucketServers = "servers"

// Limits of a server's size.
const (
	MaxVCPUs     = 64
	MinMemoryMiB = 32
	MaxMemoryMiB = 1 << 20
	MaxNICs      = 4
)

var bootDevices = map[string]string{"disk": "hd", "cdrom": "cdrom", "network": "network"}

func serverOp(verb, id string) string { return fmt.Sprintf("%s server %q", verb, id) }

// Servers lists the caller's servers (admins: all).
func (e *Engine) Servers(ctx context.Context, u User) ([]Server, error) {
	if err := requireUser(u, "list servers"); err != nil {
		return nil, err
	}
	all, err := store.List[Server](e.store, bucketServers)
	if err != nil {
		return nil, fmt.Errorf("list servers: %w", err)
	}
	return slices.DeleteFunc(all, func(s Server) bool { return !canSee(u, s.Owner) }), nil
}

// Server shows one server by ID, or by name among the caller's own.
func (e *Engine) Server(ctx context.Context, u User, id string) (Server, error) {
	if err := requireUser(u, "show server"); err != nil {
		return Server{}, err
	}
	var s Server
	err := e.store.View(func(tx *store.Tx) error {
		var err error
		s, err = getServer(tx, u, id)
		return err
	})
	return s, err
}

func getServer(tx *store.Tx, u User, id string) (Server, error) {
	all, err := store.ListTx[Server](tx, bucketServers)
	if err != nil {
		return Server{}, err
	}
	for _, s := range all {
		if s.ID == id && canSee(u, s.Owner) {
			return s, nil
		}
	}
	for _, s := range all {
		if s.Name == id && s.Owner == u.ID {
			return s, nil
		}
	}
	return Server{}, fmt.Errorf("server %q: %w", id, ErrNotFound)
}

// checkSize validates vCPUs and memory.
func checkSize(vcpus, memoryMiB int) error {
	if vcpus < 1 || vcpus > MaxVCPUs {
		return fmt.Errorf("%w: vcpus must be between 1 and %d", ErrInvalid, MaxVCPUs)
	}
	if memoryMiB < MinMemoryMiB || memoryMiB > MaxMemoryMiB {
		return fmt.Errorf("%w: memory_mib must be between %d and %d", ErrInvalid, MinMemoryMiB, MaxMemoryMiB)
	}
	return nil
}

func checkBoot(boot []string) error {
	if len(boot) == 0 || len(boot) > 3 {
		return fmt.Errorf("%w: boot is an order of one to three of disk, cdrom, network", ErrInvalid)
	}
	seen := map[string]bool{}
	for _, b := range boot {
		if _, ok := bootDevices[b]; !ok || seen[b] {
			return fmt.Errorf("%w: boot device %q: use each of disk, cdrom, network at most once", ErrInvalid, b)
		}
		seen[b] = true
	}
	return nil
}

func checkBus(bus string) (string, error) {
	switch bus {
	case "":
		return BusVirtio, nil
	case BusVirtio, BusSCSI, BusIDE:
		return bus, nil
	}
	return "", fmt.Errorf("%w: disk bus %q: use virtio, scsi or ide", ErrInvalid, bus)
}

// randomMAC returns a locally administered address in qemu's 52:54:00 range.
func randomMAC() string {
	b := make([]byte, 3)
	rand.Read(b)
	return net.HardwareAddr{0x52, 0x54, 0x00, b[0], b[1], b[2]}.String()
}

func newUUID() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// CreateServer makes a server from images (each disk an existing image, or a child
// cloned from a master for it), and starts it when req.Start is set. Anything made
// on the way is undone if a later step fails.
func (e *Engine) CreateServer(ctx context.Context, u User, req ServerRequest) (Server, error) {
	op := fmt.Sprintf("create server %q", req.Name)
	if err := requireWriter(u, op); err != nil {
		return Server{}, err
	}
	if !namePattern.MatchString(req.Name) {
		return Server{}, fmt.Errorf("%s: %w: %s", op, ErrInvalid, nameRule)
	}
	if err := checkSize(req.VCPUs, req.MemoryMiB); err != nil {
		return Server{}, fmt.Errorf("%s: %w", op, err)
	}
	if len(req.Disks) > MaxDisks {
		return Server{}, fmt.Errorf("%s: %w: a server has at most %d disks", op, ErrInvalid, MaxDisks)
	}
	if req.NICs < 0 || req.NICs > MaxNICs {
		return Server{}, fmt.Errorf("%s: %w: nics must be between 0 and %d", op, ErrInvalid, MaxNICs)
	}
	if len(req.Boot) == 0 {
		req.Boot = []string{"disk"}
		if req.CDROM != "" {
			req.Boot = []string{"cdrom", "disk"}
		}
	}
	if err := checkBoot(req.Boot); err != nil {
		return Server{}, fmt.Errorf("%s: %w", op, err)
	}
	ide := 0
	for i, d := range req.Disks {
		bus, err := checkBus(d.Bus)
		if err != nil {
			return Server{}, fmt.Errorf("%s: disk %d: %w", op, i, err)
		}
		req.Disks[i].Bus = bus
		if bus == BusIDE {
			ide++
		}
	}
	// The CD-ROM takes the third IDE slot; two IDE disks fit beside it.
	if ide > 2 {
		return Server{}, fmt.Errorf("%s: %w: at most two disks on the ide bus", op, ErrInvalid)
	}
	st, _ := e.Settings(ctx, u)
	nodes, err := store.List[Node](e.store, bucketNodes)
	if err != nil {
		return Server{}, err
	}
	if req.LockNode != "" && !slices.ContainsFunc(nodes, func(n Node) bool { return n.ID == req.LockNode }) {
		return Server{}, fmt.Errorf("%s: %w: node %q does not exist", op, ErrInvalid, req.LockNode)
	}
	s := Server{
		ID: "s-" + randomHex(6), UUID: newUUID(), Name: req.Name, Owner: u.ID, VCPUs: req.VCPUs,
		MemoryMiB: req.MemoryMiB, Boot: req.Boot, Autostart: req.Autostart, LockNode: req.LockNode,
		State: ServerShutoff, CreatedAt: e.now(), StateAt: e.now(), Disks: []ServerDisk{}, NICs: []ServerNIC{},
	}
	for range req.NICs {
		s.NICs = append(s.NICs, ServerNIC{MAC: randomMAC(), Model: "virtio"})
	}
	// Check the name and the images before making anything.
	var images []Image
	err = e.store.View(func(tx *store.Tx) error {
		all, err := store.ListTx[Server](tx, bucketServers)
		if err != nil {
			return err
		}
		for _, o := range all {
			if o.Owner == u.ID && o.Name == req.Name {
				return fmt.Errorf("%s: %w: you already have a server named %q (%s)", op, ErrExists, req.Name, o.ID)
			}
		}
		for i, d := range req.Disks {
			im, err := e.getImage(tx, u, d.Image)
			if err != nil {
				return fmt.Errorf("%s: disk %d: %w", op, i, err)
			}
			if err := checkDiskImage(tx, im, d.Clone, ""); err != nil {
				return fmt.Errorf("%s: disk %d: %w", op, i, err)
			}
			images = append(images, im)
		}
		if req.CDROM != "" {
			im, err := e.getImage(tx, u, req.CDROM)
			if err != nil {
				return fmt.Errorf("%s: cdrom: %w", op, err)
			}
			if im.Format != string(qimg.ISO) {
				return fmt.Errorf("%s: cdrom: %w: image %s is %s, not an ISO", op, ErrInvalid, im.ID, im.Format)
			}
			s.CDROM = im.ID
		}
		return nil
	})
	if err != nil {
		return Server{}, err
	}
	local := ""
	for i, d := range req.Disks {
		n := images[i].Node
		if d.Clone {
			n = d.CloneNode
		}
		if n != "" && local != "" && n != local {
			return Server{}, fmt.Errorf("%s: %w: disks on the local storage of two nodes (%s, %s) cannot be used together", op, ErrInvalid, local, n)
		}
		if n != "" {
			local = n
		}
	}
	if err := fitsSomewhere(nodes, st, demand{vcpus: s.VCPUs, memoryMiB: s.MemoryMiB, lock: s.LockNode, local: local}); err != nil {
		return Server{}, fmt.Errorf("%s: %w", op, err)
	}
	// Clone the masters; undo the clones if anything later fails.
	var made []Image
	undo := func() {
		for _, im := range made {
			if err := e.removeImageFile(context.WithoutCancel(ctx), im); err != nil {
				e.log.Warn("undo clone failed", "image", im.ID, "err", err)
			}
			e.store.Delete(bucketImages, im.ID)
		}
	}
	for i, d := range req.Disks {
		im := images[i]
		if d.Clone {
			child, err := e.cloneLinked(ctx, u, im, CloneRequest{Name: fmt.Sprintf("%s-disk%d", req.Name, i), Node: d.CloneNode})
			if err != nil {
				undo()
				return Server{}, fmt.Errorf("%s: disk %d: %w", op, i, err)
			}
			made = append(made, child)
			im = child
		}
		s.Disks = append(s.Disks, ServerDisk{Image: im.ID, Bus: d.Bus})
	}
	if local != "" {
		s.Node = local
	}
	err = e.store.Update(func(tx *store.Tx) error {
		all, err := store.ListTx[Server](tx, bucketServers)
		if err != nil {
			return err
		}
		for _, o := range all {
			if o.Owner == u.ID && o.Name == req.Name {
				return fmt.Errorf("%s: %w: you already have a server named %q (%s)", op, ErrExists, req.Name, o.ID)
			}
		}
		return tx.Put(bucketServers, s.ID, s)
	})
	if err != nil {
		undo()
		return Server{}, err
	}
	e.log.Info("server created", "server", s.ID, "name", s.Name, "by", u.Name)
	if req.Start {
		started, err := e.StartServer(ctx, u, s.ID)
		if err != nil {
			return s, fmt.Errorf("server %s was created but did not start: %w", s.ID, err)
		}
		return started, nil
	}
	return s, nil
}

// checkDiskImage checks that im can be a disk of a server (server: the server it is
// for, to allow its own images).
func checkDiskImage(tx *store.Tx, im Image, clone bool, server string) error {
	if im.State != ImageReady {
		return fmt.Errorf("%w: image %s is %s", ErrInUse, im.ID, im.State)
	}
	if im.Format == string(qimg.ISO) {
		return fmt.Errorf("%w: image %s is an ISO; give it as the cdrom", ErrInvalid, im.ID)
	}
	if clone {
		if !im.Master {
			return fmt.Errorf("%w: image %s is not a master; only masters are cloned", ErrInvalid, im.ID)
		}
		return nil
	}
	if im.Master {
		return fmt.Errorf("%w: image %s is a master (read-only); clone it (\"clone\": true)", ErrInvalid, im.ID)
	}
	servers, err := store.ListTx[Server](tx, bucketServers)
	if err != nil {
		return err
	}
	for _, id := range usedBy(im.ID, servers) {
		if id != server {
			return fmt.Errorf("%w: image %s is a disk of server %s already", ErrInUse, im.ID, id)
		}
	}
	return nil
}

// UpdateServer changes a server's name, size, boot order, autostart or node lock.
// Size changes apply at the next start.
func (e *Engine) UpdateServer(ctx context.Context, u User, id string, upd ServerUpdate) (Server, error) {
	op := serverOp("update", id)
	if err := requireWriter(u, op); err != nil {
		return Server{}, err
	}
	var s Server
	err := e.store.Update(func(tx *store.Tx) error {
		var err error
		if s, err = getServer(tx, u, id); err != nil {
			return err
		}
		if upd.Name != nil {
			if !namePattern.MatchString(*upd.Name) {
				return fmt.Errorf("%s: %w: %s", op, ErrInvalid, nameRule)
			}
			s.Name = *upd.Name
		}
		if upd.VCPUs != nil {
			s.VCPUs = *upd.VCPUs
		}
		if upd.MemoryMiB != nil {
			s.MemoryMiB = *upd.MemoryMiB
		}
		if err := checkSize(s.VCPUs, s.MemoryMiB); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		if upd.Boot != nil {
			if err := checkBoot(*upd.Boot); err != nil {
				return fmt.Errorf("%s: %w", op, err)
			}
			s.Boot = *upd.Boot
		}
		if upd.Autostart != nil {
			s.Autostart = *upd.Autostart
		}
		if upd.LockNode != nil {
			if *upd.LockNode != "" && !tx.Has(bucketNodes, *upd.LockNode) {
				return fmt.Errorf("%s: %w: node %q does not exist", op, ErrInvalid, *upd.LockNode)
			}
			s.LockNode = *upd.LockNode
		}
		return tx.Put(bucketServers, s.ID, s)
	})
	return s, err
}

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
		d.NICs = append(d.NICs, virt.NIC{MAC: nic.MAC, Model: nic.Model})
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
	return s, nil
}

func virtErr(err error) error {
	if errors.Is(err, virt.ErrInvalid) {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if errors.Is(err, virt.ErrNotFound) {
		return fmt.Errorf("%w: %v", ErrNotFound, err)
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
	if stopped {
		e.setStopped(s.ID, true)
	}
	if err := e.onNode(ctx, s.Node, func(c *virt.Conn) error { return fn(c, s.UUID) }); err != nil {
		return Server{}, fmt.Errorf("%s: %w", op, virtErr(err))
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

// DeleteServer deletes a shut-off server; with deleteDisks its disk images go too
// (an image another server uses, or a master, is kept and named in the answer).
func (e *Engine) DeleteServer(ctx context.Context, u User, id string, deleteDisks bool) ([]string, error) {
	op := serverOp("delete", id)
	if err := requireWriter(u, op); err != nil {
		return nil, err
	}
	s, err := e.Server(ctx, u, id)
	if err != nil {
		return nil, err
	}
	if err := requireOwnerOrAdmin(u, s.Owner, op); err != nil {
		return nil, err
	}
	if s.State != ServerShutoff && s.State != ServerCrashed {
		return nil, fmt.Errorf("%s: %w: it is %s; shut it down or force it off first", op, ErrInUse, s.State)
	}
	if s.Node != "" {
		err := e.onNode(ctx, s.Node, func(c *virt.Conn) error { return c.Undefine(ctx, s.UUID) })
		if err != nil && !errors.Is(err, ErrInvalid) {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
	}
	if err := e.store.Delete(bucketServers, s.ID); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	e.log.Info("server deleted", "server", s.ID, "name", s.Name, "disks_deleted", deleteDisks, "by", u.Name)
	var kept []string
	if deleteDisks {
		for _, d := range s.Disks {
			if err := e.DeleteImage(ctx, u, d.Image); err != nil {
				kept = append(kept, fmt.Sprintf("%s: %v", d.Image, err))
			}
		}
	}
	return kept, nil
}

// AttachDisk adds an image as a disk of a server; hot-plugged when it runs.
func (e *Engine) AttachDisk(ctx context.Context, u User, id string, req ServerDiskRequest) (Server, error) {
	op := serverOp("attach a disk to", id)
	if err := requireWriter(u, op); err != nil {
		return Server{}, err
	}
	bus, err := checkBus(req.Bus)
	if err != nil {
		return Server{}, fmt.Errorf("%s: %w", op, err)
	}
	var s Server
	var im Image
	var index int
	err = e.store.Update(func(tx *store.Tx) error {
		var err error
		if s, err = getServer(tx, u, id); err != nil {
			return err
		}
		if err := requireOwnerOrAdmin(u, s.Owner, op); err != nil {
			return err
		}
		if len(s.Disks) >= MaxDisks {
			return fmt.Errorf("%s: %w: it has %d disks already, the most a server can have", op, ErrInvalid, MaxDisks)
		}
		if bus == BusIDE && s.State != ServerShutoff {
			return fmt.Errorf("%s: %w: ide disks cannot be hot-plugged; shut the server off or use virtio or scsi", op, ErrInvalid)
		}
		if im, err = e.getImage(tx, u, req.Image); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		if err := checkDiskImage(tx, im, false, ""); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		if im.Node != "" && s.Node != "" && im.Node != s.Node {
			return fmt.Errorf("%s: %w: image %s is on node %s's local storage and the server is on %s", op, ErrInvalid, im.ID, im.Node, s.Node)
		}
		index = len(s.Disks)
		s.Disks = append(s.Disks, ServerDisk{Image: im.ID, Bus: bus})
		return tx.Put(bucketServers, s.ID, s)
	})
	if err != nil {
		return Server{}, err
	}
	if s.State != ServerShutoff && s.Node != "" {
		disk := virt.Disk{Path: im.Path, Format: qimg.Format(im.Format).QemuName(), Bus: virt.Bus(bus), Serial: im.ID}
		if err := e.onNode(ctx, s.Node, func(c *virt.Conn) error { return c.AttachDisk(ctx, s.UUID, disk, index) }); err != nil {
			e.store.Update(func(tx *store.Tx) error {
				var cur Server
				if err := tx.Get(bucketServers, s.ID, &cur); err != nil {
					return err
				}
				cur.Disks = slices.DeleteFunc(cur.Disks, func(d ServerDisk) bool { return d.Image == im.ID })
				return tx.Put(bucketServers, s.ID, cur)
			})
			return Server{}, fmt.Errorf("%s: %w", op, virtErr(err))
		}
	}
	return s, nil
}

// DetachDisk removes disk index (0-based) from a server; the image stays.
func (e *Engine) DetachDisk(ctx context.Context, u User, id string, index int) (Server, error) {
	op := serverOp("detach a disk from", id)
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
	if index < 0 || index >= len(s.Disks) {
		return Server{}, fmt.Errorf("%s: %w: it has disks 0 to %d", op, ErrInvalid, len(s.Disks)-1)
	}
	sd := s.Disks[index]
	if s.State != ServerShutoff && s.Node != "" {
		if sd.Bus == BusIDE {
			return Server{}, fmt.Errorf("%s: %w: ide disks cannot be hot-unplugged; shut the server off first", op, ErrInvalid)
		}
		var im Image
		e.store.Get(bucketImages, sd.Image, &im)
		disk := virt.Disk{Path: im.Path, Format: qimg.Format(im.Format).QemuName(), Bus: virt.Bus(sd.Bus), Serial: im.ID}
		if err := e.onNode(ctx, s.Node, func(c *virt.Conn) error { return c.DetachDisk(ctx, s.UUID, disk, index) }); err != nil {
			return Server{}, fmt.Errorf("%s: %w", op, virtErr(err))
		}
	}
	err = e.store.Update(func(tx *store.Tx) error {
		var cur Server
		if err := tx.Get(bucketServers, s.ID, &cur); err != nil {
			return err
		}
		cur.Disks = slices.DeleteFunc(cur.Disks, func(d ServerDisk) bool { return d.Image == sd.Image })
		s = cur
		return tx.Put(bucketServers, s.ID, cur)
	})
	return s, err
}

// SetCDROM inserts an ISO image into the server's CD-ROM drive, or ejects it
// (image ""); live when the server runs.
func (e *Engine) SetCDROM(ctx context.Context, u User, id, image string) (Server, error) {
	op := serverOp("change the CD-ROM of", id)
	if err := requireWriter(u, op); err != nil {
		return Server{}, err
	}
	var s Server
	path := ""
	err := e.store.Update(func(tx *store.Tx) error {
		var err error
		if s, err = getServer(tx, u, id); err != nil {
			return err
		}
		if err := requireOwnerOrAdmin(u, s.Owner, op); err != nil {
			return err
		}
		s.CDROM = ""
		if image != "" {
			im, err := e.getImage(tx, u, image)
			if err != nil {
				return fmt.Errorf("%s: %w", op, err)
			}
			if im.Format != string(qimg.ISO) {
				return fmt.Errorf("%s: %w: image %s is %s, not an ISO", op, ErrInvalid, im.ID, im.Format)
			}
			if im.State != ImageReady {
				return fmt.Errorf("%s: %w: image %s is %s", op, ErrInUse, im.ID, im.State)
			}
			s.CDROM, path = im.ID, im.Path
		}
		return tx.Put(bucketServers, s.ID, s)
	})
	if err != nil {
		return Server{}, err
	}
	if s.State != ServerShutoff && s.Node != "" {
		if err := e.onNode(ctx, s.Node, func(c *virt.Conn) error { return c.ChangeMedia(ctx, s.UUID, path) }); err != nil {
			return Server{}, fmt.Errorf("%s: %w", op, virtErr(err))
		}
	}
	return s, nil
}

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
		return s.ID, err
	}), nil
}
