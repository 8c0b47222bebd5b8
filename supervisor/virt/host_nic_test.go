package virt

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairn-os/cairn/internal/testimage"
	"github.com/cairn-os/cairn/internal/testutil"
	"github.com/cairn-os/cairn/supervisor/hostcmd"
	"github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"
)

// TestHostNICHotPlug plugs a NIC on a bridge into the running test guest and pulls
// it again, against the host's libvirtd: the guest sees the card with its MAC address
// and the MTU of networks carried over VXLAN, its frames reach the bridge, and it sees
// the card go. A NIC added while the domain is shut off is there at the next start.
func TestHostNICHotPlug(t *testing.T) {
	c := hostConn(t)
	ctx := context.Background()
	br := testBridge(t)
	d := testDomain(t)
	d.NICs = nil
	useTestImage(t, &d)
	define(t, c, d)
	console := &serialLog{path: d.SerialLog()}

	start := time.Now()
	if err := c.Start(ctx, d.UUID); err != nil {
		t.Fatal(err)
	}
	console.wait(t, testimage.ReadyLine)
	t.Logf("guest ready %s after Start", time.Since(start).Round(100*time.Millisecond))

	nic := NIC{MAC: newMAC(t), Bridge: br, MTU: 1450}
	start = time.Now()
	if err := c.AttachNIC(ctx, d.UUID, nic); err != nil {
		t.Fatal(err)
	}
	t.Logf("AttachNIC returned after %s", time.Since(start).Round(10*time.Millisecond))
	m := console.wait(t, testimage.NICLine)
	t.Logf("guest printed %q %s after AttachNIC began", m[0], time.Since(start).Round(100*time.Millisecond))
	if m[2] != nic.MAC || m[3] != "1450" {
		t.Errorf("guest saw NIC %s with MAC %s and MTU %s, want %s and 1450", m[1], m[2], m[3], nic.MAC)
	}
	guestIf := m[1]
	for _, which := range []libvirt.DomainXMLFlags{0, libvirt.DomainXMLInactive} {
		x := findNIC(liveDef(t, c, d.UUID, which), nic.MAC)
		if x == nil {
			t.Fatalf("domain XML (flags %d) has no interface with MAC %s", which, nic.MAC)
		}
		if x.Source == nil || x.Source.Bridge == nil || x.Source.Bridge.Bridge != br || x.MTU == nil || x.MTU.Size != 1450 {
			t.Errorf("interface in domain XML (flags %d) = %s, want one on bridge %s with MTU 1450", which, marshalOrErr(*x), br)
		}
	}
	// The host's side: libvirt's tap device is a port of the bridge, has the MTU, and
	// carries the guest's frames (its DHCP requests, which nobody answers here).
	x := findNIC(liveDef(t, c, d.UUID, 0), nic.MAC)
	if x.Target == nil || x.Target.Dev == "" {
		t.Fatalf("running domain's interface has no tap device: %s", marshalOrErr(*x))
	}
	tap := x.Target.Dev
	if master, err := os.Readlink("/sys/class/net/" + tap + "/master"); err != nil || filepath.Base(master) != br {
		t.Errorf("tap %s is a port of %q (%v), want %s", tap, filepath.Base(master), err, br)
	}
	if mtu := sysNet(t, tap, "mtu"); mtu != 1450 {
		t.Errorf("tap %s has MTU %d, want 1450", tap, mtu)
	}
	waitFor(t, "frames from the guest on tap "+tap, func() bool { return sysNet(t, tap, "statistics/rx_packets") > 0 })

	if err := c.AttachNIC(ctx, d.UUID, NIC{MAC: strings.ToUpper(nic.MAC), Bridge: br}); !errors.Is(err, ErrExists) {
		t.Errorf("attaching a second NIC with the same MAC: %v, want ErrExists", err)
	}
	if err := c.AttachNIC(ctx, d.UUID, NIC{MAC: newMAC(t), Bridge: br, MTU: 100}); !errors.Is(err, ErrInvalid) {
		t.Errorf("attaching a NIC with MTU 100: %v, want ErrInvalid", err)
	}
	other := newMAC(t)
	if err := c.DetachNIC(ctx, d.UUID, other); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), nic.MAC) {
		t.Errorf("detaching a NIC the domain does not have: %v, want ErrNotFound naming %s", err, nic.MAC)
	}

	start = time.Now()
	if err := c.DetachNIC(ctx, d.UUID, nic.MAC); err != nil {
		t.Fatal(err)
	}
	t.Logf("DetachNIC returned after %s", time.Since(start).Round(10*time.Millisecond))
	for _, which := range []libvirt.DomainXMLFlags{0, libvirt.DomainXMLInactive} {
		if x := findNIC(liveDef(t, c, d.UUID, which), nic.MAC); x != nil {
			t.Errorf("domain XML (flags %d) still has the detached NIC: %s", which, marshalOrErr(*x))
		}
	}
	if _, err := os.Stat("/sys/class/net/" + tap); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("tap %s is still on the host after DetachNIC (%v)", tap, err)
	}
	m = console.wait(t, testimage.NICGoneLine)
	t.Logf("guest printed %q %s after DetachNIC began", m[0], time.Since(start).Round(100*time.Millisecond))
	if m[1] != guestIf {
		t.Errorf("guest says %s went, want %s", m[1], guestIf)
	}
	if err := c.DetachNIC(ctx, d.UUID, nic.MAC); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "no NICs") {
		t.Errorf("detaching the NIC twice: %v, want ErrNotFound saying the domain has no NICs", err)
	}

	// Shut off, a NIC goes into the definition only, and the next start has it.
	if err := c.Destroy(ctx, d.UUID); err != nil {
		t.Fatal(err)
	}
	wantState(t, c, d.UUID, StateShutoff)
	cold := NIC{MAC: newMAC(t), Bridge: br, MTU: 1450}
	if err := c.AttachNIC(ctx, d.UUID, cold); err != nil {
		t.Fatal(err)
	}
	wantState(t, c, d.UUID, StateShutoff)
	if findNIC(liveDef(t, c, d.UUID, libvirt.DomainXMLInactive), cold.MAC) == nil {
		t.Fatalf("NIC attached while shut off is not in the definition")
	}
	if err := c.Start(ctx, d.UUID); err != nil {
		t.Fatal(err)
	}
	m = console.wait(t, testimage.NICLine)
	if m[2] != cold.MAC || m[3] != "1450" {
		t.Errorf("after the start the guest saw NIC %s with MAC %s and MTU %s, want %s and 1450", m[1], m[2], m[3], cold.MAC)
	}
	console.wait(t, testimage.ReadyLine)
	if findNIC(liveDef(t, c, d.UUID, 0), cold.MAC) == nil {
		t.Errorf("running domain has no NIC %s after the start", cold.MAC)
	}
}

