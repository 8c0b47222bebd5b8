package qimg

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairn-os/cairn/supervisor/hostcmd"
)

// Converting along qcow2 → raw → vmdk → vdi → vhdx → qcow2 keeps the disk's content at
// every step, and Info detects each format.
func TestConvertKeepsContent(t *testing.T) {
	q := requireQemuImg(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "source.img")
	want := rawDisk(t, src, 32*mib, region{0, mib}, region{5*mib + 512, 64 << 10}, region{31 * mib, mib})
	prev, prevFmt := src, Raw
	for i, f := range []Format{QCOW2, Raw, VMDK, VDI, VHDX, QCOW2} {
		dst := filepath.Join(dir, "step"+strconv.Itoa(i)+"."+f.Ext())
		if err := q.Convert(bg, prev, prevFmt, dst, f, nil); err != nil {
			t.Fatalf("%s → %s: %v", prevFmt, f, err)
		}
		in, err := q.Info(bg, dst)
		if err != nil {
			t.Fatal(err)
		}
		if in.Format != f || in.VirtualSize != 32*mib {
			t.Errorf("after %s → %s, Info = %+v", prevFmt, f, in)
		}
		sameContent(t, string(prevFmt)+" → "+string(f), guestView(t, dst, f), want)
		prev, prevFmt = dst, f
	}
	// And back to raw by Convert itself, compared byte for byte with the source file.
	back := filepath.Join(dir, "back.img")
	if err := q.Convert(bg, prev, prevFmt, back, Raw, nil); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(back)
	if err != nil {
		t.Fatal(err)
	}
	sameContent(t, "round trip", got, want)
	for _, name := range dirNames(t, dir) {
		if strings.HasPrefix(name, ".") {
			t.Errorf("temporary %s left behind", name)
		}
	}
}

