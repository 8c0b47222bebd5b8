package pid1

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// earlyMount is one filesystem MountEarly makes sure of.
type earlyMount struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
	optional               bool // a kernel without it still boots; its failure is not reported
}

// earlyMounts are in dependency order: each target lies on a filesystem mounted
// before it (/dev/pts on /dev, /sys/fs/cgroup on /sys).
var earlyMounts = []earlyMount{
	{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "", false},
	{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "", false},
	{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755", false},
	{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "mode=0620,ptmxmode=0666", false},
	{"tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777", false},
	{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755", false},
	{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777", false},
	{"cgroup2", "/sys/fs/cgroup", "cgroup2", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "", false},
	{"securityfs", "/sys/kernel/security", "securityfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "", true},
}

// MountEarly mounts the kernel's filesystems PID 1 needs: /proc, /sys, /dev (devtmpfs),
// /dev/pts, /dev/shm, /run and /tmp (tmpfs), /sys/fs/cgroup (cgroup2) and
// /sys/kernel/security, and adds the /dev/fd and /dev/std* links devtmpfs lacks. What
// is already mounted is left alone: after switch_root, /proc, /sys, /dev and /run
// arrive mounted. It carries on past a failure and returns all of them.
func MountEarly() error { return mountEarly("/") }

// mountEarly mounts below root, so that a test can run it in a mount namespace.
func mountEarly(root string) error {
	var errs []error
	for _, m := range earlyMounts {
		target := filepath.Join(root, m.target)
		// The mount table is read anew each time: /proc itself is the first mount.
		if isMounted(root, target, m.fstype) {
			continue
		}
		if err := os.MkdirAll(target, 0o755); err != nil {
			if !m.optional {
				errs = append(errs, fmt.Errorf("mkdir %s: %w", target, err))
			}
			continue
		}
		if err := unix.Mount(m.source, target, m.fstype, m.flags, m.data); err != nil && !m.optional {
			errs = append(errs, fmt.Errorf("mount %s on %s: %w", m.fstype, target, err))
		}
	}
	// Shells and programs use /dev/fd/N and /dev/stdin; udev would make these links.
	for name, to := range map[string]string{
		"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2",
	} {
		if err := os.Symlink(to, filepath.Join(root, "dev", name)); err != nil && !errors.Is(err, os.ErrExist) {
			errs = append(errs, fmt.Errorf("link /dev/%s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// isMounted reports whether something is mounted on target; fstype tells /proc apart.
func isMounted(root, target, fstype string) bool {
	if fstype == "proc" {
		// Before /proc is mounted there is no mount table to read.
		var st unix.Statfs_t
		return unix.Statfs(target, &st) == nil && st.Type == unix.PROC_SUPER_MAGIC
	}
	mounts, err := readMounts(filepath.Join(root, "proc/thread-self/mountinfo"))
	if err != nil {
		return false
	}
	for _, m := range mounts {
		if m.target == target {
			return true
		}
	}
	return false
}

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	target, fstype, source string
}

// readMounts reads a mountinfo file. It reads the calling thread's table
// (thread-self): a test's mount namespace belongs to one locked thread.
func readMounts(path string) ([]mountEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseMountinfo(f)
}

// parseMountinfo parses mountinfo lines: "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 -
// ext3 /dev/root rw,errors=continue". The optional fields end at "-".
func parseMountinfo(r io.Reader) ([]mountEntry, error) {
	var out []mountEntry
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if len(f) < 5 || sep < 0 || sep+2 >= len(f) {
			continue
		}
		out = append(out, mountEntry{target: unescapeOctal(f[4]), fstype: f[sep+1], source: unescapeOctal(f[sep+2])})
	}
	return out, sc.Err()
}

// unescapeOctal undoes mountinfo's escapes of space, tab, newline and backslash
// ("\040").
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountAll unmounts every filesystem at or below under, children before parents.
// Each is first unmounted normally, so that it is clean; one still busy is detached
// (lazy), which after a sync loses nothing. NFS mounts are forced and detached at
// once: with the server gone, a normal unmount can hang forever. A failure on "/"
// itself is answered by remounting it read-only. It returns what could not be done.
func unmountAll(under string) []error {
	mounts, err := readMounts("/proc/thread-self/mountinfo")
	if err != nil {
		return []error{fmt.Errorf("read mount table: %w", err)}
	}
	var errs []error
	// mountinfo lists a mount after the one it sits on, so reverse order is
	// children first.
	for i := len(mounts) - 1; i >= 0; i-- {
		m := mounts[i]
		if !within(m.target, under) {
			continue
		}
		if m.target == "/" {
			if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
				errs = append(errs, fmt.Errorf("remount / read-only: %w", err))
			}
			continue
		}
		if strings.HasPrefix(m.fstype, "nfs") {
			if err := unix.Unmount(m.target, unix.MNT_FORCE|unix.MNT_DETACH); err != nil {
				errs = append(errs, fmt.Errorf("unmount %s: %w", m.target, err))
			}
			continue
		}
		err := unix.Unmount(m.target, 0)
		if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			// EINVAL/ENOENT: already gone with its parent, or a mount repeated in the table.
			continue
		}
		if err := unix.Unmount(m.target, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m.target, err))
		}
	}
	return errs
}

// within reports whether path is dir or below it.
func within(path, dir string) bool {
	if dir == "/" {
		return true
	}
	return path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")
}
