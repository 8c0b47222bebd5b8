package agent

import (
	"net"
	"os"
	"time"
)

// Skipper is the part of testing.TB that RequireLibvirt needs; the package does not
// import testing, so that the supervisor does not link it.
type Skipper interface {
	Helper()
	Skipf(format string, args ...any)
}

// RequireLibvirt skips the test unless the host's libvirtd answers on its socket, and
// returns the socket's path. `make test` starts libvirtd (as root) before the tests.
func RequireLibvirt(t Skipper) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root to use the system libvirtd (run `make test`)")
	}
	c, err := net.DialTimeout("unix", DefaultLibvirtSocket, 2*time.Second)
	if err != nil {
		t.Skipf("needs a running libvirtd at %s (`make test` starts it: virtlogd -d; libvirtd -d): %v", DefaultLibvirtSocket, err)
		return ""
	}
	c.Close()
	return DefaultLibvirtSocket
}
