package pool

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cairn-os/cairn/internal/testutil"
	"github.com/cairn-os/cairn/supervisor/hostcmd"
)

// A dir pool on an existing folder: nothing is mounted or formatted, the folder
// stays after Close, and the pool cannot snapshot.
func TestDirOnExistingFolder(t *testing.T) {
	ctx := context.Background()
	d := lookup(t, "dir", hostcmd.Exec{})
	if d.Info().Snapshots || d.Info().Reflink || !d.Info().Devices {
		t.Errorf("dir Info = %+v", d.Info())
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "images", "old.qcow2"), "already there")
	spec, err := d.Create(ctx, Spec{Driver: "dir", Path: dir})
	if err != nil || spec.Path != dir || spec.UUID != "" {
		t.Fatalf("Create = %+v, %v", spec, err)
	}
	p, err := d.Open(ctx, spec)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if _, ok := p.(Snapshotter); ok {
		t.Error("a dir pool claims to snapshot")
	}
	u, err := p.Usage(ctx)
	if err != nil || u.TotalBytes == 0 || u.UsedBytes+u.FreeBytes > u.TotalBytes {
		t.Errorf("Usage = %+v, %v", u, err)
	}
	if err := d.Close(ctx, spec); err != nil {
		t.Errorf("Close: %v", err)
	}
	if got := readFile(t, filepath.Join(dir, "images", "old.qcow2")); got != "already there" {
		t.Errorf("the folder's file after Close = %q", got)
	}

	// A missing folder is made when its parent exists, and only then.
	made := filepath.Join(dir, "new")
	if _, err := d.Create(ctx, Spec{Driver: "dir", Path: made}); err != nil {
		t.Errorf("Create of a new folder: %v", err)
	}
	if fi, err := os.Stat(made); err != nil || !fi.IsDir() {
		t.Errorf("Create did not make %s: %v", made, err)
	}
	orphan := filepath.Join(dir, "no", "parent")
	_, err = d.Create(ctx, Spec{Driver: "dir", Path: orphan})
	wantErr(t, "Create without a parent", err, ErrInvalid, "parent")
	if _, err := os.Stat(filepath.Dir(orphan)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Create made the parent %s: %v", filepath.Dir(orphan), err)
	}
	_, err = d.Create(ctx, Spec{Driver: "dir", Path: filepath.Join(dir, "images", "old.qcow2")})
	wantErr(t, "Create on a file", err, ErrInvalid, "is a file")
	_, err = d.Create(ctx, Spec{Driver: "dir", Path: "relative/path"})
	wantErr(t, "Create with a relative path", err, ErrInvalid, "absolute")
	_, err = d.Open(ctx, Spec{Driver: "dir", Path: filepath.Join(dir, "gone")})
	wantErr(t, "Open of a missing folder", err, ErrNotFound, "missing")
}

// A dir pool on a device is an ext4 file system mounted at the pool's path.
func TestDirOnDevice(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireProgram(t, "mkfs.ext4")
	testutil.RequireProgram(t, "blkid")
	ctx := context.Background()
	d := lookup(t, "dir", hostcmd.Exec{})
	dev := blankLoop(t, 256<<20)
	path := poolPath(t, "20")

	spec, err := d.Create(ctx, Spec{Driver: "dir", Path: path, Device: dev})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if spec.UUID == "" || isMounted(t, path) {
		t.Fatalf("Create = %+v, mounted %v; want a UUID and nothing mounted", spec, isMounted(t, path))
	}
	if got := fsTypeOf(t, dev); got != "ext4" {
		t.Fatalf("the device holds %q; want ext4", got)
	}
	p, err := d.Open(ctx, spec)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { d.Close(ctx, spec) })
	if magic, _ := fsMagic(path); magic != unix.EXT4_SUPER_MAGIC {
		t.Fatalf("%s is not the ext4 mount (magic %#x)", path, magic)
	}
	before, err := p.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if before.TotalBytes < 200<<20 || before.TotalBytes > 256<<20 {
		t.Errorf("Usage of a 256 MiB pool = %+v", before)
	}
	writeRandom(t, filepath.Join(path, "images", "big.raw"), 10<<20)
	after, err := p.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.UsedBytes < before.UsedBytes+9<<20 || after.FreeBytes > before.FreeBytes-9<<20 {
		t.Errorf("Usage after writing 10 MiB = %+v; before %+v", after, before)
	}

	// Close, then Open finds the disk by UUID even without its device name.
	if err := d.Close(ctx, spec); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if isMounted(t, path) {
		t.Fatal("still mounted after Close")
	}
	byUUID := spec
	byUUID.Device = ""
	p, err = d.Open(ctx, byUUID)
	if err != nil {
		t.Fatalf("Open by UUID: %v", err)
	}
	if p.Spec().Device != dev {
		t.Errorf("Open found the pool on %q; want %s", p.Spec().Device, dev)
	}
	if fi, err := os.Stat(filepath.Join(path, "images", "big.raw")); err != nil || fi.Size() != 10<<20 {
		t.Errorf("the image after reopening: %v, %v", fi, err)
	}

	// Close while a file is open is refused with ErrInUse, and the pool stays.
	f, err := os.Open(filepath.Join(path, "images", "big.raw"))
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, "Close with an open file", d.Close(ctx, spec), ErrInUse, "open")
	f.Close()
	if !isMounted(t, path) {
		t.Error("the refused Close unmounted the pool")
	}

	// The btrfs driver does not open the ext4 disk.
	if bd, err := Lookup("btrfs", hostcmd.Exec{}); err == nil && bd.Supported(ctx) == nil {
		_, err := bd.Open(ctx, Spec{Driver: "btrfs", Path: poolPath(t, "21"), UUID: spec.UUID})
		wantErr(t, "btrfs Open of the ext4 disk", err, ErrInvalid, "holds ext4")
	}
}
