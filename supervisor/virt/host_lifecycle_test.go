package virt

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-os/cairn/internal/testutil"
	"github.com/cairn-os/cairn/supervisor/hostcmd"
	"github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"
)

// TestHostLifecycle drives a domain without an OS through everything a user can do
// to a server, against the host's libvirtd, and checks what libvirt then reports.
func TestHostLifecycle(t *testing.T) {
	c := hostConn(t)
	ctx := context.Background()
	ev := events(t, c)
	d := testDomain(t)

	define(t, c, d)
	wantState(t, c, d.UUID, StateShutoff)
	list, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if list[d.UUID] != StateShutoff {
		t.Fatalf("List()[%s] = %q, want shutoff (list: %v)", d.UUID, list[d.UUID], list)
	}

	// Redefining the same UUID updates the definition.
	d.MemoryMiB = 96
	if err := c.Define(ctx, d); err != nil {
		t.Fatal(err)
	}
	def := liveDef(t, c, d.UUID, libvirt.DomainXMLInactive)
	if def.Memory.Value != 96*1024 {
		t.Fatalf("memory after redefining = %d %s, want 96 MiB", def.Memory.Value, def.Memory.Unit)
	}

	if err := c.Start(ctx, d.UUID); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, ev, d.UUID, "started", "booted")
	wantState(t, c, d.UUID, StateRunning)
	if err := c.Start(ctx, d.UUID); !errors.Is(err, ErrInvalid) {
		t.Errorf("starting a running domain: %v, want ErrInvalid", err)
	}

	if err := c.Suspend(ctx, d.UUID); err != nil {
		t.Fatal(err)
	}
	if e := waitEvent(t, ev, d.UUID, "suspended", "paused"); e.State != StatePaused {
		t.Errorf("suspended event state %s", e.State)
	}
	wantState(t, c, d.UUID, StatePaused)
	if err := c.Resume(ctx, d.UUID); err != nil {
		t.Fatal(err)
	}
	if e := waitEvent(t, ev, d.UUID, "resumed", "unpaused"); e.State != StateRunning {
		t.Errorf("resumed event state %s", e.State)
	}
	wantState(t, c, d.UUID, StateRunning)

	t.Run("disk hot-plug", func(t *testing.T) {
		dir := filepath.Dir(d.Disks[0].Path)
		disk := func(name string, bus Bus) Disk {
			dk := Disk{Path: filepath.Join(dir, name+".qcow2"), Format: "qcow2", Bus: bus, Serial: "img-" + name}
			qemuImg(t, "qcow2", dk.Path, "8M")
			return dk
		}
		// where returns the disk's target in the running domain and in the definition.
		where := func(dk Disk) (live, config string) {
			for i, which := range []libvirt.DomainXMLFlags{0, libvirt.DomainXMLInactive} {
				for _, x := range liveDef(t, c, d.UUID, which).Devices.Disks {
					if diskFile(x) == dk.Path {
						if x.Serial != dk.Serial {
							t.Errorf("%s has serial %q, want %q", dk.Path, x.Serial, dk.Serial)
						}
						if i == 0 {
							live = x.Target.Dev
						} else {
							config = x.Target.Dev
						}
					}
				}
			}
			return live, config
		}
		want := func(dk Disk, live, config string) {
			t.Helper()
			if l, c := where(dk); l != live || c != config {
				t.Fatalf("%s is at %q (running) and %q (definition), want %q and %q", filepath.Base(dk.Path), l, c, live, config)
			}
		}

		s1, s2, s3 := disk("s1", BusSCSI), disk("s2", BusSCSI), disk("s3", BusSCSI)
		if err := c.AttachDisk(ctx, d.UUID, s1, 0); err != nil {
			t.Fatal(err)
		}
		want(s1, "sda", "sda")
		if ctrl := scsiModel(liveDef(t, c, d.UUID, 0)); ctrl != "virtio-scsi" {
			t.Errorf("running domain's scsi controller = %q, want virtio-scsi", ctrl)
		}
		if err := c.AttachDisk(ctx, d.UUID, s2, 1); err != nil {
			t.Fatal(err)
		}
		want(s2, "sdb", "sdb")
		if err := c.AttachDisk(ctx, d.UUID, s2, 2); !errors.Is(err, ErrExists) {
			t.Errorf("attaching the same image twice: %v, want ErrExists", err)
		}
		// Found by its path, whatever index the caller counts.
		if err := c.DetachDisk(ctx, d.UUID, s1, 3); err != nil {
			t.Fatal(err)
		}
		want(s1, "", "")
		want(s2, "sdb", "sdb")
		// The index names a taken target: the first free one is used.
		if err := c.AttachDisk(ctx, d.UUID, s3, 1); err != nil {
			t.Fatal(err)
		}
		want(s3, "sda", "sda")
		for _, dk := range []Disk{s2, s3} {
			if err := c.DetachDisk(ctx, d.UUID, dk, 0); err != nil {
				t.Fatal(err)
			}
			want(dk, "", "")
		}
		if err := c.DetachDisk(ctx, d.UUID, s3, 0); !errors.Is(err, ErrNotFound) {
			t.Errorf("detaching a disk the server does not have: %v, want ErrNotFound", err)
		}

		// Without an OS nothing releases a virtio disk: it stays in the running
		// domain, so the next virtio disk must not take its target.
		v1, v2 := disk("v1", BusVirtio), disk("v2", BusVirtio)
		if err := c.AttachDisk(ctx, d.UUID, v1, 1); err != nil {
			t.Fatal(err)
		}
		want(v1, "vdb", "vdb")
		if err := c.DetachDisk(ctx, d.UUID, v1, 1); err != nil {
			t.Fatal(err)
		}
		want(v1, "vdb", "")
		if err := c.AttachDisk(ctx, d.UUID, v2, 1); err != nil {
			t.Fatal(err)
		}
		want(v2, "vdc", "vdc")

		// ide cannot be hot-plugged: the error says so before libvirt does.
		if err := c.AttachDisk(ctx, d.UUID, Disk{Path: s1.Path, Format: "qcow2", Bus: BusIDE}, 0); !errors.Is(err, ErrInvalid) {
			t.Errorf("attaching an ide disk to a running domain: %v, want ErrInvalid", err)
		}
	})

	t.Run("cdrom media", func(t *testing.T) {
		testutil.RequireProgram(t, "xorriso")
		dir := filepath.Dir(d.Disks[0].Path)
		os.MkdirAll(filepath.Join(dir, "iso"), 0o755)
		os.WriteFile(filepath.Join(dir, "iso", "hello.txt"), []byte("hello\n"), 0o644)
		iso := filepath.Join(dir, "test.iso")
		if _, err := (hostcmd.Exec{}).Run(ctx, "xorriso", "-as", "mkisofs", "-quiet", "-V", "CAIRNTEST", "-o", iso, filepath.Join(dir, "iso")); err != nil {
			t.Fatal(err)
		}
		if err := c.ChangeMedia(ctx, d.UUID, iso); err != nil {
			t.Fatal(err)
		}
		for _, which := range []libvirt.DomainXMLFlags{0, libvirt.DomainXMLInactive} {
			cd := findDisk(liveDef(t, c, d.UUID, which), "hdc")
			if cd == nil || cd.Source == nil || cd.Source.File == nil || cd.Source.File.File != iso {
				t.Fatalf("after inserting, hdc (xml flags %d) = %+v", which, cd)
			}
		}
		if err := c.ChangeMedia(ctx, d.UUID, ""); err != nil {
			t.Fatal(err)
		}
		for _, which := range []libvirt.DomainXMLFlags{0, libvirt.DomainXMLInactive} {
			cd := findDisk(liveDef(t, c, d.UUID, which), "hdc")
			if cd == nil || (cd.Source != nil && cd.Source.File != nil && cd.Source.File.File != "") {
				t.Fatalf("after ejecting, hdc (xml flags %d) = %+v", which, cd)
			}
		}
		if err := c.ChangeMedia(ctx, d.UUID, "relative.iso"); !errors.Is(err, ErrInvalid) {
			t.Errorf("ChangeMedia with a relative path: %v, want ErrInvalid", err)
		}
	})

	// Without an OS nothing answers the ACPI power button: the domain runs on and
	// the caller, after its own timeout, offers to force it off.
	if err := c.Shutdown(ctx, d.UUID); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	wantState(t, c, d.UUID, StateRunning)

	if err := c.Destroy(ctx, d.UUID); err != nil {
		t.Fatal(err)
	}
	if e := waitEvent(t, ev, d.UUID, "stopped", "destroyed"); e.State != StateShutoff || e.Name != d.Name {
		t.Errorf("stopped event = %+v", e)
	}
	wantState(t, c, d.UUID, StateShutoff)
	if err := c.Destroy(ctx, d.UUID); err != nil {
		t.Errorf("forcing off a shut-off domain: %v, want no error", err)
	}

	// While shut off, disks change only the definition; ide works then.
	ide := Disk{Path: filepath.Join(filepath.Dir(d.Disks[0].Path), "disk2.raw"), Format: "raw", Bus: BusIDE}
	qemuImg(t, "raw", ide.Path, "1M")
	if err := c.AttachDisk(ctx, d.UUID, ide, 0); err != nil {
		t.Fatal(err)
	}
	if findDisk(liveDef(t, c, d.UUID, libvirt.DomainXMLInactive), "hda") == nil {
		t.Fatal("ide disk attached while shut off is not in the definition")
	}
	if err := c.DetachDisk(ctx, d.UUID, ide, 0); err != nil {
		t.Fatal(err)
	}
	if findDisk(liveDef(t, c, d.UUID, libvirt.DomainXMLInactive), "hda") != nil {
		t.Fatal("ide disk detached while shut off is still in the definition")
	}

	if err := c.Undefine(ctx, d.UUID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.State(ctx, d.UUID); !errors.Is(err, ErrNotFound) {
		t.Errorf("State after Undefine: %v, want ErrNotFound", err)
	}
	list, err = c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := list[d.UUID]; ok {
		t.Errorf("List still has %s after Undefine", d.UUID)
	}
	if err := c.Undefine(ctx, d.UUID); err != nil {
		t.Errorf("undefining an unknown domain: %v, want no error", err)
	}
	for name, f := range map[string]func() error{
		"Start":   func() error { return c.Start(ctx, d.UUID) },
		"Destroy": func() error { return c.Destroy(ctx, d.UUID) },
		"Suspend": func() error { return c.Suspend(ctx, d.UUID) },
	} {
		if err := f(); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s on an unknown domain: %v, want ErrNotFound", name, err)
		}
	}
}

