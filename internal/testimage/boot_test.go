package testimage

import (
	"context"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/cairn-os/cairn/internal/testutil"
)

// bootOnce boots disk on bus, waits for the marker line and "ready", presses the
// power button and waits for "powering off" and qemu's exit. It returns the marker
// line and the time from qemu's start to "ready".
func bootOnce(t testing.TB, bus, disk, format string, extra ...string) (bootLine, time.Duration) {
	t.Helper()
	v := bootVM(t, bus, disk, format, extra...)
	m, off := v.wait(t, 0, MarkerLine)
	_, off = v.wait(t, off, ReadyLine)
	ready := time.Since(v.start)
	v.powerDown(t)
	v.wait(t, off, PowerOffLine)
	v.waitExit(t)
	return parseBootLine(t, m), ready
}

// TestBoot boots the image under qemu's TCG with machine type pc from a virtio-blk,
// a virtio-scsi and an IDE disk, and powers it off with the ACPI power button. The
// virtio disk boots twice, with a new marker set in between: the guest sees the new
// marker and counts the second boot on the same file. The scsi guest gets a host name
// through fw_cfg and a DHCP lease; on the IDE one a command is typed at the serial
// console's shell.
func TestBoot(t *testing.T) {
	qcow2, raw := testImage(t)
	testutil.RequireProgram(t, "qemu-system-x86_64")
	ctx := context.Background()

	t.Run("virtio", func(t *testing.T) {
		disk := filepath.Join(t.TempDir(), "disk.qcow2")
		if err := Overlay(ctx, qcow2, disk); err != nil {
			t.Fatal(err)
		}
		got, ready := bootOnce(t, "virtio", disk, "qcow2")
		t.Logf("first boot: ready %s after qemu started", ready.Round(100*time.Millisecond))
		if want := (bootLine{DefaultMarker, 1, "none"}); got != want {
			t.Errorf("first boot printed %+v, want %+v", got, want)
		}
		if n, err := Boots(ctx, disk); err != nil || n != 1 {
			t.Errorf("boots.txt on the disk after one boot = %d, %v; want 1", n, err)
		}

		marker := testutil.Name("changed-")
		if err := SetMarker(ctx, disk, marker); err != nil {
			t.Fatal(err)
		}
		got, ready = bootOnce(t, "virtio", disk, "qcow2")
		t.Logf("second boot: ready %s after qemu started", ready.Round(100*time.Millisecond))
		if want := (bootLine{marker, 2, "none"}); got != want {
			t.Errorf("second boot printed %+v, want %+v", got, want)
		}
		if m, err := Marker(ctx, qcow2); err != nil || m != DefaultMarker {
			t.Errorf("the cached image's marker is %q, %v after booting an overlay; want %q", m, err, DefaultMarker)
		}
	})

	t.Run("scsi", func(t *testing.T) {
		// A raw copy, a host name through fw_cfg as libvirt's <sysinfo type='fwcfg'>
		// passes it, and a virtio network card on qemu's user network.
		disk := filepath.Join(t.TempDir(), "disk.raw")
		copyFile(t, raw, disk)
		host := testutil.Name("vm-")
		v := bootVM(t, "scsi", disk, "raw", "-fw_cfg", "name=opt/cairn/hostname,string="+host,
			"-nic", "user,model=virtio-net-pci")
		m, off := v.wait(t, 0, MarkerLine)
		_, off = v.wait(t, off, ReadyLine)
		t.Logf("ready %s after qemu started", time.Since(v.start).Round(100*time.Millisecond))
		if got, want := parseBootLine(t, m), (bootLine{DefaultMarker, 1, host}); got != want {
			t.Errorf("boot printed %+v, want %+v", got, want)
		}
		// qemu's user network hands out 10.0.2.15 first.
		n, _ := v.wait(t, 0, NetLine)
		if n[2] != "10.0.2.15" {
			t.Errorf("guest got address %s on %s, want 10.0.2.15 from qemu's DHCP", n[2], n[1])
		}
		v.powerDown(t)
		v.wait(t, off, PowerOffLine)
		v.waitExit(t)
	})

	t.Run("ide", func(t *testing.T) {
		// A copy of the qcow2, and a command typed at the serial console's shell.
		disk := filepath.Join(t.TempDir(), "disk.qcow2")
		copyFile(t, qcow2, disk)
		v := bootVM(t, "ide", disk, "qcow2")
		m, off := v.wait(t, 0, MarkerLine)
		_, off = v.wait(t, off, ReadyLine)
		t.Logf("ready %s after qemu started", time.Since(v.start).Round(100*time.Millisecond))
		if got, want := parseBootLine(t, m), (bootLine{DefaultMarker, 1, "none"}); got != want {
			t.Errorf("boot printed %+v, want %+v", got, want)
		}
		v.typeLine(t, "echo shell-$((6 * 7)) $(cat /mnt/disk/boots.txt)")
		_, off = v.wait(t, off, regexp.MustCompile(`shell-42 1\r?\n`))
		v.powerDown(t)
		v.wait(t, off, PowerOffLine)
		v.waitExit(t)
		if n, err := Boots(ctx, disk); err != nil || n != 1 {
			t.Errorf("boots.txt on the disk after one boot = %d, %v; want 1", n, err)
		}
	})
}

// BenchmarkBootToReady measures qemu's start to "cairn-test: ready" under TCG from a
// virtio disk (an overlay on the cached image), then powers the guest off outside the
// timer. It reports the boot time as s/boot.
func BenchmarkBootToReady(b *testing.B) {
	qcow2, _ := testImage(b)
	testutil.RequireProgram(b, "qemu-system-x86_64")
	var total time.Duration
	for i := 0; i < b.N; i++ {
		disk := filepath.Join(b.TempDir(), "disk.qcow2")
		if err := Overlay(context.Background(), qcow2, disk); err != nil {
			b.Fatal(err)
		}
		v := bootVM(b, "virtio", disk, "qcow2")
		_, off := v.wait(b, 0, ReadyLine)
		total += time.Since(v.start)
		v.powerDown(b)
		v.wait(b, off, PowerOffLine)
		v.waitExit(b)
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/boot")
}
