package engine

import (
	"context"
	"fmt"
	"slices"

	"github.com/cairn-os/cairn/supervisor/qimg"
	"github.com/cairn-os/cairn/supervisor/store"
	"github.com/cairn-os/cairn/supervisor/virt"
)

// Disks and the CD-ROM of a server, changed live when it runs.

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
