package pid1

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// SwitchRoot makes newRoot, a mount point, the root of the system and executes init
// there with argv (argv[0] included) and the current environment, as util-linux's
// switch_root does: it moves /dev, /proc, /sys and /run into newRoot, moves newRoot
// onto /, chroots into it and, when the old root is the initramfs, deletes the
// initramfs's files to give their memory back. It returns only on failure.
//
// u-root's mount.SwitchRoot does the same steps but deletes the old root whatever it
// is, and runs init without arguments; hence this version. newRoot must not lie below
// one of the moved mounts (/run/…): a mount cannot be moved into itself.
func SwitchRoot(newRoot, init string, argv []string) error {
	var rootSt, newSt unix.Stat_t
	if err := unix.Stat("/", &rootSt); err != nil {
		return fmt.Errorf("switch root: stat /: %w", err)
	}
	if err := unix.Stat(newRoot, &newSt); err != nil {
		return fmt.Errorf("switch root to %s: %w", newRoot, err)
	}
	if newSt.Dev == rootSt.Dev {
		return fmt.Errorf("switch root to %s: not a mount point", newRoot)
	}
	// Decide before anything moves: afterwards the old root has no name.
	wipe := isInitramfs()

	for _, dir := range []string{"/dev", "/proc", "/sys", "/run"} {
		var st unix.Stat_t
		if err := unix.Stat(dir, &st); err != nil || st.Dev == rootSt.Dev {
			continue // missing, or a plain directory of the old root
		}
		target := filepath.Join(newRoot, dir)
		if err := os.MkdirAll(target, 0o755); err != nil {
			return fmt.Errorf("switch root to %s: %w", newRoot, err)
		}
		if err := unix.Mount(dir, target, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("switch root to %s: move %s: %w", newRoot, dir, err)
		}
	}

	if err := unix.Chdir(newRoot); err != nil {
		return fmt.Errorf("switch root to %s: chdir: %w", newRoot, err)
	}
	// Hold the old root open: after the move and chroot this descriptor is the only
	// way to reach its files to delete them.
	oldRoot, err := unix.Open("/", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("switch root to %s: open old root: %w", newRoot, err)
	}
	defer unix.Close(oldRoot)
	if err := unix.Mount(newRoot, "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("switch root to %s: move onto /: %w", newRoot, err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("switch root to %s: chroot: %w", newRoot, err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("switch root to %s: chdir /: %w", newRoot, err)
	}
	if wipe {
		var st unix.Stat_t
		if err := unix.Fstat(oldRoot, &st); err == nil {
			removeContents(oldRoot, uint64(st.Dev))
		}
	}
	if err := unix.Exec(init, argv, os.Environ()); err != nil {
		return fmt.Errorf("switch root to %s: exec %s: %w", newRoot, init, err)
	}
	return nil
}

// isInitramfs reports whether / is the kernel's initramfs: a ramfs or tmpfs that the
// mount table calls "rootfs". Both checks, because deleting anything else (a disk
// mounted as /) would destroy it.
func isInitramfs() bool {
	var st unix.Statfs_t
	if err := unix.Statfs("/", &st); err != nil {
		return false
	}
	if st.Type != unix.RAMFS_MAGIC && st.Type != unix.TMPFS_MAGIC {
		return false
	}
	mounts, err := readMounts("/proc/thread-self/mountinfo")
	if err != nil {
		return false
	}
	for _, m := range mounts {
		if m.target == "/" {
			return m.fstype == "rootfs"
		}
	}
	return false
}

// removeContents deletes everything in the directory dirfd that lies on the device
// dev, and nothing on another filesystem (a mount point is left alone, with its
// contents). It carries on past failures: it only gives memory back.
func removeContents(dirfd int, dev uint64) {
	// Readdirnames needs an *os.File, which closes its descriptor: give it a copy.
	dup, err := unix.Dup(dirfd)
	if err != nil {
		return
	}
	dir := os.NewFile(uintptr(dup), "old root")
	names, _ := dir.Readdirnames(-1)
	dir.Close()
	for _, name := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			continue
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			_ = unix.Unlinkat(dirfd, name, 0)
			continue
		}
		if uint64(st.Dev) != dev {
			continue
		}
		sub, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		removeContents(sub, dev)
		unix.Close(sub)
		_ = unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
	}
}
