package pool

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairn-os/cairn/internal/testutil"
	"github.com/cairn-os/cairn/supervisor/hostcmd"
)

func btrfsDriverForTest(t *testing.T) Driver {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireProgram(t, "mkfs.btrfs")
	testutil.RequireProgram(t, "blkid")
	testutil.RequireProgram(t, "wipefs")
	return lookup(t, "btrfs", hostcmd.Exec{})
}

// The whole life of a btrfs pool on a blank disk: create, open, snapshot, change,
// roll back (with the mount kept), restore one file from a snapshot, list and delete
// snapshots.
func TestBtrfsOnDevice(t *testing.T) {
	d := btrfsDriverForTest(t)
	ctx := context.Background()
	dev := blankLoop(t, 512<<20)
	path := poolPath(t, "3")

	spec, err := d.Create(ctx, Spec{Driver: "btrfs", Path: path, Device: dev})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if spec.UUID == "" || spec.Device != dev || spec.Path != path {
		t.Fatalf("Create returned %+v; want the UUID filled in", spec)
	}
	if isMounted(t, path) {
		t.Errorf("Create left %s mounted", path)
	}
	if got := fsTypeOf(t, dev); got != "btrfs" {
		t.Fatalf("the device holds %q after Create; want btrfs", got)
	}
	p, err := d.Open(ctx, spec)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { d.Close(ctx, spec) })
	if !isMounted(t, path) {
		t.Fatalf("Open did not mount %s", path)
	}
	if p.Spec().UUID != spec.UUID || p.Spec().Device != dev {
		t.Errorf("pool spec = %+v", p.Spec())
	}
	sn, ok := p.(Snapshotter)
	if !ok {
		t.Fatal("a btrfs pool is not a Snapshotter")
	}

	// Usage grows when 10 MiB are written.
	before, err := p.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if before.TotalBytes < 400<<20 || before.TotalBytes > 512<<20 || before.UsedBytes+before.FreeBytes > before.TotalBytes {
		t.Errorf("Usage of a 512 MiB pool = %+v", before)
	}
	writeRandom(t, filepath.Join(path, "images", "big.raw"), 10<<20)
	after, err := p.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.UsedBytes < before.UsedBytes+9<<20 || after.FreeBytes > before.FreeBytes-9<<20 {
		t.Errorf("Usage after writing 10 MiB = %+v; before %+v", after, before)
	}

	writeFile(t, filepath.Join(path, "images", "a.qcow2"), "version 1")
	writeFile(t, filepath.Join(path, "keep.txt"), "keep me")
	if err := os.Symlink("images/a.qcow2", filepath.Join(path, "current")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(path, "images", "a.qcow2"), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now().Truncate(time.Second)
	if err := sn.Snapshot(ctx, "s1"); err != nil {
		t.Fatalf("Snapshot(s1): %v", err)
	}
	wantErr(t, "Snapshot(s1) again", sn.Snapshot(ctx, "s1"), ErrExists)
	wantErr(t, "Snapshot(Bad/Name)", sn.Snapshot(ctx, "Bad/Name"), ErrInvalid)

	// Change, add and delete files, then snapshot again.
	writeFile(t, filepath.Join(path, "images", "a.qcow2"), "version 2, longer")
	writeFile(t, filepath.Join(path, "new.txt"), "added later")
	writeFile(t, filepath.Join(path, "extra", "deep", "file"), "added later")
	if err := os.Remove(filepath.Join(path, "keep.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(path, "current")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(path, "current"), 0o755); err != nil { // a folder where the link was
		t.Fatal(err)
	}
	if err := sn.Snapshot(ctx, "s2"); err != nil {
		t.Fatalf("Snapshot(s2): %v", err)
	}
	writeFile(t, filepath.Join(path, "after-s2.txt"), "added after s2")
	end := time.Now()

	devBefore := devOf(t, path)
	mountBefore, _, _ := mountAt(path)
	unix.Sync()
	usedBefore, _ := p.Usage(ctx)
	if err := sn.Rollback(ctx, "s1"); err != nil {
		t.Fatalf("Rollback(s1): %v", err)
	}
	// The files are reflinked, not copied: the 10 MiB image takes no new space.
	unix.Sync()
	if usedAfter, _ := p.Usage(ctx); usedAfter.UsedBytes > usedBefore.UsedBytes+5<<20 {
		t.Errorf("the rollback took %d more bytes; want the files reflinked from the snapshot", usedAfter.UsedBytes-usedBefore.UsedBytes)
	}
	if got := readFile(t, filepath.Join(path, "images", "a.qcow2")); got != "version 1" {
		t.Errorf("images/a.qcow2 after rollback = %q; want version 1", got)
	}
	if fi, err := os.Stat(filepath.Join(path, "images", "a.qcow2")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("images/a.qcow2 after rollback: %v, %v; want mode 0600", fi, err)
	}
	if got := readFile(t, filepath.Join(path, "keep.txt")); got != "keep me" {
		t.Errorf("keep.txt after rollback = %q", got)
	}
	if target, err := os.Readlink(filepath.Join(path, "current")); err != nil || target != "images/a.qcow2" {
		t.Errorf("the symlink after rollback: %q, %v", target, err)
	}
	for _, gone := range []string{"new.txt", "extra", "after-s2.txt"} {
		if _, err := os.Lstat(filepath.Join(path, gone)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is still there after the rollback (%v)", gone, err)
		}
	}
	if got := readFile(t, filepath.Join(path, "images", "big.raw")); len(got) != 10<<20 {
		t.Errorf("images/big.raw after rollback has %d bytes", len(got))
	}
	mountAfter, mounted, _ := mountAt(path)
	if devOf(t, path) != devBefore || !mounted || mountAfter != mountBefore {
		t.Errorf("the pool's mount changed in the rollback: %+v → %+v", mountBefore, mountAfter)
	}

	// The later snapshot is kept, with its content.
	if f, err := sn.SnapshotPath("s2", "images/a.qcow2"); err != nil || readFile(t, f) != "version 2, longer" {
		t.Errorf("SnapshotPath(s2) = %s, %v", f, err)
	}
	f, err := sn.SnapshotPath("s1", "images/a.qcow2")
	if err != nil || readFile(t, f) != "version 1" || f != filepath.Join(path, ".snapshots", "s1", "images", "a.qcow2") {
		t.Errorf("SnapshotPath(s1) = %s, %v", f, err)
	}
	_, err = sn.SnapshotPath("s1", "../s2/images/a.qcow2")
	wantErr(t, "SnapshotPath(s1, ../s2/…)", err, ErrInvalid)
	_, err = sn.SnapshotPath("s1", "new.txt")
	wantErr(t, "SnapshotPath(s1, new.txt)", err, ErrNotFound)
	_, err = sn.SnapshotPath("s1", "current")
	wantErr(t, "SnapshotPath(s1, a symlink)", err, ErrInvalid, "symbolic link")
	_, err = sn.SnapshotPath("nope", "images/a.qcow2")
	wantErr(t, "SnapshotPath(nope)", err, ErrNotFound)

	snaps, err := sn.Snapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 2 || snaps[0].Name != "s1" || snaps[1].Name != "s2" {
		t.Fatalf("Snapshots = %+v; want s1, s2", snaps)
	}
	for _, s := range snaps {
		if s.CreatedAt.Before(start) || s.CreatedAt.After(end) {
			t.Errorf("snapshot %s created at %v; want between %v and %v", s.Name, s.CreatedAt, start, end)
		}
	}

	if err := sn.DeleteSnapshot(ctx, "s1"); err != nil {
		t.Fatalf("DeleteSnapshot(s1): %v", err)
	}
	wantErr(t, "DeleteSnapshot(s1) again", sn.DeleteSnapshot(ctx, "s1"), ErrNotFound)
	wantErr(t, "Rollback(s1) after deleting it", sn.Rollback(ctx, "s1"), ErrNotFound)
	snaps, err = sn.Snapshots(ctx)
	if err != nil || len(snaps) != 1 || snaps[0].Name != "s2" {
		t.Errorf("Snapshots after deleting s1 = %+v, %v", snaps, err)
	}
	if _, err := os.Lstat(filepath.Join(path, ".snapshots", "s1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the deleted snapshot's folder is still there: %v", err)
	}

	// A second Create on the mounted device is refused before anything is written.
	_, err = d.Create(ctx, Spec{Driver: "btrfs", Path: poolPath(t, "4"), Device: dev})
	wantErr(t, "Create on the mounted device", err, ErrInUse, "mounted at "+path)
	if got := readFile(t, filepath.Join(path, "keep.txt")); got != "keep me" {
		t.Errorf("keep.txt after the refused Create = %q", got)
	}
}

// After Close (engine shutdown), Open finds the device again by its UUID, even when
// the recorded device name is no longer right.
func TestBtrfsReopenByUUID(t *testing.T) {
	d := btrfsDriverForTest(t)
	ctx := context.Background()
	dev := blankLoop(t, 256<<20)
	path := poolPath(t, "5")
	spec, err := d.Create(ctx, Spec{Driver: "btrfs", Path: path, Device: dev})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := d.Open(ctx, spec); err != nil {
		t.Fatalf("Open: %v", err)
	}
	writeFile(t, filepath.Join(path, "images", "x.qcow2"), "kept over a reboot")
	// Open twice (the engine restarted without a reboot) keeps the one mount.
	if _, err := d.Open(ctx, spec); err != nil {
		t.Fatalf("Open while open: %v", err)
	}
	if err := d.Close(ctx, spec); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if isMounted(t, path) {
		t.Fatalf("%s is still mounted after Close", path)
	}
	if err := d.Close(ctx, spec); err != nil {
		t.Errorf("Close of a closed pool: %v", err)
	}

	renamed := spec
	renamed.Device = "/dev/" + testutil.Name("cairn-gone-")
	p, err := d.Open(ctx, renamed)
	if err != nil {
		t.Fatalf("Open by UUID with a stale device name: %v", err)
	}
	t.Cleanup(func() { d.Close(ctx, spec) })
	if got := readFile(t, filepath.Join(path, "images", "x.qcow2")); got != "kept over a reboot" {
		t.Errorf("file after reopening = %q", got)
	}
	if p.Spec().Device != dev {
		t.Errorf("reopened pool's device = %q; want %q, where the UUID is", p.Spec().Device, dev)
	}

	// A UUID that no device holds says to attach the disk.
	lost := spec
	lost.UUID = newUUID()
	_, err = d.Open(ctx, Spec{Driver: "btrfs", Path: poolPath(t, "6"), UUID: lost.UUID})
	wantErr(t, "Open with an unknown UUID", err, ErrNotFound, lost.UUID, "attach")
}

// A btrfs pool on a folder of an existing btrfs file system is a subvolume, like the
// data disk's pools/0; it can snapshot and roll back too.
func TestBtrfsOnExistingFileSystem(t *testing.T) {
	d := btrfsDriverForTest(t)
	ctx := context.Background()
	dev := blankLoop(t, 256<<20)
	run(t, "mkfs.btrfs", "-q", "-L", "other", dev)
	mnt := filepath.Join(t.TempDir(), "data")
	os.Mkdir(mnt, 0o755)
	unmountAtEnd(t, mnt)
	if err := unix.Mount(dev, mnt, "btrfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(mnt, "pools"), 0o755)
	path := filepath.Join(mnt, "pools", "7")

	spec, err := d.Create(ctx, Spec{Driver: "btrfs", Path: path})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if spec.UUID != "" || spec.Device != "" {
		t.Errorf("Create on a folder returned %+v; want no device or UUID", spec)
	}
	if err := checkSubvolume(path); err != nil {
		t.Fatalf("the pool is not a subvolume: %v", err)
	}
	// Creating it again (the engine retrying, or pool 0 made by datadisk) is fine.
	if _, err := d.Create(ctx, spec); err != nil {
		t.Errorf("Create on an existing subvolume: %v", err)
	}
	p, err := d.Open(ctx, spec)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	writeFile(t, filepath.Join(path, "a"), "one")
	sn := p.(Snapshotter)
	if err := sn.Snapshot(ctx, "first"); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(path, "a"), "two")
	if err := sn.Rollback(ctx, "first"); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(path, "a")); got != "one" {
		t.Errorf("after rollback a = %q", got)
	}
	if err := d.Close(ctx, spec); err != nil || !isMounted(t, mnt) {
		t.Errorf("Close of a pool on a folder: %v, and the file system it is on must stay mounted", err)
	}

	// An empty folder becomes a subvolume; a folder with files, a file, and a folder
	// not on btrfs are refused.
	empty := filepath.Join(mnt, "pools", "8")
	os.Mkdir(empty, 0o755)
	if _, err := d.Create(ctx, Spec{Driver: "btrfs", Path: empty}); err != nil || checkSubvolume(empty) != nil {
		t.Errorf("Create on an empty folder: %v", err)
	}
	full := filepath.Join(mnt, "pools", "9")
	writeFile(t, filepath.Join(full, "precious"), "x")
	_, err = d.Create(ctx, Spec{Driver: "btrfs", Path: full})
	wantErr(t, "Create on a folder with files", err, ErrInvalid, "not a btrfs subvolume")
	if got := readFile(t, filepath.Join(full, "precious")); got != "x" {
		t.Errorf("the folder's file after the refusal = %q", got)
	}
	notBtrfs := filepath.Join(t.TempDir(), "p")
	if magic, _ := fsMagic(filepath.Dir(notBtrfs)); magic != unix.BTRFS_SUPER_MAGIC {
		_, err = d.Create(ctx, Spec{Driver: "btrfs", Path: notBtrfs})
		wantErr(t, "Create outside btrfs", err, ErrInvalid, "not on a btrfs file system")
		if _, err := os.Stat(notBtrfs); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the refused Create made %s", notBtrfs)
		}
	}
	_, err = d.Open(ctx, Spec{Driver: "btrfs", Path: filepath.Join(mnt, "pools", "missing")})
	wantErr(t, "Open of a missing subvolume", err, ErrNotFound)
}

