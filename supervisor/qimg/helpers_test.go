package qimg

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-os/cairn/internal/testutil"
	"golang.org/x/sys/unix"
)

const mib = 1 << 20

var bg = context.Background()

func requireQemuImg(t *testing.T) Tool {
	t.Helper()
	testutil.RequireProgram(t, "qemu-img")
	return Tool{}
}

// run runs a helper program (qemu-img, qemu-io, xorriso) for the test's own set-up.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// region is a stretch of random data at an offset of a test disk.
type region struct{ off, len int64 }

// rawDisk writes a sparse raw image of size bytes holding random data in regions and
// returns the disk's whole content, as a VM would read it.
func rawDisk(t *testing.T, path string, size int64, regions ...region) []byte {
	t.Helper()
	content := make([]byte, size)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for _, r := range regions {
		b := content[r.off : r.off+r.len]
		rand.Read(b)
		if _, err := f.WriteAt(b, r.off); err != nil {
			t.Fatal(err)
		}
	}
	return content
}

// guestView returns what a VM would read from the image: its content converted to
// raw by qemu-img itself (not by the code under test).
func guestView(t *testing.T, path string, f Format) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "view.raw")
	run(t, "qemu-img", "convert", "-f", f.QemuName(), "-O", "raw", path, out)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sameContent(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d bytes, want %d", what, len(got), len(want))
	}
	if !bytes.Equal(got, want) {
		i := 0
		for got[i] == want[i] {
			i++
		}
		t.Fatalf("%s: content differs from byte %d on", what, i)
	}
}

// qemuIO writes into an image the way a VM would: `qemu-io -c "write -P 0xcd off len"`.
func qemuIO(t *testing.T, path string, f Format, pattern byte, off, n int64) {
	t.Helper()
	testutil.RequireProgram(t, "qemu-io")
	run(t, "qemu-io", "-f", f.QemuName(), "-c",
		"write -P "+strconv.Itoa(int(pattern))+" "+strconv.FormatInt(off, 10)+" "+strconv.FormatInt(n, 10), path)
}

func fileDigest(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// dirNames lists a folder, to see that nothing (no temporary folder) was left behind.
func dirNames(t *testing.T, dir string) []string {
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

func wantNames(t *testing.T, dir string, want ...string) {
	t.Helper()
	slices.Sort(want)
	if got := dirNames(t, dir); !slices.Equal(got, want) {
		t.Errorf("%s holds %v, want %v", dir, got, want)
	}
}

// fractions records progress calls.
type fractions struct {
	mu sync.Mutex
	v  []float64
}

func (p *fractions) record(f float64) {
	p.mu.Lock()
	p.v = append(p.v, f)
	p.mu.Unlock()
}

// holdOpen keeps an image open for writing in another process, as a running VM does,
// until the test ends; it returns once qemu's lock is taken.
func holdOpen(t *testing.T, path string, f Format) {
	t.Helper()
	testutil.RequireProgram(t, "qemu-io")
	cmd := exec.Command("qemu-io", "-f", f.QemuName(), "-c", "sleep 600000", path)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	// A loaded machine can take a while to start qemu-io: wait for the lock by the
	// clock, and give up at once if qemu-io died. The probe must not take a lock
	// itself: `qemu-img info` did, and a qemu-io starting during it failed to get its
	// write lock.
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("qemu-io exited before it took the lock on %s: %v: %s", path, err, out.String())
		default:
		}
		if imageLocked(t, path) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("qemu-io did not take the lock on %s within 90 s", path)
}

// imageLocked reports whether another process holds one of qemu's image locks on
// path (open file description locks on its permission and shared-permission bytes,
// offsets 100–299), asking with F_OFD_GETLK, which takes no lock.
func imageLocked(t *testing.T, path string) bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart, Start: 100, Len: 200}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &lk); err != nil {
		t.Fatal(err)
	}
	return lk.Type != unix.F_UNLCK
}
