package filecopy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cairn-os/cairn/internal/testutil"
)

const mib = 1 << 20

// sparseFile makes a file of size bytes that is a hole except for 1 MiB of random
// data at each of the offsets.
func sparseFile(t *testing.T, path string, size int64, offsets ...int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, mib)
	for _, off := range offsets {
		rand.Read(chunk)
		if _, err := f.WriteAt(chunk, off); err != nil {
			t.Fatal(err)
		}
	}
}

func digest(t *testing.T, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

func stat(t *testing.T, path string) *syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return &st
}

// names lists a folder, so that a test can see that nothing was left behind.
func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// progressLog records progress calls.
type progressLog struct {
	mu    sync.Mutex
	calls [][2]int64
}

func (p *progressLog) record(done, total int64) {
	p.mu.Lock()
	p.calls = append(p.calls, [2]int64{done, total})
	p.mu.Unlock()
}

// readBytes is how many bytes this process has read through read system calls so far
// (rchar in /proc/self/io), to tell a copy that reads holes from one that skips them.
func readBytes(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "rchar: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no rchar in /proc/self/io")
	return 0
}

// A 512 MiB image with 3 MiB of data and 8 MiB of written zeros is copied on ext4 (no
// reflinks): the copy has the same bytes, keeps the mode, reads only the data (not
// the holes), leaves the zeros as holes too, and progress climbs to the size.
func TestCopyKeepsHoles(t *testing.T) {
	const size = 512 * mib
	src := filepath.Join(t.TempDir(), "disk.img")
	sparseFile(t, src, size, 0, 100*mib+4096, size-mib)
	f, err := os.OpenFile(src, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Zeros written by a guest are data to the filesystem.
	if _, err := f.WriteAt(make([]byte, 8*mib), 256*mib); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(src, 0o640); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	dst := filepath.Join(dir, "copy.img")
	var log progressLog
	read := readBytes(t)
	method, err := Copy(context.Background(), src, dst, log.record)
	read = readBytes(t) - read
	if err != nil {
		t.Fatal(err)
	}
	if method != DataCopy {
		t.Errorf("method = %s, want copy (is %s on a filesystem with reflinks?)", method, dir)
	}
	// 11 MiB of data; a copy that read the holes as zeros would read 512 MiB.
	if read > 64*mib {
		t.Errorf("the copy read %d MiB of a 512 MiB file with 11 MiB of data: it read the holes", read/mib)
	}
	if digest(t, src) != digest(t, dst) {
		t.Fatal("the copy's content differs from the source")
	}
	s, d := stat(t, src), stat(t, dst)
	if d.Size != size {
		t.Errorf("copy is %d bytes, want %d", d.Size, size)
	}
	// 3 MiB of data; a copy that wrote the zeros would take 11 MiB, one that filled
	// the holes 512 MiB.
	if used := d.Blocks * 512; used > 6*mib {
		t.Errorf("copy uses %d KiB on disk (source %d KiB): it did not stay sparse", used>>10, s.Blocks*512>>10)
	}
	if fi, _ := os.Stat(dst); fi.Mode().Perm() != 0o640 {
		t.Errorf("copy has mode %v, want 0640 like the source", fi.Mode().Perm())
	}
	if len(log.calls) == 0 {
		t.Fatal("no progress reported")
	}
	for i, c := range log.calls {
		if c[1] != size {
			t.Fatalf("progress call %d has total %d, want %d", i, c[1], size)
		}
		if i > 0 && c[0] <= log.calls[i-1][0] {
			t.Fatalf("progress went back or repeated: %v", log.calls)
		}
	}
	if last := log.calls[len(log.calls)-1]; last[0] != last[1] {
		t.Errorf("last progress %d/%d, want it to reach the total", last[0], last[1])
	}
	if got := names(t, dir); !slices.Equal(got, []string{"copy.img"}) {
		t.Errorf("destination folder holds %v, want only copy.img", got)
	}
}

// Data that ends in a hole, a file that is all hole, and an empty file copy exactly.
func TestCopyEdges(t *testing.T) {
	for name, make := range map[string]func(path string){
		"data then hole": func(path string) { sparseFile(t, path, 8*mib+512, 0) },
		"hole then data": func(path string) { sparseFile(t, path, 3*mib, 2*mib) },
		"all hole":       func(path string) { sparseFile(t, path, 5*mib+1) },
		"empty":          func(path string) { sparseFile(t, path, 0) },
		"odd size": func(path string) {
			b := make([]byte, 3*mib+17)
			rand.Read(b)
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "src.img")
			make(src)
			dst := filepath.Join(t.TempDir(), "dst.img")
			if _, err := Copy(context.Background(), src, dst, nil); err != nil {
				t.Fatal(err)
			}
			if s, d := stat(t, src), stat(t, dst); s.Size != d.Size {
				t.Errorf("copy is %d bytes, source %d", d.Size, s.Size)
			}
			if digest(t, src) != digest(t, dst) {
				t.Error("the copy's content differs from the source")
			}
		})
	}
}

