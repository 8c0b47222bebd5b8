package pool

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/cairn-os/cairn/supervisor/hostcmd"
)

func init() {
	Register("btrfs", func(r hostcmd.Runner) Driver { return &btrfsDriver{run: r} })
}

// Where the kernel says which file systems it has; variables for tests only.
var (
	procFilesystems = "/proc/filesystems"
	sysModule       = "/sys/module"
	libModules      = "/lib/modules"
)

// btrfsRootIno is the inode of a btrfs subvolume's root (BTRFS_FIRST_FREE_OBJECTID).
const btrfsRootIno = 256

// snapshotsDir is the hidden folder in a btrfs pool that holds its snapshots.
const snapshotsDir = ".snapshots"

// btrfsDriver makes pools that are btrfs subvolumes; see the package comment.
type btrfsDriver struct {
	run    hostcmd.Runner
	once   sync.Once
	supErr error
}

var _ Driver = (*btrfsDriver)(nil)

// Info returns what btrfs pools can do.
func (d *btrfsDriver) Info() Info {
	return Info{Driver: "btrfs", Snapshots: true, Reflink: true, Devices: true}
}

// Supported checks for btrfs-progs and the kernel's btrfs, once.
func (d *btrfsDriver) Supported(ctx context.Context) error {
	d.once.Do(func() { d.supErr = btrfsSupported() })
	return d.supErr
}

func btrfsSupported() error {
	var missing []string
	for _, p := range []string{"btrfs", "mkfs.btrfs"} {
		if _, err := exec.LookPath(p); err != nil {
			missing = append(missing, p+" is not on PATH (btrfs-progs)")
		}
	}
	if !kernelHasFS("btrfs") {
		missing = append(missing, "the kernel has no btrfs ("+procFilesystems+", "+filepath.Join(sysModule, "btrfs")+")")
	}
	if len(missing) > 0 {
		return fmt.Errorf("btrfs: %w: %s", ErrNotSupported, strings.Join(missing, "; "))
	}
	return nil
}

// kernelHasFS reports whether the kernel has the file system built in or loaded, or
// has its module to load on the first mount.
func kernelHasFS(fs string) bool {
	if b, err := os.ReadFile(procFilesystems); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) > 0 && f[len(f)-1] == fs {
				return true
			}
		}
	}
	if _, err := os.Stat(filepath.Join(sysModule, fs)); err == nil {
		return true
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		release := unix.ByteSliceToString(u.Release[:])
		if m, _ := filepath.Glob(filepath.Join(libModules, release, "kernel", "fs", fs, fs+".ko*")); len(m) > 0 {
			return true
		}
	}
	return false
}

// Create makes a btrfs pool. Without a Device, s.Path becomes a subvolume on the
// btrfs file system of its parent (an existing subvolume, like the data disk's
// pools/0, is taken as it is; an empty folder is replaced by one). With a Device, the
// device is formatted btrfs and its top level is the pool.
func (d *btrfsDriver) Create(ctx context.Context, s Spec) (Spec, error) {
	if err := d.Supported(ctx); err != nil {
		return Spec{}, err
	}
	if err := checkPath(s); err != nil {
		return Spec{}, err
	}
	s.Driver = "btrfs"
	if s.Device != "" {
		return createOnDevice(ctx, d.run, s, formatPool{
			fstype: "btrfs",
			mkfs: func(dev, uuid string) (string, []string) {
				// --force: the engine asked the user to confirm the format.
				return "mkfs.btrfs", []string{"--force", "--quiet", "--label", fsLabel(s.Path, 255), "--uuid", uuid, dev}
			},
			check: checkSubvolume,
		})
	}
	return d.createOnDir(ctx, s)
}

