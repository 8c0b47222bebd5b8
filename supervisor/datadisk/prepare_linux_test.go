package datadisk

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cairn-os/cairn/internal/testutil"
	"github.com/cairn-os/cairn/supervisor/hostcmd"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

// newLoop makes a sparse backing file of size bytes, lets prepare write into it, and
// attaches it to a new loop device; it returns the device's name ("loop7").
func newLoop(t *testing.T, size int64, prepare func(img string)) string {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireProgram(t, "losetup")
	img := sparse(t, size)
	if prepare != nil {
		prepare(img)
	}
	dev := run(t, "losetup", "--find", "--show", img)
	t.Cleanup(func() { exec.Command("losetup", "--detach", dev).Run() })
	return filepath.Base(dev)
}

// mountpoint returns a fresh folder that is unmounted at the end of the test.
func mountpoint(t *testing.T) string {
	mp := filepath.Join(t.TempDir(), "cairn")
	t.Cleanup(func() {
		for unix.Unmount(mp, 0) == nil {
		}
	})
	return mp
}

func listOne(t *testing.T, name string) Disk {
	t.Helper()
	disks, err := List(context.Background(), name)
	if err != nil || len(disks) != 1 {
		t.Fatalf("List(%s) = %+v, %v", name, disks, err)
	}
	return disks[0]
}

