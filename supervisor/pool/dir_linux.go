package pool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/cairn-os/cairn/supervisor/hostcmd"
)

func init() {
	Register("dir", func(r hostcmd.Runner) Driver { return &dirDriver{run: r} })
}

// dirDriver makes pools that are plain folders: an existing one, or the root of an
// ext4 file system on a device. Its pools cannot snapshot.
type dirDriver struct {
	run hostcmd.Runner
}

var _ Driver = (*dirDriver)(nil)

// Info returns what dir pools can do.
func (d *dirDriver) Info() Info { return Info{Driver: "dir", Devices: true} }

// Supported returns nil: folders work everywhere. Formatting a device needs
// mkfs.ext4, which Create reports if it is missing.
func (d *dirDriver) Supported(ctx context.Context) error { return nil }

// Create makes a dir pool. Without a Device, s.Path must be an existing folder, or
// is made when its parent exists. With a Device, the device is formatted ext4.
func (d *dirDriver) Create(ctx context.Context, s Spec) (Spec, error) {
	if err := checkPath(s); err != nil {
		return Spec{}, err
	}
	s.Driver = "dir"
	if s.Device != "" {
		return createOnDevice(ctx, d.run, s, formatPool{
			fstype: "ext4",
			mkfs: func(dev, uuid string) (string, []string) {
				// -F: the engine asked the user to confirm the format. -m 0: no
				// blocks reserved for root, which only matters for a system disk.
				return "mkfs.ext4", []string{"-q", "-F", "-m", "0", "-L", fsLabel(s.Path, 16), "-U", uuid, dev}
			},
			check: checkExt4,
		})
	}
	fi, err := os.Stat(s.Path)
	switch {
	case err == nil && fi.IsDir():
		return s, nil
	case err == nil:
		return Spec{}, fmt.Errorf("create dir pool %s: %w: it is a file, not a folder; choose another path", s.Path, ErrInvalid)
	case !errors.Is(err, os.ErrNotExist):
		return Spec{}, fmt.Errorf("create dir pool %s: %w", s.Path, err)
	}
	parent := filepath.Dir(s.Path)
	if pfi, err := os.Stat(parent); err != nil || !pfi.IsDir() {
		return Spec{}, fmt.Errorf("create dir pool %s: %w: its parent %s is not an existing folder; make it first, or mount the disk it is on", s.Path, ErrInvalid, parent)
	}
	if err := os.Mkdir(s.Path, 0o755); err != nil {
		return Spec{}, fmt.Errorf("create dir pool %s: %w", s.Path, err)
	}
	return s, nil
}

func checkExt4(dir string) error {
	magic, err := fsMagic(dir)
	if err != nil {
		return fmt.Errorf("pool folder %s: %w", dir, err)
	}
	if magic != unix.EXT4_SUPER_MAGIC {
		return fmt.Errorf("pool folder %s: %w: it is not an ext4 file system; check that the pool's disk is mounted", dir, ErrInvalid)
	}
	return nil
}

// Open opens a dir pool: the folder at s.Path, or the ext4 file system on the pool's
// device (found by UUID), mounted at s.Path.
func (d *dirDriver) Open(ctx context.Context, s Spec) (Pool, error) {
	if err := checkPath(s); err != nil {
		return nil, err
	}
	s.Driver = "dir"
	if hasDevice(s) {
		var err error
		if s, err = openOnDevice(ctx, d.run, s, "ext4", checkExt4); err != nil {
			return nil, err
		}
		return &dirPool{spec: s}, nil
	}
	fi, err := os.Stat(s.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("open pool %s: %w: the folder is missing; mount the disk that holds it, or make the folder", s.Path, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("open pool %s: %w", s.Path, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("open pool %s: %w: it is a file, not a folder", s.Path, ErrInvalid)
	}
	return &dirPool{spec: s}, nil
}

// Close unmounts a pool on a device. A pool on an existing folder stays as it is.
func (d *dirDriver) Close(ctx context.Context, s Spec) error {
	if !hasDevice(s) {
		return nil
	}
	return unmount(s.Path)
}

// dirPool is an opened dir pool.
type dirPool struct {
	spec Spec
}

var _ Pool = (*dirPool)(nil)

// Spec returns the pool's spec.
func (p *dirPool) Spec() Spec { return p.spec }

// Usage returns the space of the file system that holds the pool's folder.
func (p *dirPool) Usage(ctx context.Context) (Usage, error) { return statUsage(p.spec.Path) }