// An existing destination is never overwritten, whatever the method.
func TestCopyRefusesExisting(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.img")
	dst := filepath.Join(dir, "dst.img")
	sparseFile(t, src, 4*mib, 0)
	if err := os.WriteFile(dst, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Copy(context.Background(), src, dst, nil)
	if !errors.Is(err, ErrExists) {
		t.Fatalf("Copy onto an existing file: %v, want ErrExists", err)
	}
	if !strings.Contains(err.Error(), "choose another name") {
		t.Errorf("error %q does not say what to do", err)
	}
	if b, _ := os.ReadFile(dst); string(b) != "keep me" {
		t.Errorf("existing destination was changed to %q", b)
	}
	if got := names(t, dir); !slices.Equal(got, []string{"dst.img", "src.img"}) {
		t.Errorf("folder holds %v, want only dst.img and src.img", got)
	}
}

// A source that is missing or not a file fails with a message naming it.
func TestCopyBadSource(t *testing.T) {
	dir := t.TempDir()
	_, err := Copy(context.Background(), filepath.Join(dir, "missing.img"), filepath.Join(dir, "x"), nil)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing source: %v, want a not-exist error", err)
	}
	_, err = Copy(context.Background(), dir, filepath.Join(dir, "x"), nil)
	if err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("folder as source: %v, want 'not a regular file'", err)
	}
	if got := names(t, dir); len(got) != 0 {
		t.Errorf("folder holds %v after failed copies, want nothing", got)
	}
}

// Cancelling while the data is copied stops it and leaves no file and no temporary
// folder.
func TestCopyCancelLeavesNothing(t *testing.T) {
	src := filepath.Join(t.TempDir(), "disk.img")
	sparseFile(t, src, 4<<30, 0, 1<<30, 2<<30, 3<<30)
	dir := t.TempDir()
	dst := filepath.Join(dir, "copy.img")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var once sync.Once
	_, err := Copy(ctx, src, dst, func(done, total int64) { once.Do(cancel) })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Copy returned %v, want context.Canceled", err)
	}
	if got := names(t, dir); len(got) != 0 {
		t.Errorf("folder holds %v after a cancelled copy, want nothing", got)
	}
}

// btrfsMount makes a btrfs filesystem on a loop device and mounts it for the test.
func btrfsMount(t *testing.T, size int64) string {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireProgram(t, "mkfs.btrfs")
	testutil.RequireProgram(t, "losetup")
	img := filepath.Join(t.TempDir(), "btrfs.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	run := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	run("mkfs.btrfs", "-q", img)
	dev := run("losetup", "--find", "--show", img)
	t.Cleanup(func() { exec.Command("losetup", "--detach", dev).Run() })
	mp := t.TempDir()
	if err := unix.Mount(dev, mp, "btrfs", 0, ""); err != nil {
		t.Fatalf("mount %s: %v", dev, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mp, 0); err != nil {
			t.Errorf("unmount %s: %v", mp, err)
		}
	})
	return mp
}

func freeBytes(t *testing.T, path string) int64 {
	t.Helper()
	unix.Sync()
	var s unix.Statfs_t
	if err := unix.Statfs(path, &s); err != nil {
		t.Fatal(err)
	}
	return int64(s.Bavail) * s.Bsize
}

