// Package testutil holds the helpers Cairn's tests share: skipping with a clear reason
// when the test needs root or a program, and names that never collide.
package testutil

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
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
