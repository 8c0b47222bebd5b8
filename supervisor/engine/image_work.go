package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/cairn-os/cairn/supervisor/filecopy"
	"github.com/cairn-os/cairn/supervisor/qimg"
	"github.com/cairn-os/cairn/supervisor/store"
	"github.com/cairn-os/cairn/supervisor/virt"
)

// Work on image files: grow, convert, clone (linked or full), flatten, and the lock
// that keeps two pieces of work (or a running server) off one image.

// ResizeImage grows an image to size bytes. Servers that use it must be shut off.
func (e *Engine) ResizeImage(ctx context.Context, u User, id string, size int64) (Image, error) {
	op := imageOp("resize", id)
	if err := requireWriter(u, op); err != nil {
		return Image{}, err
	}
	if size <= 0 || size > MaxImageSize || size%512 != 0 {
		return Image{}, fmt.Errorf("%s: %w: size must be a multiple of 512 bytes up to 64 TiB", op, ErrInvalid)
	}
	im, err := e.lockImage(u, id, op, lockWrite)
	if err != nil {
		return Image{}, err
	}
	defer e.unlockImage(im)
	if im.Node != "" {
		return Image{}, fmt.Errorf("%s: %w: it is on node %s's local storage; resize it from inside the guest's disk tools after copying it to a pool", op, ErrInvalid, im.Node)
	}
	if err := e.tool().Resize(ctx, im.Path, qimg.Format(im.Format), size); err != nil {
		return Image{}, fmt.Errorf("%s: %w", op, qimgErr(err))
	}
	e.unlockImage(im)
	return e.finishImage(ctx, im)
}

// lockKind is how an operation uses an image.
type lockKind int

const (
	// lockRead reads the image: servers may use it only while shut off; masters are fine.
	lockRead lockKind = iota
	// lockWrite changes the image: not a master, no running server.
	lockWrite
)

// lockImage checks that the image is ready and usable for the kind of work, and marks
// it busy until unlockImage.
func (e *Engine) lockImage(u User, id, op string, kind lockKind) (Image, error) {
	var im Image
	err := e.store.Update(func(tx *store.Tx) error {
		var err error
		if im, err = e.getImage(tx, u, id); err != nil {
			return err
		}
		if kind == lockWrite {
			if err := requireOwnerOrAdmin(u, im.Owner, op); err != nil {
				return err
			}
		}
		if im.State != ImageReady {
			return fmt.Errorf("%s: %w: the image is %s; wait for that to end", op, ErrInUse, im.State)
		}
		if kind == lockWrite && im.Master {
			return fmt.Errorf("%s: %w: it is a master (read-only); clone it, or unmark it first", op, ErrInvalid)
		}
		servers, err := store.ListTx[Server](tx, bucketServers)
		if err != nil {
			return err
		}
		for _, s := range servers {
			if slices.Contains(usedBy(im.ID, []Server{s}), s.ID) && s.State != ServerShutoff && s.State != ServerCrashed {
				return fmt.Errorf("%s: %w: server %s (%s) uses it and is %s; shut it off first", op, ErrInUse, s.Name, s.ID, s.State)
			}
		}
		im.State = ImageBusy
		return tx.Put(bucketImages, im.ID, im)
	})
	if err != nil {
		return Image{}, err
	}
	im.State = ImageReady
	return im, nil
}

// unlockImage makes a locked image ready again (it may have been deleted meanwhile).
func (e *Engine) unlockImage(im Image) {
	e.store.Update(func(tx *store.Tx) error {
		var cur Image
		if err := tx.Get(bucketImages, im.ID, &cur); err != nil {
			return nil
		}
		if cur.State == ImageBusy {
			cur.State = ImageReady
		}
		return tx.Put(bucketImages, im.ID, cur)
	})
}

func requireOwnerOrAdmin(u User, owner, op string) error {
	if u.Role == RoleAdmin || u.ID == owner {
		return nil
	}
	return fmt.Errorf("%s: %w: only its owner or an admin may change it", op, ErrForbidden)
}

// newImageRecord records a new busy image (for work that writes it) after checking
// the name; the caller finishes it or removes it.
func (e *Engine) newImageRecord(u User, op, name string, p Pool, f qimg.Format, node string) (Image, error) {
	im := Image{ID: "i-" + randomHex(6), Name: name, Owner: u.ID, Format: string(f), Pool: p.ID, State: ImageBusy, CreatedAt: e.now()}
	if node != "" {
		im.Pool, im.Node = -1, node
		im.Path = filepath.Join(e.cfg.LocalDir, im.ID+"."+f.Ext())
	} else {
		im.Path = imagePath(p, im.ID, f)
	}
	err := e.store.Update(func(tx *store.Tx) error {
		if err := checkImageName(tx, u.ID, name, ""); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		return tx.Put(bucketImages, im.ID, im)
	})
	return im, err
}

