package pool

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cairn-os/cairn/supervisor/hostcmd"
)

// procMountinfo is read per thread: a caller in its own mount namespace (a test, a
// helper) sees its own mounts, which /proc/self, the thread group leader's view, may
// not show.
var procMountinfo = "/proc/thread-self/mountinfo"

// mountFlags are the flags of every pool mount: images need no device nodes, set-uid
// programs or access times.
const mountFlags = unix.MS_NOATIME | unix.MS_NODEV | unix.MS_NOSUID

// mountEntry is one line of mountinfo.
type mountEntry struct {
	devnum string // "8:17"; an anonymous number ("0:45") on btrfs
	root   string // the mounted folder of the file system ("/", "/pools/0")
	point  string
	fstype string
	source string // "/dev/sdb1"
}

func readMountinfo() ([]mountEntry, error) {
	f, err := os.Open(procMountinfo)
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	return parseMountinfo(f)
}

func parseMountinfo(r io.Reader) ([]mountEntry, error) {
	var mounts []mountEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i := 6; i < len(fields); i++ {
			if fields[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+2 >= len(fields) {
			continue
		}
		mounts = append(mounts, mountEntry{
			devnum: fields[2],
			root:   unescapeMount(fields[3]),
			point:  unescapeMount(fields[4]),
			fstype: fields[sep+1],
			source: unescapeMount(fields[sep+2]),
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	return mounts, nil
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountAt returns the topmost mount at dir, if dir is a mount point.
func mountAt(dir string) (mountEntry, bool, error) {
	mounts, err := readMountinfo()
	if err != nil {
		return mountEntry{}, false, err
	}
	var found mountEntry
	ok := false
	for _, m := range mounts {
		if m.point == dir {
			found, ok = m, true // later lines are mounted on top
		}
	}
	return found, ok, nil
}

// blockDev returns the device number of the block device at path.
func blockDev(path string) (uint64, bool) {
	var st unix.Stat_t
	if !filepath.IsAbs(path) || unix.Stat(path, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return 0, false
	}
	return st.Rdev, true
}

// sameDevice reports whether two paths are the same block device.
func sameDevice(a, b string) bool {
	da, ok := blockDev(a)
	db, ok2 := blockDev(b)
	return ok && ok2 && da == db
}

// mountDevice mounts the file system on dev at dir, unless it is mounted there
// already. Something else mounted at dir is ErrInUse.
func mountDevice(dev, dir, fstype string) error {
	m, ok, err := mountAt(dir)
	if err != nil {
		return fmt.Errorf("mount %s at %s: %w", dev, dir, err)
	}
	if ok {
		if sameDevice(m.source, dev) && m.root == "/" {
			return nil
		}
		return fmt.Errorf("mount %s at %s: %w: %s (%s) is mounted there; unmount it first", dev, dir, ErrInUse, m.source, m.fstype)
	}
	if err := unix.Mount(dev, dir, fstype, mountFlags, ""); err != nil {
		return fmt.Errorf("mount %s (%s) at %s: %w", dev, fstype, dir, err)
	}
	return nil
}

// unmount unmounts dir if it is a mount point.
func unmount(dir string) error {
	_, ok, err := mountAt(dir)
	if err != nil || !ok {
		return err
	}
	if err := unix.Unmount(dir, 0); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("unmount pool at %s: %w: files in it are open (running servers, an NFS export, a shell in it); stop them and try again", dir, ErrInUse)
		}
		return fmt.Errorf("unmount pool at %s: %w", dir, err)
	}
	return nil
}

// statUsage returns the space of the file system that holds dir.
func statUsage(dir string) (Usage, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return Usage{}, fmt.Errorf("usage of pool %s: %w", dir, err)
	}
	bs := uint64(st.Bsize)
	return Usage{
		TotalBytes: st.Blocks * bs,
		UsedBytes:  (st.Blocks - st.Bfree) * bs,
		FreeBytes:  st.Bavail * bs,
	}, nil
}

// fsMagic returns the statfs type of the file system that holds path.
func fsMagic(path string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, err
	}
	return st.Type, nil
}

// prepareMountpoint makes sure dir can be a pool's mount point before anything is
// formatted: a missing dir is made (its parent must exist), an existing one must be an
// empty folder with nothing mounted on it. created says whether it was made.
func prepareMountpoint(dir string) (created bool, err error) {
	fi, err := os.Lstat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		parent := filepath.Dir(dir)
		if pfi, err := os.Stat(parent); err != nil || !pfi.IsDir() {
			return false, fmt.Errorf("pool path %s: %w: its parent %s is not an existing folder; make it first", dir, ErrInvalid, parent)
		}
		if err := os.Mkdir(dir, 0o755); err != nil {
			return false, fmt.Errorf("make pool folder %s: %w", dir, err)
		}
		return true, nil
	case err != nil:
		return false, fmt.Errorf("pool path %s: %w", dir, err)
	case !fi.IsDir():
		return false, fmt.Errorf("pool path %s: %w: it is a file, not a folder; choose another path or remove it", dir, ErrInvalid)
	}
	if _, ok, err := mountAt(dir); err != nil {
		return false, err
	} else if ok {
		return false, fmt.Errorf("pool path %s: %w: something is mounted there; unmount it or choose another path", dir, ErrInUse)
	}
	empty, err := isEmptyDir(dir)
	if err != nil {
		return false, fmt.Errorf("pool path %s: %w", dir, err)
	}
	if !empty {
		return false, fmt.Errorf("pool path %s: %w: the folder is not empty, and mounting the new pool would hide its files; choose another path or empty it", dir, ErrInvalid)
	}
	return false, nil
}

