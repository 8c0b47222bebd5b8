package testutil

import (
	"context"
	"os/exec"
	"strings"
	"testing"
)

// Netns is a network namespace made for one test, joined to the host's namespace by a
// veth pair: HostIf stays in the test's own namespace, NsIf lives inside Name.
type Netns struct {
	Name   string
	HostIf string
	NsIf   string
}

// NewNetns makes a namespace and a veth pair, puts hostCIDR on the host end and nsCIDR
// (empty for none) on the namespace end, brings both up, and removes everything in
// t.Cleanup. It needs root and `ip` (iproute2).
func NewNetns(t testing.TB, hostCIDR, nsCIDR string) *Netns {
	t.Helper()
	RequireRoot(t)
	RequireProgram(t, "ip")
	n := &Netns{Name: Name("cairn-"), HostIf: Name("ch"), NsIf: Name("cn")}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", n.Name)
	t.Cleanup(func() {
		exec.Command("ip", "link", "del", n.HostIf).Run()
		exec.Command("ip", "netns", "del", n.Name).Run()
	})
	run("link", "add", n.HostIf, "type", "veth", "peer", "name", n.NsIf)
	run("link", "set", n.NsIf, "netns", n.Name)
	if hostCIDR != "" {
		run("addr", "add", hostCIDR, "dev", n.HostIf)
	}
	run("link", "set", n.HostIf, "up")
	run("-n", n.Name, "link", "set", "lo", "up")
	if nsCIDR != "" {
		run("-n", n.Name, "addr", "add", nsCIDR, "dev", n.NsIf)
	}
	run("-n", n.Name, "link", "set", n.NsIf, "up")
	return n
}

// Command returns a command that runs inside the namespace.
func (n *Netns) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}