// dropImage removes a half-made image: its record and file.
func (e *Engine) dropImage(im Image) {
	os.Remove(im.Path)
	e.store.Delete(bucketImages, im.ID)
}

// ConvertImage converts an image into a new image of another format (V2V) in the
// same pool, as an operation.
func (e *Engine) ConvertImage(ctx context.Context, u User, id, format, name string) (Operation, error) {
	op := imageOp("convert", id)
	if err := requireWriter(u, op); err != nil {
		return Operation{}, err
	}
	f, err := qimg.ParseFormat(format)
	if err != nil {
		return Operation{}, fmt.Errorf("%s: %w: %v", op, ErrInvalid, err)
	}
	if f == qimg.ISO {
		return Operation{}, fmt.Errorf("%s: %w: nothing converts into an ISO; choose qcow2, raw, vmdk, vdi or vhdx", op, ErrInvalid)
	}
	src, err := e.lockImage(u, id, op, lockRead)
	if err != nil {
		return Operation{}, err
	}
	if src.Node != "" {
		e.unlockImage(src)
		return Operation{}, fmt.Errorf("%s: %w: it is on node %s's local storage", op, ErrInvalid, src.Node)
	}
	if name == "" {
		name = src.Name + "-" + string(f)
	}
	p, err := e.poolFor(&src.Pool)
	if err == nil {
		var dst Image
		dst, err = e.newImageRecord(u, op, name, p, f, "")
		if err == nil {
			return e.startOp(u.ID, "convert", src.ID, func(ctx context.Context, pr progress) (string, error) {
				defer e.unlockImage(src)
				if err := e.tool().Convert(ctx, src.Path, qimg.Format(src.Format), dst.Path, f, pr.Fraction("converting")); err != nil {
					e.dropImage(dst)
					return "", err
				}
				if _, err := e.finishImage(ctx, dst); err != nil {
					e.dropImage(dst)
					return "", err
				}
				return dst.ID, nil
			}), nil
		}
	}
	e.unlockImage(src)
	return Operation{}, err
}

// CloneImage makes a new image from id: a qcow2 child of a master through a backing
// file (instant; on a node's local storage when req.Node is set), or a full copy as
// an operation. It returns the new image (children) or the operation (copies).
func (e *Engine) CloneImage(ctx context.Context, u User, id string, req CloneRequest) (Image, *Operation, error) {
	op := imageOp("clone", id)
	if err := requireWriter(u, op); err != nil {
		return Image{}, nil, err
	}
	src, err := e.Image(ctx, u, id)
	if err != nil {
		return Image{}, nil, err
	}
	linked := src.Master
	if req.Linked != nil {
		linked = *req.Linked
	}
	if req.Name == "" {
		req.Name = src.Name + "-" + randomHex(2)
	}
	if linked {
		im, err := e.cloneLinked(ctx, u, src, req)
		return im, nil, err
	}
	if req.Node != "" {
		return Image{}, nil, fmt.Errorf("%s: %w: full copies go to a pool; only linked clones go to a node's local storage", op, ErrInvalid)
	}
	o, err := e.copyImage(ctx, u, src, req)
	if err != nil {
		return Image{}, nil, err
	}
	return Image{}, &o, nil
}

