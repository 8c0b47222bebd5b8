// Package testutil holds the helpers Cairn's tests share: skipping with a clear reason
// when the test needs root or a program, names that never collide, loop devices.
package testutil

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// RequireRoot skips the test when it does not run as root. `make test` runs as root,
// so in CI nothing skips.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (run `make test`, which runs the host tier as root)")
	}
}

// RequireProgram skips the test when a program is not on PATH and returns its path.
func RequireProgram(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("needs %s on PATH (`make deps` installs it)", name)
	}
	return p
}

// Name returns prefix plus a random hex suffix, short enough for an interface name
// (at most 15 bytes when prefix has at most 7).
func Name(prefix string) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return prefix + hex.EncodeToString(b)
}

// LoopDevice attaches a blank sparse file of size bytes to a new loop device (root)
// and, when the test ends, unmounts whatever is left mounted from it and detaches it.
func LoopDevice(t testing.TB, size int64) string {
	t.Helper()
	RequireRoot(t)
	RequireProgram(t, "losetup")
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", img).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		exec.Command("umount", "--lazy", dev).Run()
		if out, err := exec.Command("losetup", "--detach", dev).CombinedOutput(); err != nil {
			t.Errorf("detach %s: %v: %s", dev, err, out)
		}
	})
	return dev
}
