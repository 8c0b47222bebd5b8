package pool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cairn-os/cairn/supervisor/datadisk"
	"github.com/cairn-os/cairn/supervisor/stage1"
)

// Where the kernel describes block devices and swap; variables for tests only.
var (
	sysDevBlock   = "/sys/dev/block"
	sysClassBlock = "/sys/class/block"
	procSwaps     = "/proc/swaps"
)

// blockMember is a device or one of its partitions.
type blockMember struct {
	name string // "sdb1"
	sys  string // its folder in sysfs
	dev  uint64 // device number
}

// CheckDevice says whether device may be formatted as a pool. It refuses, with a
// message that says why and what to do: a path that is not a block device, an empty
// or read-only one (ErrInvalid); a device that is mounted or has a mounted partition,
// is used as swap, is held by another block device (LVM, device-mapper, RAID), backs a
// loop device, is Cairn's data disk (btrfs labelled CAIRNDATA) or boot medium (ISO
// 9660 volume CAIRN), or that the kernel holds open exclusively (ErrInUse).
func CheckDevice(ctx context.Context, device string) error {
	refuse := func(sentinel error, format string, a ...any) error {
		return fmt.Errorf("check device %s: %w: %s", device, sentinel, fmt.Sprintf(format, a...))
	}
	if !filepath.IsAbs(device) {
		return refuse(ErrInvalid, "give the device's absolute path, such as /dev/sdb")
	}
	var st unix.Stat_t
	if err := unix.Stat(device, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return refuse(ErrInvalid, "there is no such device; check the name (the disks are listed on the storage page)")
		}
		return fmt.Errorf("check device %s: %w", device, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return refuse(ErrInvalid, "it is not a block device; give a disk such as /dev/sdb, or make a dir pool on an existing folder")
	}
	devnum := fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	sys, err := filepath.EvalSymlinks(filepath.Join(sysDevBlock, devnum))
	if err != nil {
		return fmt.Errorf("check device %s: the kernel does not describe block device %s in %s: %w", device, devnum, sysDevBlock, err)
	}
	name := filepath.Base(sys)
	if readSys(sys, "ro") == "1" {
		return refuse(ErrInvalid, "%s is read-only; make it writable (a write-protect switch, or the VM's disk settings)", name)
	}
	if readSys(sys, "size") == "0" {
		return refuse(ErrInvalid, "%s is empty (no medium, or a loop device with no file attached)", name)
	}

	members := []blockMember{{name: name, sys: sys, dev: st.Rdev}}
	if entries, err := os.ReadDir(sys); err == nil {
		for _, e := range entries {
			psys := filepath.Join(sys, e.Name())
			if _, err := os.Stat(filepath.Join(psys, "partition")); err != nil {
				continue
			}
			if dev, ok := parseDevnum(readSys(psys, "dev")); ok {
				members = append(members, blockMember{name: e.Name(), sys: psys, dev: dev})
			}
		}
	}

	mounts, err := readMountinfo()
	if err != nil {
		return fmt.Errorf("check device %s: %w", device, err)
	}
	swaps := readSwaps()
	loops := loopBackings()
	for _, m := range members {
		for _, mt := range mounts {
			if d, ok := parseDevnum(mt.devnum); (ok && d == m.dev) || sourceIs(mt.source, m.dev) {
				return refuse(ErrInUse, "%s is mounted at %s; unmount it first, or choose another disk", m.name, mt.point)
			}
		}
		for _, sw := range swaps {
			if sourceIs(sw, m.dev) {
				return refuse(ErrInUse, "%s is used as swap; turn it off first (swapoff %s), or choose another disk", m.name, sw)
			}
		}
		if holders, _ := os.ReadDir(filepath.Join(m.sys, "holders")); len(holders) > 0 {
			var hs []string
			for _, h := range holders {
				desc := h.Name()
				if dm := readSys(filepath.Join(m.sys, "holders", h.Name()), "dm/name"); dm != "" {
					desc += " (" + dm + ")"
				}
				hs = append(hs, desc)
			}
			return refuse(ErrInUse, "%s is held by %s, a volume group, RAID array or encrypted volume; remove that first, or choose another disk", m.name, strings.Join(hs, ", "))
		}
		for loop, backing := range loops {
			if sourceIs(backing, m.dev) {
				return refuse(ErrInUse, "%s is the backing device of %s; detach it first (losetup -d /dev/%s), or choose another disk", m.name, loop, loop)
			}
		}
	}

	// Cairn's own disks, which are not always mounted: the data disk of an engine
	// that runs from another disk, the boot stick. A partition of the boot medium is
	// refused too.
	names := make([]string, 0, len(members)+1)
	for _, m := range members {
		names = append(names, m.name)
	}
	if _, err := os.Stat(filepath.Join(sys, "partition")); err == nil {
		names = append(names, filepath.Base(filepath.Dir(sys)))
	}
	disks, err := datadisk.List(ctx, names...)
	if err != nil {
		return fmt.Errorf("check device %s: %w", device, err)
	}
	for _, d := range disks {
		switch {
		case d.IsDataDisk():
			return refuse(ErrInUse, "%s is a Cairn data disk (btrfs labelled %s), which holds an engine's state and pool 0; choose another disk", d.Name, datadisk.Label)
		case d.FSType == "iso9660" && d.Label == stage1.VolumeID:
			return refuse(ErrInUse, "%s is a Cairn boot medium (ISO 9660 volume %s); choose another disk", d.Name, stage1.VolumeID)
		}
	}

	// The last word is the kernel's: O_EXCL fails while anything claims the device
	// or one of its partitions (a mount, a RAID or LVM member, a second device of a
	// multi-device btrfs).
	f, err := os.OpenFile(device, os.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EBUSY) {
		return refuse(ErrInUse, "the kernel holds %s open exclusively (a mount, a RAID or LVM member, a device of a btrfs file system); release it first, or choose another disk", name)
	}
	if err != nil {
		return fmt.Errorf("check device %s: %w", device, err)
	}
	f.Close()
	return nil
}

func readSys(dir, file string) string {
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// parseDevnum parses "8:17".
func parseDevnum(s string) (uint64, bool) {
	maj, min, ok := strings.Cut(s, ":")
	if !ok {
		return 0, false
	}
	a, err1 := strconv.ParseUint(maj, 10, 32)
	b, err2 := strconv.ParseUint(min, 10, 32)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return unix.Mkdev(uint32(a), uint32(b)), true
}

// sourceIs reports whether path is the block device dev: btrfs mounts show an
// anonymous device number in mountinfo, so their source must be compared.
func sourceIs(path string, dev uint64) bool {
	d, ok := blockDev(path)
	return ok && d == dev
}

// readSwaps returns the swap areas' paths.
func readSwaps() []string {
	b, err := os.ReadFile(procSwaps)
	if err != nil {
		return nil
	}
	var swaps []string
	lines := strings.Split(string(b), "\n")
	for _, line := range lines[min(1, len(lines)):] {
		if f := strings.Fields(line); len(f) > 0 {
			swaps = append(swaps, unescapeMount(f[0]))
		}
	}
	return swaps
}

// loopBackings maps each attached loop device's name to its backing file.
func loopBackings() map[string]string {
	loops := map[string]string{}
	paths, _ := filepath.Glob(filepath.Join(sysClassBlock, "loop*", "loop", "backing_file"))
	for _, p := range paths {
		if b := readSys(filepath.Dir(p), "backing_file"); b != "" {
			loops[filepath.Base(filepath.Dir(filepath.Dir(p)))] = b
		}
	}
	return loops
}