// TestHostNoCDROM checks that media cannot go into a domain without a drive.
func TestHostNoCDROM(t *testing.T) {
	c := hostConn(t)
	d := testDomain(t)
	d.CDROM = nil
	define(t, c, d)
	err := c.ChangeMedia(context.Background(), d.UUID, "/srv/x.iso")
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("ChangeMedia without a drive: %v, want ErrInvalid", err)
	}
}

// TestHostDefineNameTaken checks that a name another domain has comes back as
// ErrExists.
func TestHostDefineNameTaken(t *testing.T) {
	c := hostConn(t)
	d := testDomain(t)
	define(t, c, d)
	other := testDomain(t)
	other.Name = d.Name // same name, other UUID
	err := c.Define(context.Background(), other)
	if err == nil {
		c.Undefine(context.Background(), other.UUID)
		t.Fatal("defining a second domain with the same name succeeded")
	}
	if !errors.Is(err, ErrExists) {
		t.Errorf("same name, other UUID: %v, want ErrExists", err)
	}
}

func findDisk(def *libvirtxml.Domain, target string) *libvirtxml.DomainDisk {
	for i, d := range def.Devices.Disks {
		if d.Target != nil && d.Target.Dev == target {
			return &def.Devices.Disks[i]
		}
	}
	return nil
}

func scsiModel(def *libvirtxml.Domain) string {
	for _, c := range def.Devices.Controllers {
		if c.Type == "scsi" {
			return c.Model
		}
	}
	return ""
}

// liveDef reads the domain's XML: the running domain's (flags 0) or its definition
// (DomainXMLInactive).
func liveDef(t *testing.T, c *Conn, uuid string, flags libvirt.DomainXMLFlags) *libvirtxml.Domain {
	t.Helper()
	ctx := context.Background()
	dom, err := c.lookup(ctx, uuid)
	if err != nil {
		t.Fatal(err)
	}
	def, err := c.domainDef(ctx, dom, flags)
	if err != nil {
		t.Fatal(err)
	}
	return def
}
