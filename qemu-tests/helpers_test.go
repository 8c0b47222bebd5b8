package qemutests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairn-os/cairn/qemu-tests/lab"
	"github.com/cairn-os/cairn/qemu-tests/vm"
)

// requireQEMUTier skips a qemu tier test where it does not belong: under -short, and
// in the host tier's run of ./... (CAIRN_HOST_TESTS=1), which would only repeat it.
func requireQEMUTier(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("qemu tier: boots VMs for minutes; not with -short")
	}
	if os.Getenv("CAIRN_HOST_TESTS") == "1" {
		t.Skip("qemu tier: runs in `make test-qemu`, not in the host tier")
	}
	for _, p := range []string{vm.QEMU, "qemu-img"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("qemu tier: needs %s on PATH (`make deps` installs it)", p)
		}
	}
}

// logAccel says which accelerator the test's VMs use and why.
func logAccel(t *testing.T) {
	t.Helper()
	a, why := vm.AccelReason()
	t.Logf("accelerator %s: %s", a, why)
}

// requireISO returns the admin ISO, or skips the test when it has not been built.
func requireISO(t *testing.T) string {
	t.Helper()
	requireQEMUTier(t)
	iso := os.Getenv("CAIRN_ISO")
	if iso == "" {
		iso = filepath.Join("..", "build", "cairn.iso")
	}
	abs, err := filepath.Abs(iso)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(abs); err != nil {
		t.Skipf("no admin ISO at %s (build it with `make iso`, or set CAIRN_ISO)", abs)
	}
	logAccel(t)
	return abs
}

// artefacts is a test's folder build/qemu-tests/<TestName>/. A failed test keeps
// everything in it and logs the paths; a passing one keeps only the files named in
// keep (the screenshot).
type artefacts struct {
	dir  string
	keep []string
}

func newArtefacts(t *testing.T) *artefacts {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", "build", "qemu-tests"))
	if err != nil {
		t.Fatal(err)
	}
	a := &artefacts{dir: filepath.Join(root, strings.ReplaceAll(t.Name(), "/", "_"))}
	if err := os.RemoveAll(a.dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(a.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			var files []string
			filepath.WalkDir(a.dir, func(p string, d os.DirEntry, err error) error {
				if err == nil && !d.IsDir() && (strings.HasSuffix(p, ".log") || strings.HasSuffix(p, ".png")) {
					files = append(files, p)
				}
				return nil
			})
			t.Logf("artefacts kept in %s:\n  %s", a.dir, strings.Join(files, "\n  "))
			return
		}
		entries, _ := os.ReadDir(a.dir)
		for _, e := range entries {
			if !slices.Contains(a.keep, e.Name()) {
				os.RemoveAll(filepath.Join(a.dir, e.Name()))
			}
		}
		if len(a.keep) == 0 {
			os.Remove(a.dir)
		}
	})
	return a
}

// path returns a file in the folder and, with keep, keeps it after a pass too.
func (a *artefacts) path(name string, keep bool) string {
	if keep {
		a.keep = append(a.keep, name)
	}
	return filepath.Join(a.dir, name)
}

// newLab prepares a lab in the test's artefact folder on a free port; its VMs are
// killed when the test ends.
func newLab(t *testing.T, ctx context.Context, a *artefacts, iso string, fw vm.Firmware, debug bool) *lab.Lab {
	t.Helper()
	port, err := vm.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	l, err := lab.New(ctx, lab.Config{
		ISO: iso, Work: a.dir, Firmware: fw, Port: port,
		Settings: lab.NewSettings(lab.GeneratePassword(), debug),
		Logf:     t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Kill)
	return l
}

// fatal fails the test with err and the end of every VM's console.
func fatal(t *testing.T, l *lab.Lab, err error) {
	t.Helper()
	msg := fmt.Sprintf("%v\n%s", err, l.Tails(30))
	recordFailure(t, msg)
	t.Fatal(msg)
}

// failuresLog collects every fatal failure's message with the VMs' console tails:
// `make test-qemu` prints it last when the tier fails, where a CI summary that shows
// only the end of the output still has it (the tier's own output is filtered).
var failuresLog = filepath.Join("..", "build", "qemu-tests", "failures.log")

func recordFailure(t *testing.T, msg string) {
	f, err := os.OpenFile(failuresLog, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Logf("record failure: %v", err)
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "=== %s failed at %s:\n%s\n", t.Name(), time.Now().Format(time.TimeOnly), msg)
}

// Generous deadlines: under TCG on two shared cores everything is slow, and a test
// that fails only because the machine was busy teaches nothing.
const (
	adminBootTimeout = 10 * time.Minute
	nodeReadyTimeout = 10 * time.Minute
)

// newHub starts an L2 hub for the test's guests and closes it when the test ends.
func newHub(t *testing.T) *vm.Hub {
	t.Helper()
	hub, err := vm.NewHub(filepath.Join(t.TempDir(), "lan.sock"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hub.Close() })
	return hub
}