func (d *btrfsDriver) createOnDir(ctx context.Context, s Spec) (_ Spec, err error) {
	parent := filepath.Dir(s.Path)
	magic, err := fsMagic(parent)
	if err != nil {
		return Spec{}, fmt.Errorf("create btrfs pool %s: %w: its parent %s: %v; make the parent first", s.Path, ErrInvalid, parent, err)
	}
	if magic != unix.BTRFS_SUPER_MAGIC {
		return Spec{}, fmt.Errorf("create btrfs pool %s: %w: %s is not on a btrfs file system; choose a folder on btrfs, give a device to format, or use the dir driver", s.Path, ErrInvalid, parent)
	}
	var rev reverter
	defer rev.fail(&err)
	fi, err := os.Lstat(s.Path)
	switch {
	case err == nil && checkSubvolume(s.Path) == nil:
		return s, nil
	case err == nil && fi.IsDir():
		if empty, _ := isEmptyDir(s.Path); !empty {
			return Spec{}, fmt.Errorf("create btrfs pool %s: %w: it is a folder with files, not a btrfs subvolume; choose another path, or move the files out", s.Path, ErrInvalid)
		}
		if _, mounted, _ := mountAt(s.Path); mounted {
			return Spec{}, fmt.Errorf("create btrfs pool %s: %w: something is mounted there; unmount it or choose another path", s.Path, ErrInUse)
		}
		if err := os.Remove(s.Path); err != nil {
			return Spec{}, fmt.Errorf("create btrfs pool %s: %w", s.Path, err)
		}
		mode := fi.Mode().Perm()
		rev.add("replace folder "+s.Path, func() error { return os.Mkdir(s.Path, mode) })
	case err == nil:
		return Spec{}, fmt.Errorf("create btrfs pool %s: %w: it is a file, not a folder; choose another path", s.Path, ErrInvalid)
	case !errors.Is(err, os.ErrNotExist):
		return Spec{}, fmt.Errorf("create btrfs pool %s: %w", s.Path, err)
	}
	if _, err := d.run.Run(ctx, "btrfs", "subvolume", "create", s.Path); err != nil {
		return Spec{}, fmt.Errorf("create btrfs pool %s: %w", s.Path, err)
	}
	rev.add("create subvolume "+s.Path, func() error {
		_, err := d.run.Run(context.Background(), "btrfs", "subvolume", "delete", s.Path)
		return err
	})
	if err := os.Chmod(s.Path, 0o755); err != nil {
		return Spec{}, fmt.Errorf("create btrfs pool %s: %w", s.Path, err)
	}
	rev.success()
	return s, nil
}

// checkSubvolume returns ErrInvalid (ErrNotFound when missing) unless dir is the root
// of a btrfs subvolume.
func checkSubvolume(dir string) error {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("pool folder %s: %w: it is missing; attach or mount the disk that holds it", dir, ErrNotFound)
		}
		return fmt.Errorf("pool folder %s: %w", dir, err)
	}
	magic, err := fsMagic(dir)
	if err != nil {
		return fmt.Errorf("pool folder %s: %w", dir, err)
	}
	if magic != unix.BTRFS_SUPER_MAGIC || st.Ino != btrfsRootIno || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("pool folder %s: %w: it is not a btrfs subvolume; check that the pool's disk is mounted", dir, ErrInvalid)
	}
	return nil
}

// Open opens a btrfs pool: a subvolume at s.Path, or the file system on the pool's
// device (found by UUID), mounted at s.Path.
func (d *btrfsDriver) Open(ctx context.Context, s Spec) (Pool, error) {
	if err := d.Supported(ctx); err != nil {
		return nil, err
	}
	if err := checkPath(s); err != nil {
		return nil, err
	}
	s.Driver = "btrfs"
	if hasDevice(s) {
		var err error
		if s, err = openOnDevice(ctx, d.run, s, "btrfs", checkSubvolume); err != nil {
			return nil, err
		}
	} else if err := checkSubvolume(s.Path); err != nil {
		return nil, fmt.Errorf("open pool: %w", err)
	}
	return &btrfsPool{spec: s, run: d.run}, nil
}

// Close unmounts a pool on a device. A subvolume on another file system stays.
func (d *btrfsDriver) Close(ctx context.Context, s Spec) error {
	if !hasDevice(s) {
		return nil
	}
	return unmount(s.Path)
}