func isEmptyDir(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	return len(names) == 0, err
}

// newUUID returns a random (version 4) UUID for a new file system, so that Create
// knows it without reading it back.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// fsLabel is the label of a pool's new file system: "cairn-pool-3" for a pool at
// .../pools/3, cut to max bytes (ext4 labels hold 16). It is never datadisk.Label,
// which would make the disk look like the admin's data disk.
func fsLabel(path string, max int) string {
	l := "cairn-pool-" + filepath.Base(path)
	if len(l) > max {
		l = l[:max]
	}
	return l
}

// probe is what blkid's low-level probe says a device holds.
type probe struct {
	fstype, uuid, label string
}

func blkidProbe(ctx context.Context, r hostcmd.Runner, dev string) (probe, error) {
	// -c /dev/null: no cache, which may be stale after a format; -p: read the device.
	out, err := r.Run(ctx, "blkid", "-c", "/dev/null", "-p", "-o", "export", dev)
	if err != nil && len(strings.TrimSpace(string(out))) == 0 {
		// blkid exits 2 when it finds nothing.
		if _, statErr := os.Stat(dev); statErr != nil {
			return probe{}, fmt.Errorf("probe %s: %w", dev, statErr)
		}
		return probe{}, nil
	}
	if err != nil {
		return probe{}, fmt.Errorf("probe %s: %w", dev, err)
	}
	var p probe
	for _, line := range strings.Split(string(out), "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
		switch k {
		case "TYPE":
			p.fstype = v
		case "UUID":
			p.uuid = v
		case "LABEL":
			p.label = v
		}
	}
	return p, nil
}

// findDevice finds the block device of a pool: by the file system's UUID when the
// spec has one (device names can change between boots), else s.Device. It checks that
// the device holds a file system of type fstype.
func findDevice(ctx context.Context, r hostcmd.Runner, s Spec, fstype string) (string, error) {
	dev := s.Device
	if s.UUID != "" {
		out, err := r.Run(ctx, "blkid", "-c", "/dev/null", "-t", "UUID="+s.UUID, "-o", "device")
		devs := strings.Fields(string(out))
		if len(devs) == 0 {
			why := ""
			if err != nil && !strings.Contains(err.Error(), "exit status 2") {
				why = " (" + err.Error() + ")"
			}
			return "", fmt.Errorf("find the disk of pool %s: %w: no device holds the file system with UUID %s%s; attach the pool's disk", s.Path, ErrNotFound, s.UUID, why)
		}
		dev = devs[0]
		if len(devs) > 1 && fstype != "btrfs" { // the members of one btrfs share its UUID
			return "", fmt.Errorf("find the disk of pool %s: %w: %s all hold a file system with UUID %s; detach the copies", s.Path, ErrInUse, strings.Join(devs, ", "), s.UUID)
		}
	}
	if dev == "" {
		return "", fmt.Errorf("open pool %s: %w: the spec names neither a device nor a UUID", s.Path, ErrInvalid)
	}
	p, err := blkidProbe(ctx, r, dev)
	if err != nil {
		return "", fmt.Errorf("open pool %s: %w", s.Path, err)
	}
	if p.fstype != fstype || (s.UUID != "" && p.uuid != s.UUID) {
		what := p.fstype
		if what == "" {
			what = "no file system"
		}
		return "", fmt.Errorf("open pool %s: %w: %s holds %s (UUID %q), not the pool's %s file system; attach the pool's disk", s.Path, ErrInvalid, dev, what, p.uuid, fstype)
	}
	return dev, nil
}
