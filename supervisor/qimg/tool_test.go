package qimg

import (
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every format but iso can be created empty; Info detects it, the size is right, the
// file takes little space, Check passes and nothing else is left in the folder.
func TestCreateEachFormat(t *testing.T) {
	q := requireQemuImg(t)
	for _, f := range Formats {
		t.Run(string(f), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "disk."+f.Ext())
			err := q.Create(bg, path, f, 64*mib)
			if f == ISO {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "upload") {
					t.Fatalf("Create iso: %v, want ErrInvalid saying to upload one", err)
				}
				wantNames(t, dir)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			in, err := q.Info(bg, path)
			if err != nil {
				t.Fatal(err)
			}
			if in.Format != f || in.VirtualSize != 64*mib || in.BackingFile != "" || in.Filename != path {
				t.Errorf("Info = %+v, want format %s, 64 MiB, no backing file, filename %s", in, f, path)
			}
			if in.ActualSize > 16*mib {
				t.Errorf("an empty 64 MiB %s image takes %d bytes on disk", f, in.ActualSize)
			}
			if err := q.Check(bg, path, f); err != nil {
				t.Errorf("Check: %v", err)
			}
			wantNames(t, dir, "disk."+f.Ext())
		})
	}
}

// Bad input is refused before qemu-img runs, with a message that says what to fix,
// and an existing file is never touched.
func TestCreateBadInput(t *testing.T) {
	q := requireQemuImg(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "disk.qcow2")
	for _, size := range []int64{0, -512, 1000} {
		err := q.Create(bg, path, QCOW2, size)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "multiple of 512") {
			t.Errorf("Create size %d: %v, want ErrInvalid naming the size rule", size, err)
		}
	}
	err := q.Create(bg, path, Format("qcow3"), 64*mib)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "qcow2, raw, iso") {
		t.Errorf("Create qcow3: %v, want ErrInvalid listing the formats", err)
	}
	wantNames(t, dir)

	if err := os.WriteFile(path, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = q.Create(bg, path, QCOW2, 64*mib)
	if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "choose another name") {
		t.Errorf("Create over an existing file: %v, want ErrExists saying what to do", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "precious" {
		t.Errorf("existing file was changed to %q", b)
	}
	wantNames(t, dir, "disk.qcow2")
}

// A child of a 10 GiB master takes almost no space, shows its backing file, and the
// chain lists both.
func TestCreateChildOfBigMaster(t *testing.T) {
	q := requireQemuImg(t)
	dir := t.TempDir()
	master := filepath.Join(dir, "master.qcow2")
	child := filepath.Join(dir, "child.qcow2")
	if err := q.Create(bg, master, QCOW2, 10<<30); err != nil {
		t.Fatal(err)
	}
	if err := q.CreateChild(bg, child, master, QCOW2); err != nil {
		t.Fatal(err)
	}
	in, err := q.Info(bg, child)
	if err != nil {
		t.Fatal(err)
	}
	if in.Format != QCOW2 || in.BackingFile != master || in.BackingFormat != QCOW2 || in.VirtualSize != 10<<30 {
		t.Errorf("child Info = %+v, want qcow2 of 10 GiB backed by %s (qcow2)", in, master)
	}
	if in.ActualSize > mib {
		t.Errorf("child of a 10 GiB master takes %d bytes", in.ActualSize)
	}
	chain, err := q.Chain(bg, child)
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != 2 || chain[0].Filename != child || chain[1].Filename != master || chain[1].BackingFile != "" {
		t.Errorf("Chain = %+v, want [child, master]", chain)
	}

	err = q.CreateChild(bg, filepath.Join(dir, "c2.qcow2"), "master.qcow2", QCOW2)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "absolute") {
		t.Errorf("CreateChild with a relative backing path: %v, want ErrInvalid asking for an absolute path", err)
	}
	err = q.CreateChild(bg, filepath.Join(dir, "c3.qcow2"), filepath.Join(dir, "nothing.qcow2"), QCOW2)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("CreateChild of a missing master: %v, want a not-exist error", err)
	}
	if err := q.CreateChild(bg, child, master, QCOW2); !errors.Is(err, ErrExists) {
		t.Errorf("CreateChild over an existing child: %v, want ErrExists", err)
	}
	wantNames(t, dir, "child.qcow2", "master.qcow2")
}