// A mount point that cannot be used stops Create before the device is formatted.
func TestBtrfsCreateChecksMountpointFirst(t *testing.T) {
	d := btrfsDriverForTest(t)
	ctx := context.Background()
	dev := blankLoop(t, 256<<20)
	dir := poolPath(t, "x")
	file := filepath.Join(filepath.Dir(dir), "file")
	writeFile(t, file, "not a folder")
	full := filepath.Join(filepath.Dir(dir), "full")
	writeFile(t, filepath.Join(full, "f"), "x")
	for path, why := range map[string]string{
		file: "it is a file",
		full: "not empty",
		filepath.Join(filepath.Dir(dir), "no", "parent"): "is not an existing folder",
	} {
		_, err := d.Create(ctx, Spec{Driver: "btrfs", Path: path, Device: dev})
		wantErr(t, "Create at "+path, err, ErrInvalid, why)
	}
	if got := fsTypeOf(t, dev); got != "" {
		t.Errorf("the device holds %q after refused Creates; want it untouched", got)
	}
	if got := readFile(t, file); got != "not a folder" {
		t.Errorf("the file at the mount point = %q", got)
	}
}

// A Create that fails after the format undoes its steps: the mount, the folder it
// made, and the new file system, which Open could otherwise find by its UUID.
func TestCreateRevertsAfterFormat(t *testing.T) {
	btrfsDriverForTest(t)
	ctx := context.Background()
	dev := blankLoop(t, 256<<20)
	path := poolPath(t, "10")
	var sawMounted bool
	_, err := createOnDevice(ctx, hostcmd.Exec{}, Spec{Driver: "btrfs", Path: path, Device: dev}, formatPool{
		fstype: "btrfs",
		mkfs: func(dev, uuid string) (string, []string) {
			return "mkfs.btrfs", []string{"-q", "-U", uuid, dev}
		},
		check: func(dir string) error {
			sawMounted = isMounted(t, dir) && checkSubvolume(dir) == nil
			return errors.New("injected failure after the mount")
		},
	})
	if err == nil || !sawMounted {
		t.Fatalf("createOnDevice = %v, mounted before the failure: %v; want the injected failure after a real mount", err, sawMounted)
	}
	if isMounted(t, path) {
		t.Errorf("%s is mounted after the failed Create", path)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s, which Create made, is still there: %v", path, err)
	}
	if got := fsTypeOf(t, dev); got != "" {
		t.Errorf("the device still holds %q after the failed Create", got)
	}
}