func digest(t *testing.T, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// A blank disk becomes the data disk; after an unmount (as at a reboot) the same disk
// is found by its label and mounted again with its files.
func TestFormatBlankThenRemount(t *testing.T) {
	testutil.RequireProgram(t, "mkfs.btrfs")
	name := newLoop(t, 1<<30, nil)
	ctx, logger, r := context.Background(), testLogger(t), hostcmd.Exec{}

	d := listOne(t, name)
	if !d.Blank || d.FSType != "" || d.SizeBytes != 1<<30 || d.Mounted || d.Path != "/dev/"+name {
		t.Fatalf("blank loop listed as %+v", d)
	}
	chosen, action, err := Choose([]Disk{d})
	if err != nil || action != Format || chosen.Name != name {
		t.Fatalf("Choose = %v, %v, %v; want Format %s", chosen.Name, action, err, name)
	}
	mp := mountpoint(t)
	if err := Prepare(ctx, r, logger, chosen, action, mp); err != nil {
		t.Fatalf("Prepare(Format): %v", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(mp, &st); err != nil || st.Type != unix.BTRFS_SUPER_MAGIC {
		t.Fatalf("%s is not a btrfs mount: %v, type %#x", mp, err, st.Type)
	}
	for dir, mode := range map[string]os.FileMode{StateDir: 0o700, Pool0Dir: 0o755} {
		fi, err := os.Stat(filepath.Join(mp, dir))
		if err != nil || !fi.IsDir() || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v, %v; want a folder with mode %v", dir, fi, err, mode)
		}
		var ino unix.Stat_t
		unix.Stat(filepath.Join(mp, dir), &ino)
		if ino.Ino != 256 { // the root of a btrfs subvolume
			t.Errorf("%s is not a btrfs subvolume (inode %d)", dir, ino.Ino)
		}
	}
	if d := listOne(t, name); !d.Mounted {
		t.Errorf("a mounted data disk is not listed as mounted: %+v", d)
	}
	// Mounting again while mounted is fine (the supervisor may run the step twice).
	if err := Prepare(ctx, r, logger, chosen, Mount, mp); err != nil {
		t.Errorf("Prepare(Mount) on the mounted disk: %v", err)
	}
	keep := []byte("node n-525400000001\n")
	if err := os.WriteFile(filepath.Join(mp, StateDir, "cairn.db"), keep, 0o600); err != nil {
		t.Fatal(err)
	}

	// "Reboot": unmount, list and choose again, with a blank disk beside it.
	if err := unix.Unmount(mp, 0); err != nil {
		t.Fatal(err)
	}
	other := newLoop(t, 1<<30, nil)
	disks, err := List(ctx, other, name)
	if err != nil {
		t.Fatal(err)
	}
	chosen, action, err = Choose(disks)
	if err != nil || action != Mount || chosen.Name != name || chosen.Label != Label || chosen.FSType != "btrfs" {
		t.Fatalf("Choose after reboot = %+v, %v, %v; want Mount %s", chosen, action, err, name)
	}
	if err := Prepare(ctx, r, logger, chosen, action, mp); err != nil {
		t.Fatalf("Prepare(Mount): %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(mp, StateDir, "cairn.db")); err != nil || !bytes.Equal(got, keep) {
		t.Errorf("state after remount = %q, %v; want %q", got, err, keep)
	}
	if d := listOne(t, other); !d.Blank {
		t.Errorf("the other blank disk was touched: %+v", d)
	}
}

// A disk with data is passed over by Choose, and Prepare refuses to format it even
// when told to; its bytes stay as they were.
func TestNeverFormatsData(t *testing.T) {
	testutil.RequireProgram(t, "mkfs.btrfs")
	const size = 128 << 20 // small, so the before-and-after digest is quick
	random := make([]byte, 64<<10)
	rand.Read(random)
	cases := map[string]func(img string){
		"ext4":   func(img string) { run(t, "mkfs.ext4", "-q", "-L", "keep", img) },
		"random": func(img string) { writeAt(t, img, 300<<10, random) },
		"end":    func(img string) { writeAt(t, img, size-(64<<10), random) },
	}
	for what, prepare := range cases {
		t.Run(what, func(t *testing.T) {
			name := newLoop(t, size, prepare)
			d := listOne(t, name)
			if d.Blank {
				t.Fatalf("a disk with %s is listed as blank: %+v", what, d)
			}
			if _, action, err := Choose([]Disk{d}); action != None || err == nil || !strings.Contains(err.Error(), name) {
				t.Errorf("Choose = %v, %v; want None naming %s", action, err, name)
			}
			before := digest(t, d.Path)
			// Told to format it anyway, with the disk listed as blank (a stale list).
			d.Blank, d.FSType = true, ""
			err := Prepare(context.Background(), hostcmd.Exec{}, testLogger(t), d, Format, mountpoint(t))
			if err == nil || !strings.Contains(err.Error(), "refusing to format "+d.Path) || !strings.Contains(err.Error(), "wipefs") {
				t.Errorf("Prepare(Format) = %v; want a refusal that says what to do", err)
			}
			if digest(t, d.Path) != before {
				t.Errorf("the disk with %s was changed", what)
			}
		})
	}
}

// Data written after the disk was listed as blank still stops the format.
func TestFormatRechecksBlank(t *testing.T) {
	name := newLoop(t, 1<<30, nil)
	d := listOne(t, name)
	if !d.Blank {
		t.Fatalf("not blank: %+v", d)
	}
	run(t, "mkfs.ext4", "-q", "-L", "late", d.Path)
	err := Prepare(context.Background(), hostcmd.Exec{}, testLogger(t), d, Format, mountpoint(t))
	if err == nil || !strings.Contains(err.Error(), `holds ext4 labelled "late"`) {
		t.Fatalf("Prepare(Format) = %v; want a refusal naming the ext4", err)
	}
	if d := listOne(t, name); d.FSType != "ext4" || d.Label != "late" {
		t.Errorf("disk after the refusal: %+v", d)
	}
}

// Mount refuses a disk that is not (or no longer) the CAIRNDATA btrfs.
func TestMountChecksLabel(t *testing.T) {
	name := newLoop(t, 1<<30, func(img string) { run(t, "mkfs.btrfs", "-q", "-L", "photos", img) })
	d := listOne(t, name)
	err := Prepare(context.Background(), hostcmd.Exec{}, testLogger(t), d, Mount, mountpoint(t))
	if err == nil || !strings.Contains(err.Error(), "not btrfs labelled CAIRNDATA") {
		t.Errorf("Prepare(Mount) of a btrfs labelled photos = %v", err)
	}
}

// A blank disk that something holds exclusively (a mount, device-mapper) is refused.
func TestFormatRefusesDiskInUse(t *testing.T) {
	name := newLoop(t, 1<<30, nil)
	d := listOne(t, name)
	// Hold the device exclusively, as a mount or device-mapper would.
	f, err := os.OpenFile(d.Path, os.O_RDONLY|unix.O_EXCL, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = Prepare(context.Background(), hostcmd.Exec{}, testLogger(t), d, Format, mountpoint(t))
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("Prepare(Format) of a held disk = %v; want a refusal", err)
	}
}
