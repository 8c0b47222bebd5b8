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
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairn-os/cairn/internal/testutil"
	"github.com/cairn-os/cairn/supervisor/hostcmd"
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

// A 256 MiB image with 3 MiB of data is copied by rsync (ext4 has no reflinks): the
// copy has the same bytes, stays sparse, keeps the mode, and progress ends at the size.
func TestCopySparseWithRsync(t *testing.T) {
	testutil.RequireProgram(t, "rsync")
	const size = 256 * mib
	src := filepath.Join(t.TempDir(), "disk.img")
	sparseFile(t, src, size, 0, 100*mib+4096, size-mib)
	if err := os.Chmod(src, 0o640); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	dst := filepath.Join(dir, "copy.img")
	var log progressLog
	method, err := Copy(context.Background(), src, dst, log.record)
	if err != nil {
		t.Fatal(err)
	}
	if method != Rsync {
		t.Errorf("method = %s, want rsync (is %s on a filesystem with reflinks?)", method, dir)
	}
	if digest(t, src) != digest(t, dst) {
		t.Fatal("the copy's content differs from the source")
	}
	s, d := stat(t, src), stat(t, dst)
	if d.Size != size {
		t.Errorf("copy is %d bytes, want %d", d.Size, size)
	}
	// 3 MiB of data; a copy that filled the holes would take 256 MiB.
	if used := d.Blocks * 512; used > 8*mib {
		t.Errorf("copy uses %d bytes on disk (source %d): it did not stay sparse", used, s.Blocks*512)
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
		if i > 0 && c[0] < log.calls[i-1][0] {
			t.Fatalf("progress went back: %v", log.calls)
		}
	}
	if last := log.calls[len(log.calls)-1]; last[0] != last[1] {
		t.Errorf("last progress %d/%d, want it to reach the total", last[0], last[1])
	}
	if got := names(t, dir); !slices.Equal(got, []string{"copy.img"}) {
		t.Errorf("destination folder holds %v, want only copy.img", got)
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

// Cancelling while rsync runs stops it and leaves no file and no temporary folder.
func TestCopyCancelLeavesNothing(t *testing.T) {
	testutil.RequireProgram(t, "rsync")
	src := filepath.Join(t.TempDir(), "disk.img")
	sparseFile(t, src, 4<<30, 0)
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
// from btrfs to another filesystem falls back to rsync.
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

	testutil.RequireProgram(t, "rsync")
	out := filepath.Join(t.TempDir(), "disk.img")
	method, err = Copy(context.Background(), src, out, nil)
	if err != nil {
		t.Fatal(err)
	}
	if method != Rsync {
		t.Errorf("method from btrfs to another filesystem = %s, want rsync", method)
	}
	if digest(t, out) != sha256.Sum256(data) {
		t.Error("the rsync copy's content differs from the source")
	}
}

func TestParseRsyncProgress(t *testing.T) {
	for line, want := range map[string]int64{
		"    524,320,768   4%   98.69MB/s    0:01:41":                    524320768,
		"10,737,418,240 100%  453.41MB/s    0:00:22 (xfr#1, to-chk=0/1)": 10737418240,
		"         32,768   0%    0.00kB/s    0:00:00":                    32768,
	} {
		if got, ok := parseRsyncProgress(line); !ok || got != want {
			t.Errorf("parseRsyncProgress(%q) = %d, %v; want %d", line, got, ok, want)
		}
	}
	for _, line := range []string{"", "sending incremental file list", "disk.img", "rsync error: some files could not be transferred (code 23)"} {
		if n, ok := parseRsyncProgress(line); ok {
			t.Errorf("parseRsyncProgress(%q) = %d, want no progress", line, n)
		}
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

// underReaper makes the test process reap like PID 1 does — a subreaper collecting
// every child and orphan with wait4(-1) — until the test ends. Not for parallel tests:
// the reaper would take the exits of other tests' plain children.
func underReaper(t *testing.T) {
	t.Helper()
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	kick := make(chan struct{}, 1)
	hostcmd.StartReaper(ctx, kick)
	tick := time.NewTicker(20 * time.Millisecond) // stands in for SIGCHLD
	go func() {
		for range tick.C {
			select {
			case kick <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		tick.Stop()
		stop()
		time.Sleep(100 * time.Millisecond) // let the reaper see ctx end before the next test
		_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	})
}

// Under PID 1's reaper, rsync's exit still reaches Copy, and a cancelled copy (whose
// orphaned rsync helpers the reaper collects) still leaves nothing behind.
func TestCopyUnderReaper(t *testing.T) {
	testutil.RequireProgram(t, "rsync")
	underReaper(t)
	src := filepath.Join(t.TempDir(), "disk.img")
	sparseFile(t, src, 64*mib, 0, 32*mib)
	dir := t.TempDir()
	if _, err := Copy(context.Background(), src, filepath.Join(dir, "copy.img"), nil); err != nil {
		t.Fatalf("Copy under the reaper: %v", err)
	}
	if digest(t, src) != digest(t, filepath.Join(dir, "copy.img")) {
		t.Error("the copy's content differs from the source")
	}

	big := filepath.Join(t.TempDir(), "big.img")
	sparseFile(t, big, 4<<30, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var once sync.Once
	_, err := Copy(ctx, big, filepath.Join(dir, "big.img"), func(int64, int64) { once.Do(cancel) })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Copy under the reaper: %v, want context.Canceled", err)
	}
	if got := names(t, dir); !slices.Equal(got, []string{"copy.img"}) {
		t.Errorf("folder holds %v, want only copy.img", got)
	}
}