// When the mount itself fails after the format (something took the mount point's
// place), the new file system is wiped, and what is in the way is left alone.
func TestBtrfsCreateRevertsFailedMount(t *testing.T) {
	btrfsDriverForTest(t)
	ctx := context.Background()
	dev := blankLoop(t, 256<<20)
	path := poolPath(t, "12")
	rec := &recorder{real: hostcmd.Exec{}}
	rec.answer = func(name string, args []string) ([]byte, bool, error) {
		if name != "mkfs.btrfs" {
			return nil, false, nil
		}
		out, err := hostcmd.Exec{}.Run(ctx, name, args...)
		os.Remove(path)
		os.WriteFile(path, []byte("in the way"), 0o644)
		return out, true, err
	}
	d, _ := Lookup("btrfs", rec)
	_, err := d.Create(ctx, Spec{Driver: "btrfs", Path: path, Device: dev})
	wantErr(t, "Create with a file in place of the mount point", err, nil, "mount")
	if !rec.ran("mkfs.btrfs") || !rec.ran("wipefs --all") {
		t.Errorf("commands %q; want mkfs.btrfs, then wipefs to undo it", rec.calls)
	}
	if isMounted(t, path) {
		t.Errorf("%s is mounted after the failed Create", path)
	}
	if got := readFile(t, path); got != "in the way" {
		t.Errorf("the file in the way = %q; want it left alone", got)
	}
	if got := fsTypeOf(t, dev); got != "" {
		t.Errorf("the device still holds %q after the failed Create", got)
	}
}

// Snapshots lists oldest first even when several are made within one second.
func TestBtrfsSnapshotOrder(t *testing.T) {
	d := btrfsDriverForTest(t)
	ctx := context.Background()
	dev := blankLoop(t, 256<<20)
	spec, err := d.Create(ctx, Spec{Driver: "btrfs", Path: poolPath(t, "11"), Device: dev})
	if err != nil {
		t.Fatal(err)
	}
	p, err := d.Open(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(ctx, spec) })
	sn := p.(Snapshotter)
	want := []string{"c", "a", "b", "0"} // not alphabetical
	for _, n := range want {
		if err := sn.Snapshot(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	snaps, err := sn.Snapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range snaps {
		got = append(got, s.Name)
	}
	if !slices.Equal(got, want) {
		t.Errorf("Snapshots = %v; want %v", got, want)
	}
}