// testBridge makes a Linux bridge in the host's namespace, up and without an address
// (it carries only the test guest's frames), and deletes it when the test ends.
func testBridge(t *testing.T) string {
	t.Helper()
	testutil.RequireProgram(t, "ip")
	name := testutil.Name("cbt")
	ip := func(args ...string) error {
		_, err := (hostcmd.Exec{}).Run(context.Background(), "ip", args...)
		return err
	}
	if err := ip("link", "add", name, "type", "bridge"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ip("link", "del", name); err != nil {
			t.Errorf("clean-up: %v", err)
		}
	})
	if err := ip("link", "set", name, "up"); err != nil {
		t.Fatal(err)
	}
	return name
}

// serialLog follows a domain's serial log, each wait going on from where the last
// match ended.
type serialLog struct {
	path string
	off  int
}

func (l *serialLog) wait(t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	m, off, err := testimage.WaitForLine(ctx, l.path, l.off, re)
	if err != nil {
		t.Fatal(err)
	}
	l.off = off
	return m
}

// sysNet reads a number from /sys/class/net/<dev>/<file>.
func sysNet(t *testing.T, dev, file string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/sys/class/net", dev, file))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// waitFor polls ok until it holds, failing the test after waitLimit.
func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %s", what, waitLimit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func marshalOrErr(x libvirtxml.DomainInterface) string {
	s, err := x.Marshal()
	if err != nil {
		return err.Error()
	}
	return s
}

// TestHostNICNotReleased pulls a NIC from a running domain without an OS, which never
// answers the ACPI eject request: DetachNIC says so with ErrNotReleased, the NIC is
// gone from the definition and stays in the running domain, and its MAC address is
// not given to another NIC until the domain stops.
func TestHostNICNotReleased(t *testing.T) {
	c := hostConn(t)
	ctx := context.Background()
	br := testBridge(t)
	d := testDomain(t)
	d.NICs = nil
	define(t, c, d)
	if err := c.Start(ctx, d.UUID); err != nil {
		t.Fatal(err)
	}
	nic := NIC{MAC: newMAC(t), Bridge: br}
	if err := c.AttachNIC(ctx, d.UUID, nic); err != nil {
		t.Fatal(err)
	}
	saved := nicReleaseWait
	nicReleaseWait = 6 * time.Second
	t.Cleanup(func() { nicReleaseWait = saved })
	start := time.Now()
	err := c.DetachNIC(ctx, d.UUID, nic.MAC)
	t.Logf("DetachNIC returned after %s: %v", time.Since(start).Round(10*time.Millisecond), err)
	if !errors.Is(err, ErrNotReleased) {
		t.Fatalf("DetachNIC from a guest that does not release it: %v, want ErrNotReleased", err)
	}
	if findNIC(liveDef(t, c, d.UUID, libvirt.DomainXMLInactive), nic.MAC) != nil {
		t.Error("the definition still has the NIC")
	}
	if findNIC(liveDef(t, c, d.UUID, 0), nic.MAC) == nil {
		t.Error("the running domain lost the NIC the guest did not release")
	}
	if err := c.AttachNIC(ctx, d.UUID, nic); !errors.Is(err, ErrExists) {
		t.Errorf("attaching the MAC of the unreleased NIC again: %v, want ErrExists", err)
	}
	if err := c.Destroy(ctx, d.UUID); err != nil {
		t.Fatal(err)
	}
	if err := c.AttachNIC(ctx, d.UUID, nic); err != nil {
		t.Errorf("attaching the MAC again after the domain stopped: %v", err)
	}
}
