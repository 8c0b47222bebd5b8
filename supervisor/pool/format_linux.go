package pool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cairn-os/cairn/supervisor/hostcmd"
)

// formatPool is how a driver formats a device: the file system type, the mkfs
// command for a new UUID, and the check of the mounted result.
type formatPool struct {
	fstype string
	mkfs   func(dev, uuid string) (name string, args []string)
	check  func(dir string) error
}

// createOnDevice makes a pool on s.Device: it checks the device and the mount point
// before anything is written, formats the device with a new UUID, mounts it at
// s.Path to check the result, and unmounts it. Every finished step is undone when a
// later one fails: the new file system's signatures are wiped (so no half-made pool
// can be found by its UUID), the mount and a folder it made are removed.
func createOnDevice(ctx context.Context, r hostcmd.Runner, s Spec, f formatPool) (_ Spec, err error) {
	if err := CheckDevice(ctx, s.Device); err != nil {
		return Spec{}, err
	}
	var rev reverter
	defer rev.fail(&err)
	created, err := prepareMountpoint(s.Path)
	if err != nil {
		return Spec{}, err
	}
	if created {
		rev.add("make folder "+s.Path, func() error { return removeDir(s.Path) })
	}
	uuid := newUUID()
	name, args := f.mkfs(s.Device, uuid)
	if _, err := r.Run(ctx, name, args...); err != nil {
		// Not wiped: mkfs fails mostly before it writes (a missing program, a busy
		// device), and then the device still holds what it held.
		return Spec{}, fmt.Errorf("format %s as %s: %w", s.Device, f.fstype, err)
	}
	rev.add("format "+s.Device, func() error { return wipe(r, s.Device) })
	if err := mountDevice(s.Device, s.Path, f.fstype); err != nil {
		return Spec{}, fmt.Errorf("check new pool: %w", err)
	}
	rev.add("mount "+s.Path, func() error { return unix.Unmount(s.Path, unix.MNT_DETACH) })
	if err := f.check(s.Path); err != nil {
		return Spec{}, fmt.Errorf("check new pool: %w", err)
	}
	if err := unix.Unmount(s.Path, 0); err != nil {
		return Spec{}, fmt.Errorf("unmount new pool at %s: %w", s.Path, err)
	}
	rev.success()
	s.UUID = uuid
	return s, nil
}

// removeDir removes the empty folder dir, and nothing else that may have taken its
// place.
func removeDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() {
		return nil
	}
	return os.Remove(dir)
}

// wipe erases the file system signatures on dev.
func wipe(r hostcmd.Runner, dev string) error {
	// Undo runs after the request's context may have ended; it must still run.
	_, err := r.Run(context.Background(), "wipefs", "--all", "--quiet", dev)
	return err
}

// openOnDevice finds the pool's device by UUID (else s.Device), mounts it at s.Path
// unless it is mounted there, checks the layout, and returns the spec with the device
// it was found on.
func openOnDevice(ctx context.Context, r hostcmd.Runner, s Spec, fstype string, check func(dir string) error) (Spec, error) {
	dev, err := findDevice(ctx, r, s, fstype)
	if err != nil {
		return Spec{}, err
	}
	_, mounted, err := mountAt(s.Path)
	if err != nil {
		return Spec{}, fmt.Errorf("open pool %s: %w", s.Path, err)
	}
	if !mounted {
		if err := os.MkdirAll(s.Path, 0o755); err != nil {
			return Spec{}, fmt.Errorf("open pool %s: %w", s.Path, err)
		}
	}
	if err := mountDevice(dev, s.Path, fstype); err != nil {
		return Spec{}, fmt.Errorf("open pool %s: %w", s.Path, err)
	}
	if err := check(s.Path); err != nil {
		if !mounted {
			unix.Unmount(s.Path, 0)
		}
		return Spec{}, fmt.Errorf("open pool %s: %w", s.Path, err)
	}
	s.Device = dev
	return s, nil
}

// hasDevice reports whether the pool lives on a device that Open mounts.
func hasDevice(s Spec) bool { return s.Device != "" || s.UUID != "" }

// pathIn returns root/rel for a file that exists, after checking rel with SafeRel and
// that no element of it below root is a symlink (which could point out of the pool).
func pathIn(root, rel string) (string, error) {
	clean, err := SafeRel(rel)
	if err != nil {
		return "", err
	}
	p := root
	for _, el := range strings.Split(clean, "/") {
		p = filepath.Join(p, el)
		fi, err := os.Lstat(p)
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("%s: %w", p, ErrNotFound)
		}
		if err != nil {
			return "", err
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			return "", fmt.Errorf("%s: %w: it is a symbolic link; restore the file it points to", p, ErrInvalid)
		}
	}
	return p, nil
}
