package virt

import (
	"context"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cairn-os/cairn/internal/testimage"
	"github.com/cairn-os/cairn/internal/testutil"
	"github.com/digitalocean/go-libvirt"
)

// TestHostBootAndShutdown boots the busybox test image through libvirt, sees it get
// ready on the serial console (with the domain's UUID as its SMBIOS UUID), reboots it
// through ACPI and powers it off with the ACPI button: the guest shuts down and the
// stopped event says so.
func TestHostBootAndShutdown(t *testing.T) {
	c := hostConn(t)
	ctx := context.Background()
	d := testDomain(t)
	useTestImage(t, &d)
	define(t, c, d)
	ev := events(t, c)

	dom, err := c.lookup(ctx, d.UUID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.l.DomainCreateWithFlags(dom, uint32(libvirt.DomainStartPaused)); err != nil {
		t.Fatal(err)
	}
	serial, err := net.Dial("unix", d.SerialSocket())
	if err != nil {
		t.Fatal(err)
	}
	defer serial.Close()
	if err := c.Resume(ctx, d.UUID); err != nil {
		t.Fatal(err)
	}
	out := readUntil(t, serial, "cairn-test: ready")
	if m := testimage.UUIDLine.FindStringSubmatch(out); m == nil || !strings.EqualFold(m[1], d.UUID) {
		t.Errorf("guest's UUID line %v, want uuid=%s", m, d.UUID)
	}
	wantState(t, c, d.UUID, StateRunning)

	// An ACPI reboot: the guest powers off and libvirt starts it again in the same
	// qemu, so the console stays connected and sees the second boot.
	if err := c.Reboot(ctx, d.UUID); err != nil {
		t.Fatal(err)
	}
	readUntil(t, serial, "cairn-test: powering off")
	out = readUntil(t, serial, "cairn-test: ready")
	if m := testimage.MarkerLine.FindStringSubmatch(out); m == nil || m[2] != "2" {
		t.Errorf("after the reboot the guest printed %v, want its second boot", m)
	}
	wantState(t, c, d.UUID, StateRunning)

	if err := c.Shutdown(ctx, d.UUID); err != nil {
		t.Fatal(err)
	}
	readUntil(t, serial, "cairn-test: powering off")
	if e := waitEvent(t, ev, d.UUID, "stopped", "shutdown"); e.State != StateShutoff {
		t.Errorf("stopped event %+v", e)
	}
	wantState(t, c, d.UUID, StateShutoff)
	log, err := os.ReadFile(d.SerialLog())
	if err != nil || !strings.Contains(string(log), "cairn-test: ready") {
		t.Errorf("serial log has no ready line (%v)", err)
	}
}

// useTestImage makes the busybox test image (internal/testimage) d's disk, and gives
// d the memory its kernel needs.
func useTestImage(t *testing.T, d *Domain) {
	t.Helper()
	for _, p := range []string{"mkfs.vfat", "syslinux", "mcopy", "mtype", "qemu-img", "qemu-io", "dpkg-deb", "dpkg-query"} {
		testutil.RequireProgram(t, p)
	}
	repo, err := testimage.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cached, err := testimage.Build(ctx, repo)
	if err != nil {
		t.Fatal(err)
	}
	d.MemoryMiB = 128 // a Debian kernel and its initrd do not fit in 64
	// A copy where qemu can read it: the cache is under root's home.
	copyFile(t, cached, d.Disks[0].Path)
}

// copyFile copies src to dst (mode 0644).
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
