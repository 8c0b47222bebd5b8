package pool

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairn-os/cairn/internal/testutil"
	"github.com/cairn-os/cairn/supervisor/datadisk"
	"github.com/cairn-os/cairn/supervisor/stage1"
)

// A blank, unused disk passes; so the refusals below are not refusals of everything.
func TestCheckDeviceBlank(t *testing.T) {
	dev := blankLoop(t, 64<<20)
	if err := CheckDevice(context.Background(), dev); err != nil {
		t.Errorf("CheckDevice(blank %s) = %v", dev, err)
	}
}

func TestCheckDeviceNotABlockDevice(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "disk.img")
	writeFile(t, file, "x")
	wantErr(t, "a file", CheckDevice(ctx, file), ErrInvalid, "not a block device")
	wantErr(t, "a folder", CheckDevice(ctx, t.TempDir()), ErrInvalid, "not a block device")
	wantErr(t, "/dev/null", CheckDevice(ctx, "/dev/null"), ErrInvalid, "not a block device")
	wantErr(t, "a missing path", CheckDevice(ctx, "/dev/"+testutil.Name("cairn-none-")), ErrInvalid, "no such device")
	wantErr(t, "a relative path", CheckDevice(ctx, "sdb"), ErrInvalid, "absolute")
}

func TestCheckDeviceMounted(t *testing.T) {
	testutil.RequireProgram(t, "mkfs.ext4")
	dev := blankLoop(t, 64<<20)
	run(t, "mkfs.ext4", "-q", dev)
	mnt := t.TempDir()
	unmountAtEnd(t, mnt)
	if err := unix.Mount(dev, mnt, "ext4", 0, ""); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "a mounted device", CheckDevice(context.Background(), dev), ErrInUse, filepath.Base(dev)+" is mounted at "+mnt, "unmount")
}

// A btrfs mount shows an anonymous device number in mountinfo; the source counts.
func TestCheckDeviceMountedBtrfs(t *testing.T) {
	testutil.RequireProgram(t, "mkfs.btrfs")
	dev := blankLoop(t, 256<<20)
	run(t, "mkfs.btrfs", "-q", dev)
	mnt := t.TempDir()
	unmountAtEnd(t, mnt)
	if err := unix.Mount(dev, mnt, "btrfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "a mounted btrfs", CheckDevice(context.Background(), dev), ErrInUse, "is mounted at "+mnt)
}

// writeMBR writes a DOS partition table with one Linux partition from 1 MiB to the
// end of the image.
func writeMBR(t *testing.T, img string, size int64) {
	t.Helper()
	mbr := make([]byte, 512)
	e := mbr[446:]
	e[4] = 0x83 // Linux
	binary.LittleEndian.PutUint32(e[8:], 2048)
	binary.LittleEndian.PutUint32(e[12:], uint32(size/512-2048))
	mbr[510], mbr[511] = 0x55, 0xaa
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(mbr, 0); err != nil {
		t.Fatal(err)
	}
}

// waitFor waits until the kernel has made the device node path.
func waitFor(t *testing.T, path string) {
	t.Helper()
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(path); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not appear", path)
}

// A disk whose partition is mounted is refused, naming the partition.
func TestCheckDeviceMountedPartition(t *testing.T) {
	testutil.RequireProgram(t, "mkfs.ext4")
	testutil.RequireRoot(t)
	const size = 64 << 20
	img := sparse(t, size)
	writeMBR(t, img, size)
	dev := newLoop(t, img, "--partscan")
	part := dev + "p1"
	if _, err := os.Stat(part); err != nil {
		// A kernel without the DOS partition parser (CONFIG_MSDOS_PARTITION) finds
		// no partitions itself; partx reads the table and adds them (BLKPG).
		testutil.RequireProgram(t, "partx")
		run(t, "partx", "--add", dev)
	}
	waitFor(t, part)
	run(t, "mkfs.ext4", "-q", part)
	mnt := t.TempDir()
	unmountAtEnd(t, mnt)
	if err := unix.Mount(part, mnt, "ext4", 0, ""); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "a disk with a mounted partition", CheckDevice(context.Background(), dev), ErrInUse, filepath.Base(part)+" is mounted at "+mnt)
	wantErr(t, "the mounted partition", CheckDevice(context.Background(), part), ErrInUse, "is mounted at "+mnt)
}

func TestCheckDeviceSwap(t *testing.T) {
	testutil.RequireProgram(t, "mkswap")
	testutil.RequireProgram(t, "swapon")
	dev := blankLoop(t, 64<<20)
	run(t, "mkswap", dev)
	if out, err := exec.Command("swapon", dev).CombinedOutput(); err != nil {
		t.Skipf("swapon %s: %v: %s (this kernel or container does not allow swap)", dev, err, out)
	}
	t.Cleanup(func() { exec.Command("swapoff", dev).Run() })
	wantErr(t, "a swap device", CheckDevice(context.Background(), dev), ErrInUse, "swap", "swapoff")
}

// A device that backs a loop device is refused.
func TestCheckDeviceLoopBacking(t *testing.T) {
	dev := blankLoop(t, 64<<20)
	upper := newLoop(t, dev)
	wantErr(t, "a loop's backing device", CheckDevice(context.Background(), dev), ErrInUse,
		"backing device of "+filepath.Base(upper), "losetup -d")
}

// A device held by device-mapper (LVM) is refused. This kernel may have no
// device-mapper, so the holder is put in a copy of the device's sysfs folder.
func TestCheckDeviceHolders(t *testing.T) {
	dev := blankLoop(t, 64<<20)
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		t.Fatal(err)
	}
	fake := t.TempDir()
	sys := filepath.Join(fake, "devices", filepath.Base(dev))
	writeFile(t, filepath.Join(sys, "ro"), "0\n")
	writeFile(t, filepath.Join(sys, "size"), "131072\n")
	writeFile(t, filepath.Join(sys, "holders", "dm-3", "dm", "name"), "vg0-images\n")
	if err := os.Symlink(sys, filepath.Join(fake, fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev)))); err != nil {
		t.Fatal(err)
	}
	old := sysDevBlock
	sysDevBlock = fake
	t.Cleanup(func() { sysDevBlock = old })
	wantErr(t, "a held device", CheckDevice(context.Background(), dev), ErrInUse, "held by dm-3 (vg0-images)")
}

// Cairn's own disks are refused even when they are not mounted.
func TestCheckDeviceCairnDisks(t *testing.T) {
	testutil.RequireProgram(t, "mkfs.btrfs")
	ctx := context.Background()
	data := blankLoop(t, 256<<20)
	run(t, "mkfs.btrfs", "-q", "-L", datadisk.Label, data)
	wantErr(t, "a data disk", CheckDevice(ctx, data), ErrInUse, "Cairn data disk")

	testutil.RequireProgram(t, "xorriso")
	iso := filepath.Join(t.TempDir(), "cairn.iso")
	run(t, "xorriso", "-as", "mkisofs", "-quiet", "-V", stage1.VolumeID, "-o", iso, t.TempDir())
	medium := newLoop(t, iso)
	wantErr(t, "a boot medium", CheckDevice(ctx, medium), ErrInUse, "Cairn boot medium")
}

// Whatever else holds a device exclusively, the kernel's word is final.
func TestCheckDeviceHeldExclusively(t *testing.T) {
	dev := blankLoop(t, 64<<20)
	f, err := os.OpenFile(dev, os.O_RDONLY|unix.O_EXCL, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	wantErr(t, "a device held open exclusively", CheckDevice(context.Background(), dev), ErrInUse, "exclusively")
}
