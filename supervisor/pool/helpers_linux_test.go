package pool

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cairn-os/cairn/internal/testutil"
	"github.com/cairn-os/cairn/supervisor/hostcmd"
)

// run runs a program for the test's own set-up and fails the test if it fails.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// sparse makes a sparse file of size bytes in the test's temporary folder.
func sparse(t *testing.T, size int64) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return img
}

// newLoop attaches a new loop device to backing (a file or a device) and detaches it
// at the end of the test; extra are losetup options such as --partscan.
func newLoop(t *testing.T, backing string, extra ...string) string {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireProgram(t, "losetup")
	dev := run(t, "losetup", append(append([]string{"--find", "--show"}, extra...), backing)...)
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "--detach", dev).CombinedOutput(); err != nil {
			t.Errorf("detach %s: %v: %s", dev, err, out)
		}
	})
	return dev
}

// blankLoop makes a blank loop device of size bytes.
func blankLoop(t *testing.T, size int64) string {
	t.Helper()
	testutil.RequireRoot(t)
	return newLoop(t, sparse(t, size))
}

// unmountAtEnd unmounts everything at dir at the end of the test, before the
// temporary folder that holds dir is removed.
func unmountAtEnd(t *testing.T, dir string) {
	t.Cleanup(func() {
		for unix.Unmount(dir, 0) == nil {
		}
	})
}

// poolPath returns a pool path <tmp>/pools/<n> whose parent exists and that is
// unmounted at the end of the test.
func poolPath(t *testing.T, n string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pools")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, n)
	unmountAtEnd(t, p)
	return p
}

// isMounted reports whether dir is a mount point.
func isMounted(t *testing.T, dir string) bool {
	t.Helper()
	_, ok, err := mountAt(dir)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// fsTypeOf returns what blkid finds on dev ("" for nothing).
func fsTypeOf(t *testing.T, dev string) string {
	t.Helper()
	out, _ := exec.Command("blkid", "-c", "/dev/null", "-p", "-o", "value", "-s", "TYPE", dev).Output()
	return strings.TrimSpace(string(out))
}

func devOf(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Dev
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("read %s: %v", path, err)
	}
	return string(b)
}

// writeRandom writes n random bytes to path and syncs them to the disk.
func writeRandom(t *testing.T, path string, n int) {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		t.Fatal(err)
	}
}

func lookup(t *testing.T, name string, r hostcmd.Runner) Driver {
	t.Helper()
	d, err := Lookup(name, r)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Supported(context.Background()); err != nil {
		t.Skipf("%s: %v", name, err)
	}
	return d
}

// recorder is a hostcmd.Runner that records every command and lets a test answer
// some itself; the others run for real when real is set.
type recorder struct {
	mu     sync.Mutex
	calls  []string
	answer func(name string, args []string) (out []byte, handled bool, err error)
	real   hostcmd.Runner
}

func (r *recorder) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	r.mu.Lock()
	r.calls = append(r.calls, strings.Join(append([]string{name}, args...), " "))
	r.mu.Unlock()
	if r.answer != nil {
		if out, ok, err := r.answer(name, args); ok {
			return out, err
		}
	}
	if r.real != nil {
		return r.real.Run(ctx, name, args...)
	}
	return nil, errors.New("exit status 1")
}

func (r *recorder) ran(prefix string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.ContainsFunc(r.calls, func(c string) bool { return strings.HasPrefix(c, prefix) })
}

// wantErr fails unless err wraps sentinel and its message contains every part.
func wantErr(t *testing.T, what string, err, sentinel error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error; want %v", what, sentinel)
		return
	}
	if sentinel != nil && !errors.Is(err, sentinel) {
		t.Errorf("%s = %v; want it to wrap %v", what, err, sentinel)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("%s = %v; want it to say %q", what, err, p)
		}
	}
}
