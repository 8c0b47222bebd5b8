package virt

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"
)

// LocalPool is the name of the libvirt storage pool ("dir" type) through which the
// admin makes child images in a node's local directory, so that no other agent is
// needed on the node. It is transient: libvirtd forgets it when it restarts and the
// next Local call makes it again. A second directory on the same node gets a pool
// named LocalPool-<hash of the directory>.
const LocalPool = "cairn-local"

var volNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,254}$`)

// LocalCreateChild makes name in the node's directory dir: a qcow2 image whose
// backing file is backing (in backingFormat, qemu's name), as large as its backing,
// and returns its path. ErrExists when name is taken.
func (c *Conn) LocalCreateChild(ctx context.Context, dir, name, backing, backingFormat string) (string, error) {
	op := fmt.Sprintf("create child image %s in %s", name, dir)
	if err := checkVolName(name); err != nil {
		return "", fmt.Errorf("%s: %w", op, err)
	}
	if err := checkPath("backing image", backing); err != nil {
		return "", fmt.Errorf("%s: %w", op, err)
	}
	if !slices.Contains(formats, backingFormat) {
		return "", fmt.Errorf("%s: %w: backing format %q: use one of %s", op, ErrInvalid, backingFormat, strings.Join(formats, ", "))
	}
	pool, err := c.localPool(ctx, dir)
	if err != nil {
		return "", fmt.Errorf("%s: %w", op, err)
	}
	// The pool only knows the files it saw at its last refresh; a stale list would
	// let libvirt write over a file made since.
	c.refresh(ctx, pool)
	vol := libvirtxml.StorageVolume{
		Name: name,
		Target: &libvirtxml.StorageVolumeTarget{
			Format: &libvirtxml.StorageVolumeTargetFormat{Type: "qcow2"},
			Compat: "1.1",
		},
		BackingStore: &libvirtxml.StorageVolumeBackingStore{
			Path:   backing,
			Format: &libvirtxml.StorageVolumeTargetFormat{Type: backingFormat},
		},
	}
	x, err := vol.Marshal()
	if err != nil {
		return "", fmt.Errorf("%s: %w", op, err)
	}
	v, err := call(ctx, func() (libvirt.StorageVol, error) { return c.l.StorageVolCreateXML(pool, x, 0) })
	if err != nil {
		return "", fmt.Errorf("%s: %w", op, classify(err))
	}
	path, err := call(ctx, func() (string, error) { return c.l.StorageVolGetPath(v) })
	if err != nil {
		return "", fmt.Errorf("%s: read its path: %w", op, classify(err))
	}
	return path, nil
}

// LocalDelete removes the image name from the node's directory dir. An image that
// is not there is not an error.
func (c *Conn) LocalDelete(ctx context.Context, dir, name string) error {
	op := fmt.Sprintf("delete image %s in %s", name, dir)
	v, err := c.localVol(ctx, dir, name)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	err = call0(ctx, func() error { return c.l.StorageVolDelete(v, 0) })
	if err != nil && libvirtCode(err) != libvirt.ErrNoStorageVol {
		return fmt.Errorf("%s: %w", op, classify(err))
	}
	return nil
}

// LocalInfo returns the size the guest sees (capacity) and the space used on the node
// (allocation) of the image name in the node's directory dir, in bytes.
func (c *Conn) LocalInfo(ctx context.Context, dir, name string) (capacity, allocation uint64, err error) {
	op := fmt.Sprintf("image %s in %s", name, dir)
	v, err := c.localVol(ctx, dir, name)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", op, err)
	}
	type info struct{ capacity, allocation uint64 }
	i, err := call(ctx, func() (info, error) {
		_, capa, alloc, err := c.l.StorageVolGetInfo(v)
		return info{capa, alloc}, err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", op, classify(err))
	}
	return i.capacity, i.allocation, nil
}

// LocalUsage returns the size of the file system holding the node's directory dir,
// the space used on it and the space available, in bytes.
func (c *Conn) LocalUsage(ctx context.Context, dir string) (capacity, allocation, available uint64, err error) {
	op := "local storage usage of " + dir
	pool, err := c.localPool(ctx, dir)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("%s: %w", op, err)
	}
	c.refresh(ctx, pool)
	type info struct{ capacity, allocation, available uint64 }
	i, err := call(ctx, func() (info, error) {
		_, capa, alloc, avail, err := c.l.StoragePoolGetInfo(pool)
		return info{capa, alloc, avail}, err
	})
	if err != nil {
		return 0, 0, 0, fmt.Errorf("%s: %w", op, classify(err))
	}
	return i.capacity, i.allocation, i.available, nil
}

// LocalRelease stops the transient pool of the node's directory dir, if there is
// one; the files stay. The next Local call on dir makes the pool again. Use it
// before removing the directory.
func (c *Conn) LocalRelease(ctx context.Context, dir string) error {
	op := "release local storage " + dir
	if err := checkPath("local storage directory", dir); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	pool, err := call(ctx, func() (libvirt.StoragePool, error) { return c.l.StoragePoolLookupByTargetPath(filepath.Clean(dir)) })
	if libvirtCode(err) == libvirt.ErrNoStoragePool {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", op, classify(err))
	}
	persistent, err := call(ctx, func() (int32, error) { return c.l.StoragePoolIsPersistent(pool) })
	if err != nil {
		return fmt.Errorf("%s: %w", op, classify(err))
	}
	if persistent == 1 {
		return nil // not ours to stop
	}
	err = call0(ctx, func() error { return c.l.StoragePoolDestroy(pool) })
	if err != nil && libvirtCode(err) != libvirt.ErrNoStoragePool {
		return fmt.Errorf("%s: %w", op, classify(err))
	}
	return nil
}

// localVol finds the volume name in dir's pool, refreshing the pool first so that
// files made or removed since are seen.
func (c *Conn) localVol(ctx context.Context, dir, name string) (libvirt.StorageVol, error) {
	if err := checkVolName(name); err != nil {
		return libvirt.StorageVol{}, err
	}
	pool, err := c.localPool(ctx, dir)
	if err != nil {
		return libvirt.StorageVol{}, err
	}
	c.refresh(ctx, pool)
	v, err := call(ctx, func() (libvirt.StorageVol, error) { return c.l.StorageVolLookupByName(pool, name) })
	if err != nil {
		return libvirt.StorageVol{}, classify(err)
	}
	return v, nil
}

// refresh rescans the pool's directory. A failure (another job on the pool) only
// means the list is as old as the last refresh.
func (c *Conn) refresh(ctx context.Context, pool libvirt.StoragePool) {
	call0(ctx, func() error { return c.l.StoragePoolRefresh(pool, 0) })
}

// localPool returns the active pool whose target is dir, making a transient one
// when there is none.
func (c *Conn) localPool(ctx context.Context, dir string) (libvirt.StoragePool, error) {
	if err := checkPath("local storage directory", dir); err != nil {
		return libvirt.StoragePool{}, err
	}
	dir = filepath.Clean(dir)
	for attempt := 0; ; attempt++ {
		pool, err := call(ctx, func() (libvirt.StoragePool, error) { return c.l.StoragePoolLookupByTargetPath(dir) })
		if err == nil {
			active, err := call(ctx, func() (int32, error) { return c.l.StoragePoolIsActive(pool) })
			if err != nil {
				return pool, fmt.Errorf("storage pool %s: %w", pool.Name, classify(err))
			}
			if active == 1 {
				return pool, nil
			}
			// A persistent pool someone defined at dir: start it.
			err = call0(ctx, func() error { return c.l.StoragePoolCreate(pool, 0) })
			if err != nil {
				return pool, fmt.Errorf("start storage pool %s: %w", pool.Name, classify(err))
			}
			return pool, nil
		}
		if libvirtCode(err) != libvirt.ErrNoStoragePool {
			return pool, fmt.Errorf("find the storage pool of %s: %w", dir, classify(err))
		}
		name := LocalPool
		if _, err := call(ctx, func() (libvirt.StoragePool, error) { return c.l.StoragePoolLookupByName(name) }); err == nil {
			sum := sha256.Sum256([]byte(dir))
			name = LocalPool + "-" + hex.EncodeToString(sum[:4])
		}
		def := libvirtxml.StoragePool{Type: "dir", Name: name, Target: &libvirtxml.StoragePoolTarget{Path: dir}}
		x, err := def.Marshal()
		if err != nil {
			return libvirt.StoragePool{}, err
		}
		// WithBuild makes the directory when it is missing (an existing one is
		// left as it is).
		pool, err = call(ctx, func() (libvirt.StoragePool, error) {
			return c.l.StoragePoolCreateXML(x, libvirt.StoragePoolCreateWithBuild)
		})
		if err == nil {
			return pool, nil
		}
		if attempt > 0 {
			return pool, fmt.Errorf("make storage pool %s at %s: %w", name, dir, classify(err))
		}
		// Someone else made it meanwhile: look again.
	}
}

func checkVolName(name string) error {
	if !volNameRE.MatchString(name) {
		return fmt.Errorf("%w: image file name %q: use 1–255 letters, digits, '.', '_' or '-', not starting with '.' or '-'", ErrInvalid, name)
	}
	return nil
}