func (e *Engine) cloneLinked(ctx context.Context, u User, m Image, req CloneRequest) (Image, error) {
	op := imageOp("clone", m.ID)
	if !m.Master {
		return Image{}, fmt.Errorf("%s: %w: only a master can have linked children; mark it master first or make a full copy (linked: false)", op, ErrInvalid)
	}
	if m.State != ImageReady {
		return Image{}, fmt.Errorf("%s: %w: the master is %s", op, ErrInUse, m.State)
	}
	var p Pool
	node := req.Node
	if node == "" {
		pid := m.Pool
		if req.Pool != nil {
			pid = *req.Pool
		}
		var err error
		if p, err = e.poolFor(&pid); err != nil {
			return Image{}, fmt.Errorf("%s: %w", op, err)
		}
	} else {
		n, err := e.Node(ctx, u, node)
		if err != nil {
			return Image{}, fmt.Errorf("%s: %w", op, err)
		}
		if n.State != NodeReady {
			return Image{}, fmt.Errorf("%s: %w: node %s is %s", op, ErrInvalid, n.ID, n.State)
		}
		node = n.ID
	}
	child, err := e.newImageRecord(u, op, req.Name, p, qimg.QCOW2, node)
	if err != nil {
		return Image{}, err
	}
	child.Backing = m.ID
	child.VirtualSize = m.VirtualSize
	backingFmt := qimg.Format(m.Format).QemuName()
	if node != "" {
		err := e.onNode(ctx, node, func(c *virt.Conn) error {
			var err error
			child.Path, err = c.LocalCreateChild(ctx, e.cfg.LocalDir, filepath.Base(child.Path), m.Path, backingFmt)
			return err
		})
		if err != nil {
			e.store.Delete(bucketImages, child.ID)
			return Image{}, fmt.Errorf("%s on node %s: %w", op, node, err)
		}
		child.State = ImageReady
		if err := e.store.Put(bucketImages, child.ID, child); err != nil {
			return Image{}, err
		}
		e.log.Info("image cloned", "image", child.ID, "master", m.ID, "node", node, "by", u.Name)
		return child, nil
	}
	if err := e.store.Put(bucketImages, child.ID, child); err != nil {
		return Image{}, err
	}
	if err := e.tool().CreateChild(ctx, child.Path, m.Path, qimg.Format(m.Format)); err != nil {
		e.dropImage(child)
		return Image{}, fmt.Errorf("%s: %w", op, qimgErr(err))
	}
	im, err := e.finishImage(ctx, child)
	if err != nil {
		e.dropImage(child)
		return Image{}, err
	}
	e.log.Info("image cloned", "image", im.ID, "master", m.ID, "pool", im.Pool, "by", u.Name)
	return im, nil
}

func (e *Engine) copyImage(ctx context.Context, u User, src Image, req CloneRequest) (Operation, error) {
	op := imageOp("copy", src.ID)
	if src.Node != "" {
		return Operation{}, fmt.Errorf("%s: %w: it is on node %s's local storage", op, ErrInvalid, src.Node)
	}
	src, err := e.lockImage(u, src.ID, op, lockRead)
	if err != nil {
		return Operation{}, err
	}
	pid := src.Pool
	if req.Pool != nil {
		pid = *req.Pool
	}
	p, err := e.poolFor(&pid)
	if err != nil {
		e.unlockImage(src)
		return Operation{}, fmt.Errorf("%s: %w", op, err)
	}
	dst, err := e.newImageRecord(u, op, req.Name, p, qimg.Format(src.Format), "")
	if err != nil {
		e.unlockImage(src)
		return Operation{}, err
	}
	dst.Backing = src.Backing
	return e.startOp(u.ID, "copy", src.ID, func(ctx context.Context, pr progress) (string, error) {
		defer e.unlockImage(src)
		if _, err := filecopy.Copy(ctx, src.Path, dst.Path, pr.Bytes("copying")); err != nil {
			e.dropImage(dst)
			return "", err
		}
		os.Chmod(dst.Path, 0o640)
		if err := e.store.Put(bucketImages, dst.ID, dst); err != nil {
			e.dropImage(dst)
			return "", err
		}
		if _, err := e.finishImage(ctx, dst); err != nil {
			e.dropImage(dst)
			return "", err
		}
		return dst.ID, nil
	}), nil
}

// FlattenImage makes a child independent of its master, as an operation.
func (e *Engine) FlattenImage(ctx context.Context, u User, id string) (Operation, error) {
	op := imageOp("flatten", id)
	if err := requireWriter(u, op); err != nil {
		return Operation{}, err
	}
	im, err := e.lockImage(u, id, op, lockWrite)
	if err != nil {
		return Operation{}, err
	}
	if im.Backing == "" {
		e.unlockImage(im)
		return Operation{}, fmt.Errorf("%s: %w: it has no master to be flattened from", op, ErrInvalid)
	}
	if im.Node != "" {
		e.unlockImage(im)
		return Operation{}, fmt.Errorf("%s: %w: it is on node %s's local storage; flatten works on pool images", op, ErrInvalid, im.Node)
	}
	return e.startOp(u.ID, "flatten", im.ID, func(ctx context.Context, pr progress) (string, error) {
		defer e.unlockImage(im)
		if err := e.tool().Flatten(ctx, im.Path, pr.Fraction("flattening")); err != nil {
			return "", err
		}
		err := e.store.Update(func(tx *store.Tx) error {
			var cur Image
			if err := tx.Get(bucketImages, im.ID, &cur); err != nil {
				return err
			}
			cur.Backing = ""
			return tx.Put(bucketImages, im.ID, cur)
		})
		return im.ID, err
	}), nil
}
