package datadisk

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/cairn-os/cairn/supervisor/hostcmd"
)

// Prepare makes d the data disk at mountpoint. Format first checks again, with the
// disk opened exclusively, that it is blank and not in use, then runs mkfs.btrfs
// without --force (so mkfs refuses too if it sees any signature) and mounts it. Mount
// checks that d still holds the CAIRNDATA btrfs and mounts it with noatime. Both then
// make the state/ and pools/0/ subvolumes if they are missing. Mounting a disk that is
// already mounted at mountpoint is not an error.
func Prepare(ctx context.Context, r hostcmd.Runner, logger *slog.Logger, d Disk, action Action, mountpoint string) error {
	logger = logger.With("component", "datadisk", "disk", d.Path)
	switch action {
	case Format:
		if err := checkBlank(d); err != nil {
			return err
		}
		logger.Info("formatting blank disk as the data disk", "size_bytes", d.SizeBytes, "label", Label)
		if _, err := r.Run(ctx, "mkfs.btrfs", "--label", Label, d.Path); err != nil {
			return fmt.Errorf("format data disk %s: %w", d.Path, err)
		}
	case Mount:
	default:
		return fmt.Errorf("prepare data disk %s: nothing to do for action %q", d.Path, action)
	}
	if err := mount(d, mountpoint); err != nil {
		return err
	}
	if err := makeLayout(mountpoint); err != nil {
		if uerr := unix.Unmount(mountpoint, 0); uerr != nil {
			logger.Error("unmount after failed set-up", "mountpoint", mountpoint, "err", uerr)
		}
		return err
	}
	logger.Info("data disk mounted", "mountpoint", mountpoint)
	return nil
}

// checkBlank reads the disk again right before mkfs: the list it was chosen from may
// be minutes old, and formatting a disk with data is the one mistake that cannot be
// undone. O_EXCL fails when the disk or a partition is mounted or held.
func checkBlank(d Disk) error {
	refuse := func(why string) error {
		return fmt.Errorf("refusing to format %s: %s. Cairn formats only blank disks (all zeros at the start and the end); if the data on it is not needed, wipe it yourself (wipefs --all %s) and reboot, or attach another disk",
			d.Path, why, d.Path)
	}
	if !d.Blank {
		return refuse("it " + d.describe())
	}
	f, err := os.OpenFile(d.Path, os.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EBUSY) {
		return refuse("it is in use (mounted, or held by another device)")
	}
	if err != nil {
		return fmt.Errorf("format data disk %s: %w", d.Path, err)
	}
	defer f.Close()
	size, err := f.Seek(0, 2)
	if err != nil || size <= 0 {
		return fmt.Errorf("format data disk %s: cannot tell its size: %v", d.Path, err)
	}
	sig, blank, err := sniff(f, size)
	if err != nil {
		return fmt.Errorf("format data disk %s: %w", d.Path, err)
	}
	if !blank {
		return refuse("it " + Disk{FSType: sig.fstype, Label: sig.label}.describe())
	}
	return nil
}

// mount mounts the CAIRNDATA btrfs on d at mountpoint.
func mount(d Disk, mountpoint string) error {
	f, err := os.Open(d.Path)
	if err != nil {
		return fmt.Errorf("mount data disk %s: %w", d.Path, err)
	}
	size, _ := f.Seek(0, 2)
	sig, _, err := sniff(f, size)
	f.Close()
	if err != nil {
		return fmt.Errorf("mount data disk %s: %w", d.Path, err)
	}
	if sig.fstype != "btrfs" || sig.label != Label {
		return fmt.Errorf("mount data disk %s: it %s, not btrfs labelled %s; choose the disk again", d.Path, Disk{FSType: sig.fstype, Label: sig.label}.describe(), Label)
	}
	if err := os.MkdirAll(mountpoint, 0o755); err != nil {
		return fmt.Errorf("mount data disk %s: %w", d.Path, err)
	}
	if src, ok := mountedAt(mountpoint); ok {
		if src == d.Path {
			return nil
		}
		return fmt.Errorf("mount data disk %s: %s is already mounted at %s; unmount it first", d.Path, src, mountpoint)
	}
	if err := unix.Mount(d.Path, mountpoint, "btrfs", unix.MS_NOATIME|unix.MS_NODEV|unix.MS_NOSUID, ""); err != nil {
		return fmt.Errorf("mount data disk %s at %s: %w", d.Path, mountpoint, err)
	}
	return nil
}

// mountedAt returns the source of the mount at dir, if dir is a mount point.
func mountedAt(dir string) (string, bool) {
	dir = filepath.Clean(dir)
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", false
	}
	defer f.Close()
	src, found := "", false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || unescapeMount(fields[4]) != dir {
			continue
		}
		for i, fl := range fields {
			if fl == "-" && i+2 < len(fields) {
				src, found = fields[i+2], true // the last mount on top wins
			}
		}
	}
	return src, found
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &v); err == nil {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// makeLayout makes state/ (private) and pools/0/ as btrfs subvolumes, so each can be
// snapshotted on its own.
func makeLayout(mountpoint string) error {
	if err := subvolume(filepath.Join(mountpoint, StateDir), 0o700); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(mountpoint, filepath.Dir(Pool0Dir)), 0o755); err != nil {
		return fmt.Errorf("make data disk layout: %w", err)
	}
	return subvolume(filepath.Join(mountpoint, Pool0Dir), 0o755)
}

// BTRFS_IOC_SUBVOL_CREATE = _IOW(0x94, 14, struct btrfs_ioctl_vol_args), 4096 bytes.
const btrfsIocSubvolCreate = 0x5000940e

type btrfsVolArgs struct {
	fd   int64
	name [4088]byte
}

// subvolume creates path as a btrfs subvolume unless something is there already.
func subvolume(path string, mode os.FileMode) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	parent, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("create subvolume %s: %w", path, err)
	}
	defer parent.Close()
	var args btrfsVolArgs
	copy(args.name[:len(args.name)-1], filepath.Base(path))
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, parent.Fd(), btrfsIocSubvolCreate, uintptr(unsafe.Pointer(&args))); errno != 0 {
		return fmt.Errorf("create subvolume %s: %w", path, errno)
	}
	if err := os.Chmod(path, mode); err != nil {
		return fmt.Errorf("create subvolume %s: %w", path, err)
	}
	return nil
}