// Convert refuses to overwrite, to convert a file onto itself, and to make an ISO of a
// disk, and leaves the destination as it was.
func TestConvertBadInput(t *testing.T) {
	q := requireQemuImg(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "disk.img")
	rawDisk(t, src, 4*mib, region{0, mib})
	dst := filepath.Join(dir, "taken.qcow2")
	if err := os.WriteFile(dst, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := q.Convert(bg, src, Raw, dst, QCOW2, nil); !errors.Is(err, ErrExists) {
		t.Errorf("Convert onto an existing file: %v, want ErrExists", err)
	}
	if b, _ := os.ReadFile(dst); string(b) != "precious" {
		t.Errorf("existing destination changed to %q", b)
	}
	if err := q.Convert(bg, src, Raw, src, Raw, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("Convert onto itself: %v, want ErrInvalid", err)
	}
	if err := q.Convert(bg, src, Raw, filepath.Join(dir, "x.iso"), ISO, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("Convert a disk to iso: %v, want ErrInvalid", err)
	}
	if err := q.Convert(bg, src, Format("dmg"), filepath.Join(dir, "x.qcow2"), QCOW2, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("Convert from format dmg: %v, want ErrInvalid", err)
	}
	// A wrong source format is qemu-img's to refuse; nothing is left behind.
	if err := q.Convert(bg, src, QCOW2, filepath.Join(dir, "x.qcow2"), QCOW2, nil); err == nil {
		t.Error("Convert of a raw file declared qcow2 succeeded")
	}
	wantNames(t, dir, "disk.img", "taken.qcow2")
}

// qemuImgRunning reports whether a qemu-img child of this test is running (not a
// zombie waiting to be reaped).
func qemuImgRunning() bool {
	entries, _ := os.ReadDir("/proc")
	ppid := strconv.Itoa(os.Getpid())
	for _, e := range entries {
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(stat)
		open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || close < open {
			continue
		}
		f := strings.Fields(s[close+1:])
		if s[open+1:close] == "qemu-img" && len(f) > 1 && f[0] != "Z" && f[1] == ppid {
			return true
		}
	}
	return false
}

// Progress arrives while qemu-img runs, never goes back and ends at 1.
func TestConvertProgress(t *testing.T) {
	q := requireQemuImg(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "disk.img")
	rawDisk(t, src, 256*mib, region{0, 256 * mib})
	var p fractions
	var midway, whileRunning bool
	err := q.Convert(bg, src, Raw, filepath.Join(dir, "disk.qcow2"), QCOW2, func(f float64) {
		p.record(f)
		if f > 0 && f < 1 && !midway {
			midway = true
			whileRunning = qemuImgRunning()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if !midway {
		t.Fatalf("no progress between 0 and 1: %v", p.v)
	}
	if !whileRunning {
		t.Error("progress between 0 and 1 arrived after qemu-img had ended: it is not read as it streams")
	}
	for i := 1; i < len(p.v); i++ {
		if p.v[i] < p.v[i-1] {
			t.Fatalf("progress went back: %v", p.v)
		}
	}
	if p.v[len(p.v)-1] != 1 {
		t.Errorf("progress ended at %v, want 1", p.v[len(p.v)-1])
	}
}

// Cancelling a conversion kills qemu-img and leaves no file behind.
func TestConvertCancel(t *testing.T) {
	q := requireQemuImg(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "disk.img")
	rawDisk(t, src, 256*mib, region{0, 256 * mib})
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	var once sync.Once
	err := q.Convert(ctx, src, Raw, filepath.Join(dir, "disk.vdi"), VDI, func(float64) { once.Do(cancel) })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Convert: %v, want context.Canceled", err)
	}
	wantNames(t, dir, "disk.img")
	if qemuImgRunning() {
		t.Error("qemu-img still runs after the cancelled Convert returned")
	}
}

// A child shares the master's content without changing it; Flatten makes it stand
// alone with the same content (the master's plus its own writes) and keeps its mode.
func TestChildAndFlatten(t *testing.T) {
	q := requireQemuImg(t)
	dir := t.TempDir()
	raw := filepath.Join(dir, "master.img")
	want := rawDisk(t, raw, 64*mib, region{0, 4 * mib}, region{60 * mib, 4 * mib})
	master := filepath.Join(dir, "master.qcow2")
	run(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, master)
	os.Remove(raw)
	masterSum := fileDigest(t, master)

	child := filepath.Join(dir, "child.qcow2")
	if err := q.CreateChild(bg, child, master, QCOW2); err != nil {
		t.Fatal(err)
	}
	sameContent(t, "new child", guestView(t, child, QCOW2), want)
	// The VM writes over part of the master's data and into an empty stretch.
	qemuIO(t, child, QCOW2, 0xcd, 2*mib, 4*mib)
	qemuIO(t, child, QCOW2, 0xef, 30*mib, 64<<10)
	for i := 2 * mib; i < 6*mib; i++ {
		want[i] = 0xcd
	}
	for i := 30 * mib; i < 30*mib+64<<10; i++ {
		want[i] = 0xef
	}
	if fileDigest(t, master) != masterSum {
		t.Fatal("writing to the child changed the master file")
	}
	sameContent(t, "child after writes", guestView(t, child, QCOW2), want)

	if err := os.Chmod(child, 0o640); err != nil {
		t.Fatal(err)
	}
	var p fractions
	if err := q.Flatten(bg, child, p.record); err != nil {
		t.Fatal(err)
	}
	in, err := q.Info(bg, child)
	if err != nil {
		t.Fatal(err)
	}
	if in.BackingFile != "" || in.Format != QCOW2 || in.VirtualSize != 64*mib {
		t.Errorf("flattened child Info = %+v, want a standalone 64 MiB qcow2", in)
	}
	if len(p.v) == 0 || p.v[len(p.v)-1] != 1 {
		t.Errorf("Flatten progress %v, want it to end at 1", p.v)
	}
	if fi, _ := os.Stat(child); fi.Mode().Perm() != 0o640 {
		t.Errorf("flattened child has mode %v, want 0640 as before", fi.Mode().Perm())
	}
	// Without the master the child must still read the same.
	if err := os.Rename(master, master+".gone"); err != nil {
		t.Fatal(err)
	}
	sameContent(t, "flattened child without its master", guestView(t, child, QCOW2), want)
	if chain, err := q.Chain(bg, child); err != nil || len(chain) != 1 {
		t.Errorf("Chain of the flattened child = %+v, %v; want only itself", chain, err)
	}
	// Flattening a standalone image changes nothing.
	sum := fileDigest(t, child)
	if err := q.Flatten(bg, child, nil); err != nil || fileDigest(t, child) != sum {
		t.Errorf("Flatten of a standalone image: %v, or it changed the file", err)
	}
	wantNames(t, dir, "child.qcow2", "master.qcow2.gone")
}

// A child that a VM has open cannot be flattened; it stays as it was.
func TestFlattenInUse(t *testing.T) {
	q := requireQemuImg(t)
	dir := t.TempDir()
	master := filepath.Join(dir, "master.qcow2")
	child := filepath.Join(dir, "child.qcow2")
	if err := q.Create(bg, master, QCOW2, 64*mib); err != nil {
		t.Fatal(err)
	}
	if err := q.CreateChild(bg, child, master, QCOW2); err != nil {
		t.Fatal(err)
	}
	holdOpen(t, child, QCOW2)
	sum := fileDigest(t, child)
	if err := q.Flatten(bg, child, nil); !errors.Is(err, ErrInUse) {
		t.Errorf("Flatten of a child in use: %v, want ErrInUse", err)
	}
	if fileDigest(t, child) != sum {
		t.Error("the failed Flatten changed the child")
	}
	wantNames(t, dir, "child.qcow2", "master.qcow2")
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

// Under PID 1's reaper, qemu-img's success and failure still reach Convert, and Info
// (through hostcmd.Exec) still works.
func TestConvertUnderReaper(t *testing.T) {
	q := requireQemuImg(t)
	underReaper(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "disk.img")
	want := rawDisk(t, src, 8*mib, region{mib, mib})
	var p fractions
	if err := q.Convert(bg, src, Raw, filepath.Join(dir, "disk.qcow2"), QCOW2, p.record); err != nil {
		t.Fatalf("Convert under the reaper: %v", err)
	}
	if len(p.v) == 0 || p.v[len(p.v)-1] != 1 {
		t.Errorf("progress under the reaper: %v", p.v)
	}
	if in, err := q.Info(bg, filepath.Join(dir, "disk.qcow2")); err != nil || in.Format != QCOW2 {
		t.Errorf("Info under the reaper = %+v, %v", in, err)
	}
	if err := q.Convert(bg, src, VDI, filepath.Join(dir, "bad.qcow2"), QCOW2, nil); err == nil {
		t.Error("a failing qemu-img convert succeeded under the reaper")
	}
	// Back to raw through Convert too: a plain exec.Cmd would lose its exit to the reaper.
	if err := q.Convert(bg, filepath.Join(dir, "disk.qcow2"), QCOW2, filepath.Join(dir, "back.img"), Raw, nil); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "back.img"))
	if err != nil {
		t.Fatal(err)
	}
	sameContent(t, "converted under the reaper", got, want)
	wantNames(t, dir, "back.img", "disk.img", "disk.qcow2")
}
