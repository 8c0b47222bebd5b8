package datadisk

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Where block devices are listed and their nodes live; variables for tests only.
var (
	sysBlock = "/sys/class/block"
	devDir   = "/dev"
)

// List returns the whole disks in /sys/class/block in natural name order (sda, sdb, …,
// sdaa), with what each holds. Partitions, and loop, RAM, CD, floppy, NBD, device-mapper
// and RAID devices are left out; empty drives (size 0) too. With names ("vdb",
// "loop7") it lists only those, whatever their kind; tests use that to see only their
// own loop devices. A disk that cannot be read is listed as holding "unknown data", so
// it is never formatted.
func List(ctx context.Context, names ...string) ([]Disk, error) {
	named := len(names) > 0
	if !named {
		entries, err := os.ReadDir(sysBlock)
		if err != nil {
			return nil, fmt.Errorf("list block devices in %s: %w", sysBlock, err)
		}
		for _, e := range entries {
			if !skipDevice(e.Name()) {
				names = append(names, e.Name())
			}
		}
		slices.SortFunc(names, naturalCompare)
	}
	use := readUse()
	var disks []Disk
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		sys := filepath.Join(sysBlock, name)
		if _, err := os.Stat(sys); err != nil {
			return nil, fmt.Errorf("list disk %s: no such block device in %s", name, sysBlock)
		}
		if !named && exists(filepath.Join(sys, "partition")) {
			continue
		}
		d := Disk{
			Name:      name,
			Path:      filepath.Join(devDir, name),
			SizeBytes: readUint(filepath.Join(sys, "size")) * 512,
			Model:     readString(filepath.Join(sys, "device", "model")),
			Removable: readString(filepath.Join(sys, "removable")) == "1",
			ReadOnly:  readString(filepath.Join(sys, "ro")) == "1",
		}
		if d.SizeBytes == 0 && !named {
			continue
		}
		d.Mounted = use.inUse(sys, name)
		inspect(&d)
		disks = append(disks, d)
	}
	return disks, nil
}

// inspect fills in what the disk holds.
func inspect(d *Disk) {
	f, err := os.OpenFile(d.Path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		d.FSType, d.Blank = "unknown data", false
		return
	}
	defer f.Close()
	size := int64(d.SizeBytes)
	if end, err := f.Seek(0, 2); err == nil && end > 0 {
		size = end
	}
	sig, blank, err := sniff(f, size)
	if err != nil {
		d.FSType, d.Blank = "unknown data", false
		return
	}
	d.FSType, d.Label, d.UUID, d.Blank = sig.fstype, sig.label, sig.uuid, blank
}

func skipDevice(name string) bool {
	for _, p := range []string{"loop", "ram", "zram", "sr", "fd", "nbd", "dm-", "md", "mtdblock"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// use is what the kernel says is in use: mounted sources and their device numbers,
// and swap devices.
type use struct {
	devnums map[string]bool // "8:16"
	sources map[string]bool // "/dev/sdb1"
}

func readUse() use {
	u := use{devnums: map[string]bool{}, sources: map[string]bool{}}
	if f, err := os.Open("/proc/self/mountinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 3 {
				continue
			}
			u.devnums[fields[2]] = true
			// btrfs reports an anonymous device number; its source names the device.
			if i := slices.Index(fields, "-"); i >= 0 && i+2 < len(fields) {
				u.sources[fields[i+2]] = true
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/swaps"); err == nil {
		for _, line := range strings.Split(string(b), "\n")[1:] {
			if fields := strings.Fields(line); len(fields) > 0 {
				u.sources[fields[0]] = true
			}
		}
	}
	return u
}

// inUse checks the disk and each of its partitions.
func (u use) inUse(sys, name string) bool {
	parts := []string{name}
	if entries, err := os.ReadDir(sys); err == nil {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), name) && exists(filepath.Join(sys, e.Name(), "partition")) {
				parts = append(parts, e.Name())
			}
		}
	}
	for _, p := range parts {
		dir := sys
		if p != name {
			dir = filepath.Join(sys, p)
		}
		if u.devnums[readString(filepath.Join(dir, "dev"))] || u.sources[filepath.Join(devDir, p)] {
			return true
		}
		if holders, err := os.ReadDir(filepath.Join(dir, "holders")); err == nil && len(holders) > 0 {
			return true
		}
	}
	return false
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func readString(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func readUint(path string) uint64 {
	n, _ := strconv.ParseUint(readString(path), 10, 64)
	return n
}

// naturalCompare orders kernel disk names the way the kernel numbers them: runs of
// digits by value (nvme0n2 before nvme0n10) and runs of letters by length, then
// alphabetically (sdz before sdaa).
func naturalCompare(a, b string) int {
	for a != "" && b != "" {
		ra, rb := leadingRun(a), leadingRun(b)
		if c := len(ra) - len(rb); c != 0 && isDigit(ra[0]) == isDigit(rb[0]) {
			return c
		}
		if c := strings.Compare(ra, rb); c != 0 {
			return c
		}
		a, b = a[len(ra):], b[len(rb):]
	}
	return len(a) - len(b)
}

// leadingRun returns the leading run of digits, or of non-digits, of s.
func leadingRun(s string) string {
	i := 1
	for i < len(s) && isDigit(s[i]) == isDigit(s[0]) {
		i++
	}
	return s[:i]
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
