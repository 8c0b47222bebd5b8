package testimage

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
	"libvirt.org/go/libvirtxml"

	"github.com/cairn-os/cairn/internal/testutil"
)

const libvirtSocket = "/var/run/libvirt/libvirt-sock"

// domainXML describes a TCG guest (machine pc, ACPI) booting disk from bus, with its
// serial console in the file log and hostname passed through fw_cfg.
func domainXML(name, disk, format, bus, log, hostname string) (string, error) {
	target := map[string]string{"virtio": "vda", "scsi": "sda", "ide": "hda"}[bus]
	d := &libvirtxml.Domain{
		Type:   "qemu",
		Name:   name,
		Memory: &libvirtxml.DomainMemory{Value: 256, Unit: "MiB"},
		VCPU:   &libvirtxml.DomainVCPU{Value: 1},
		OS: &libvirtxml.DomainOS{
			Type:        &libvirtxml.DomainOSType{Arch: "x86_64", Machine: "pc", Type: "hvm"},
			BootDevices: []libvirtxml.DomainBootDevice{{Dev: "hd"}},
		},
		Features: &libvirtxml.DomainFeatureList{ACPI: &libvirtxml.DomainFeature{}},
		SysInfo: []libvirtxml.DomainSysInfo{{FWCfg: &libvirtxml.DomainSysInfoFWCfg{
			Entry: []libvirtxml.DomainSysInfoEntry{{Name: "opt/cairn/hostname", Value: hostname}},
		}}},
		OnPoweroff: "destroy",
		OnReboot:   "destroy",
		OnCrash:    "destroy",
		Devices: &libvirtxml.DomainDeviceList{
			Disks: []libvirtxml.DomainDisk{{
				Device: "disk",
				Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: format},
				Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: disk}},
				Target: &libvirtxml.DomainDiskTarget{Dev: target, Bus: bus},
			}},
			Serials: []libvirtxml.DomainSerial{{
				Source: &libvirtxml.DomainChardevSource{File: &libvirtxml.DomainChardevSourceFile{Path: log}},
			}},
		},
	}
	if bus == "scsi" {
		d.Devices.Controllers = []libvirtxml.DomainController{{Type: "scsi", Model: "virtio-scsi"}}
	}
	return d.Marshal()
}

// TestLibvirt boots the image the way Cairn runs it: through the host's libvirtd
// (domain type qemu, machine pc) from a virtio, virtio-scsi and IDE disk, and shuts
// it down with virsh shutdown's ACPI power button. The guest reports the host name
// given in the domain's fw_cfg sysinfo and the domain's UUID.
func TestLibvirt(t *testing.T) {
	testutil.RequireRoot(t)
	if _, err := os.Stat(libvirtSocket); err != nil {
		t.Skipf("needs libvirtd: %v (run `make libvirtd`)", err)
	}
	qcow2, _ := testImage(t)

	l := libvirt.NewWithDialer(dialers.NewLocal(dialers.WithSocket(libvirtSocket), dialers.WithLocalTimeout(10*time.Second)))
	if err := l.Connect(); err != nil {
		t.Skipf("needs libvirtd: %v (run `make libvirtd`)", err)
	}
	t.Cleanup(func() { l.Disconnect() })

	// The engine's host tests (hosttests) boot this image through libvirt on every
	// bus; here one bus shows the image's own contract under libvirt.
	for _, bus := range []string{"virtio"} {
		t.Run(bus, func(t *testing.T) {
			// libvirt's qemu runs as libvirt-qemu: its folder must be open to it, and
			// the disk a copy (the cache's folder under /root is not).
			dir := t.TempDir()
			for _, d := range []string{filepath.Dir(dir), dir} {
				if err := os.Chmod(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			disk := filepath.Join(dir, "disk.qcow2")
			copyFile(t, qcow2, disk)
			log := filepath.Join(dir, "serial.log")
			name := testutil.Name("cairn-ti-")
			x, err := domainXML(name, disk, "qcow2", bus, log, name)
			if err != nil {
				t.Fatal(err)
			}
			dom, err := l.DomainDefineXML(x)
			if err != nil {
				t.Fatalf("define domain: %v", err)
			}
			t.Cleanup(func() {
				l.DomainDestroy(dom)
				if err := l.DomainUndefineFlags(dom, 0); err != nil {
					t.Errorf("undefine %s: %v", name, err)
				}
			})
			start := time.Now()
			if err := l.DomainCreate(dom); err != nil {
				t.Fatalf("start domain: %v", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
			defer cancel()
			m, off, err := WaitForLine(ctx, log, 0, MarkerLine)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := parseBootLine(t, m), (bootLine{DefaultMarker, 1, name}); got != want {
				t.Errorf("boot printed %+v, want %+v", got, want)
			}
			u, off, err := WaitForLine(ctx, log, off, UUIDLine)
			if err != nil {
				t.Fatal(err)
			}
			if want := uuidString(dom.UUID); u[1] != want {
				t.Errorf("guest reports UUID %s, the domain's is %s", u[1], want)
			}
			if _, off, err = WaitForLine(ctx, log, off, ReadyLine); err != nil {
				t.Fatal(err)
			}
			t.Logf("ready %s after the domain started", time.Since(start).Round(100*time.Millisecond))
			if err := l.DomainShutdown(dom); err != nil {
				t.Fatalf("shut down: %v", err)
			}
			if _, _, err = WaitForLine(ctx, log, off, PowerOffLine); err != nil {
				t.Fatal(err)
			}
			for {
				state, _, err := l.DomainGetState(dom, 0)
				if err != nil {
					t.Fatal(err)
				}
				if libvirt.DomainState(state) == libvirt.DomainShutoff {
					break
				}
				select {
				case <-ctx.Done():
					t.Fatalf("domain is in state %d %s after the power button, not shut off", state, bootTimeout)
				case <-time.After(200 * time.Millisecond):
				}
			}
			t.Logf("shut off %s after the domain started", time.Since(start).Round(100*time.Millisecond))
			if n, err := Boots(ctx, disk); err != nil || n != 1 {
				t.Errorf("boots.txt on the disk after one boot = %d, %v; want 1", n, err)
			}
		})
	}
}

func uuidString(u libvirt.UUID) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}