// Resize grows qcow2 and raw images, refuses shrinking (the data stays), and refuses
// what qemu-img cannot resize with a way out.
func TestResize(t *testing.T) {
	q := requireQemuImg(t)
	dir := t.TempDir()
	for _, f := range []Format{QCOW2, Raw} {
		path := filepath.Join(dir, "disk."+f.Ext())
		if err := q.Create(bg, path, f, 64*mib); err != nil {
			t.Fatal(err)
		}
		qemuIO(t, path, f, 0xab, 63*mib, mib)
		if err := q.Resize(bg, path, f, 128*mib); err != nil {
			t.Fatalf("grow %s: %v", f, err)
		}
		if in, _ := q.Info(bg, path); in.VirtualSize != 128*mib {
			t.Errorf("%s after growing to 128 MiB: %d bytes", f, in.VirtualSize)
		}
		err := q.Resize(bg, path, f, 64*mib)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "shrinking") || !strings.Contains(err.Error(), "at least 134217728") {
			t.Errorf("shrink %s: %v, want ErrInvalid refusing to shrink", f, err)
		}
		if err := q.Resize(bg, path, f, 128*mib); err != nil {
			t.Errorf("resize %s to its own size: %v", f, err)
		}
		view := guestView(t, path, f)
		if len(view) != 128*mib || view[63*mib] != 0xab || view[64*mib-1] != 0xab {
			t.Errorf("%s after the refused shrink: %d bytes, data at 63 MiB lost", f, len(view))
		}
	}
	if err := q.Resize(bg, filepath.Join(dir, "disk.img"), QCOW2, 256*mib); !errors.Is(err, ErrInvalid) {
		t.Errorf("resize a raw file as qcow2: %v, want ErrInvalid", err)
	}
	vmdk := filepath.Join(dir, "disk.vmdk")
	if err := q.Create(bg, vmdk, VMDK, 64*mib); err != nil {
		t.Fatal(err)
	}
	if err := q.Resize(bg, vmdk, VMDK, 128*mib); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "convert it to qcow2") {
		t.Errorf("resize vmdk: %v, want ErrInvalid suggesting qcow2", err)
	}
	if err := q.Resize(bg, filepath.Join(dir, "x.iso"), ISO, 128*mib); !errors.Is(err, ErrInvalid) {
		t.Errorf("resize iso: %v, want ErrInvalid", err)
	}
	if err := q.Resize(bg, filepath.Join(dir, "disk.qcow2"), QCOW2, 1000); !errors.Is(err, ErrInvalid) {
		t.Errorf("resize to 1000 bytes: %v, want ErrInvalid", err)
	}
}

// Check finds a qcow2 whose refcounts were destroyed, and passes a healthy one.
func TestCheckFindsCorruption(t *testing.T) {
	q := requireQemuImg(t)
	path := filepath.Join(t.TempDir(), "disk.qcow2")
	if err := q.Create(bg, path, QCOW2, 64*mib); err != nil {
		t.Fatal(err)
	}
	qemuIO(t, path, QCOW2, 0xab, 0, 4*mib)
	if err := q.Check(bg, path, QCOW2); err != nil {
		t.Fatalf("Check of a healthy image: %v", err)
	}
	// Zero the first refcount block: every cluster then seems unused while in use.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	hdr := make([]byte, 64)
	f.ReadAt(hdr, 0)
	table := int64(binary.BigEndian.Uint64(hdr[48:56]))
	entry := make([]byte, 8)
	f.ReadAt(entry, table)
	block := int64(binary.BigEndian.Uint64(entry))
	f.WriteAt(make([]byte, 64<<10), block)
	f.Close()
	err = q.Check(bg, path, QCOW2)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "backup") {
		t.Errorf("Check of a damaged image: %v, want ErrCorrupt saying what to do", err)
	}
}

// While another program (a VM) has an image open, Info still works and everything
// that writes or needs a consistent image fails with ErrInUse.
func TestImageInUse(t *testing.T) {
	q := requireQemuImg(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "disk.qcow2")
	if err := q.Create(bg, path, QCOW2, 64*mib); err != nil {
		t.Fatal(err)
	}
	holdOpen(t, path, QCOW2)
	if in, err := q.Info(bg, path); err != nil || in.Format != QCOW2 {
		t.Errorf("Info of an image in use = %+v, %v", in, err)
	}
	for name, err := range map[string]error{
		"Resize":  q.Resize(bg, path, QCOW2, 128*mib),
		"Convert": q.Convert(bg, path, QCOW2, filepath.Join(dir, "copy.img"), Raw, nil),
		"Check":   q.Check(bg, path, QCOW2),
	} {
		if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "stop it first") {
			t.Errorf("%s of an image in use: %v, want ErrInUse", name, err)
		}
	}
	wantNames(t, dir, "disk.qcow2")
}

func TestInfoMissingFile(t *testing.T) {
	q := requireQemuImg(t)
	if _, err := q.Info(bg, filepath.Join(t.TempDir(), "nothing.qcow2")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Info of a missing file: %v, want a not-exist error", err)
	}
}