// On btrfs the copy is a reflink: same bytes and mode, and it takes no space; a copy
// from btrfs to another filesystem falls back to copying the data.
func TestCopyReflinkOnBtrfs(t *testing.T) {
	mp := btrfsMount(t, 512*mib)
	src := filepath.Join(mp, "disk.img")
	data := make([]byte, 64*mib)
	rand.Read(data)
	if err := os.WriteFile(src, data, 0o604); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(src, 0o604); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(mp, "backups"), 0o755); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(mp, "backups", "disk.img")
	before := freeBytes(t, mp)
	var log progressLog
	method, err := Copy(context.Background(), src, dst, log.record)
	if err != nil {
		t.Fatal(err)
	}
	if method != Reflink {
		t.Errorf("method on btrfs = %s, want reflink", method)
	}
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("the clone's content differs from the source")
	}
	// A real copy of 64 MiB would take 64 MiB; a clone takes only metadata.
	if used := before - freeBytes(t, mp); used > 16*mib {
		t.Errorf("the copy took %d MiB of free space, want about none (a reflink)", used/mib)
	}
	if fi, _ := os.Stat(dst); fi.Mode().Perm() != 0o604 {
		t.Errorf("clone has mode %v, want 0604 like the source", fi.Mode().Perm())
	}
	if n := len(log.calls); n == 0 || log.calls[n-1] != [2]int64{64 * mib, 64 * mib} {
		t.Errorf("progress calls %v, want the last to be done = total", log.calls)
	}
	// Changing the clone leaves the source as it was.
	f, err := os.OpenFile(dst, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("changed"), 0)
	f.Close()
	if digest(t, src) != sha256.Sum256(data) {
		t.Error("writing to the clone changed the source")
	}
	if got := names(t, filepath.Join(mp, "backups")); !slices.Equal(got, []string{"disk.img"}) {
		t.Errorf("destination folder holds %v, want only disk.img", got)
	}

	out := filepath.Join(t.TempDir(), "disk.img")
	method, err = Copy(context.Background(), src, out, nil)
	if err != nil {
		t.Fatal(err)
	}
	if method != DataCopy {
		t.Errorf("method from btrfs to another filesystem = %s, want copy", method)
	}
	if digest(t, out) != sha256.Sum256(data) {
		t.Error("the data copy's content differs from the source")
	}
}

func TestIsTemp(t *testing.T) {
	tmp, err := NewTemp(filepath.Join(t.TempDir(), "a.qcow2"))
	if err != nil {
		t.Fatal(err)
	}
	defer tmp.Remove()
	if !IsTemp(filepath.Base(filepath.Dir(tmp.Path))) {
		t.Errorf("IsTemp(%q) = false for NewTemp's own folder", filepath.Dir(tmp.Path))
	}
	if filepath.Base(tmp.Path) != "a.qcow2" {
		t.Errorf("temporary file %s does not keep the destination's name", tmp.Path)
	}
	if IsTemp("a.qcow2") {
		t.Error("IsTemp(a.qcow2) = true")
	}
}

// CopyReplace puts the copy in place of an existing file; cancelled, it leaves the old
// file as it was and nothing beside it; it replaces only a regular file.
func TestCopyReplace(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(t.TempDir(), "backup.img")
	sparseFile(t, src, 64*mib, 0, 32*mib)
	dst := filepath.Join(dir, "disk.img")
	old := []byte("the image as it was")
	if err := os.WriteFile(dst, old, 0o640); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var once sync.Once
	_, err := CopyReplace(ctx, src, dst, func(int64, int64) { once.Do(cancel) })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled CopyReplace returned %v, want context.Canceled", err)
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, old) {
		t.Errorf("after a cancelled replace the file holds %q, want it as it was", got)
	}
	if got := names(t, dir); !slices.Equal(got, []string{"disk.img"}) {
		t.Errorf("folder holds %v after a cancelled replace, want only disk.img", got)
	}

	if _, err := CopyReplace(context.Background(), src, dst, nil); err != nil {
		t.Fatal(err)
	}
	if digest(t, src) != digest(t, dst) {
		t.Error("the replaced file's content differs from the source")
	}
	if got := names(t, dir); !slices.Equal(got, []string{"disk.img"}) {
		t.Errorf("folder holds %v after a replace, want only disk.img", got)
	}

	sub := filepath.Join(dir, "folder")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := CopyReplace(context.Background(), src, sub, nil); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("CopyReplace onto a folder: %v, want it refused", err)
	}
	if _, err := Copy(context.Background(), src, dst, nil); !errors.Is(err, ErrExists) {
		t.Errorf("Copy onto an existing file: %v, want ErrExists", err)
	}
}
