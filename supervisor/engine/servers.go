package engine

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"slices"

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
	if req.NICs < 0 || req.NICs+len(req.Connections) > MaxNICs {
		return Server{}, fmt.Errorf("%s: %w: a server has at most %d NICs (nics plus connections)", op, ErrInvalid, MaxNICs)
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
	placeholders := make([]ServerNIC, req.NICs)
	for i := range placeholders {
		placeholders[i] = ServerNIC{MAC: randomMAC(), Model: "virtio"}
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
		for _, id := range req.Connections {
			if _, err := attachTx(tx, u, &s, id); err != nil {
				return fmt.Errorf("%s: %w", op, err)
			}
		}
		s.NICs = append(s.NICs, placeholders...)
		return tx.Put(bucketServers, s.ID, s)
	})
	if err != nil {
		undo()
		return Server{}, err
	}
	e.log.Info("server created", "server", s.ID, "name", s.Name, "by", u.Name)
	if len(req.Connections) > 0 {
		e.syncNetworks(ctx)
	}
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
	err = e.store.Update(func(tx *store.Tx) error {
		if err := releaseConnections(tx, s); err != nil {
			return err
		}
		return tx.Delete(bucketServers, s.ID)
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	e.syncNetworks(ctx)
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
