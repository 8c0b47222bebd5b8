package virt

import (
	"errors"
	"strings"
	"testing"

	"github.com/cairn-os/cairn/internal/testutil"
)

// base is a valid domain the tests change one thing of.
func base() Domain {
	return Domain{
		UUID:       "5f1c2a3b-0d4e-4f60-8a7b-9c0d1e2f3a4b",
		Name:       "cairn-s1",
		Type:       "qemu",
		VCPUs:      1,
		MemoryMiB:  128,
		Disks:      []Disk{{Path: "/var/lib/cairn/pools/0/img-1.qcow2", Format: "qcow2", Bus: BusVirtio, Serial: "img-1"}},
		ConsoleDir: "/run/cairn/console",
		LogDir:     "/var/log/cairn/console",
	}
}

func TestDomainXMLGolden(t *testing.T) {
	mixed := base()
	mixed.Type = "kvm"
	mixed.VCPUs = 4
	mixed.MemoryMiB = 4096
	mixed.Disks = []Disk{
		{Path: "/pools/0/root.qcow2", Format: "qcow2", Bus: BusVirtio, Serial: "img-root"},
		{Path: "/pools/0/data.raw", Format: "raw", Bus: BusSCSI, Serial: "img-data"},
		{Path: "/pools/0/old.vmdk", Format: "vmdk", Bus: BusIDE, Serial: "img-old", Cache: "writeback"},
		{Path: "/pools/0/ro.vhdx", Format: "vhdx", Bus: BusVirtio, ReadOnly: true},
	}
	mixed.CDROM = &CDROM{Path: "/pools/0/debian.iso"}
	mixed.NICs = []NIC{
		{MAC: "52:54:00:AA:BB:01"},
		{MAC: "52:54:00:aa:bb:02", Model: "e1000"},
	}
	mixed.Boot = []string{"cdrom", "hd", "network"}

	empty := base()
	empty.CDROM = &CDROM{}
	empty.Boot = []string{"cdrom", "hd"}

	bridge := base()
	bridge.Disks = nil
	bridge.NICs = []NIC{{MAC: "52:54:00:00:00:01", Bridge: "br0"}}
	bridge.Boot = []string{"network"}

	// The MTU of networks carried over VXLAN, on a virtio NIC (the guest learns it)
	// and an e1000 one (only the host's tap device has it).
	mtu := base()
	mtu.NICs = []NIC{
		{MAC: "52:54:00:00:00:01", Bridge: "cn-net1", MTU: 1450},
		{MAC: "52:54:00:00:00:02", Bridge: "cn-net2", Model: "e1000", MTU: 9000},
	}

	for _, tc := range []struct {
		name string
		d    Domain
	}{
		{"one-virtio-disk", base()},
		{"mixed-buses-cdrom-nics-boot", mixed},
		{"empty-cdrom", empty},
		{"bridge-nic", bridge},
		{"bridge-nic-mtu", mtu},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DomainXML(tc.d)
			if err != nil {
				t.Fatal(err)
			}
			testutil.Golden(t, tc.name, got)
		})
	}
}

// TestDomainXMLTargets checks what the guest will see as its disks: each bus counts
// its own disks, so the second virtio disk is vdb even with others between.
func TestDomainXMLTargets(t *testing.T) {
	disks := []Disk{
		{Path: "/a", Format: "raw", Bus: BusVirtio},
		{Path: "/b", Format: "raw", Bus: BusIDE},
		{Path: "/c", Format: "raw", Bus: BusSCSI},
		{Path: "/d", Format: "raw", Bus: BusVirtio},
	}
	got, err := Targets(disks)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"vda", "hda", "sda", "vdb"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("targets = %v, want %v", got, want)
	}
	d := base()
	d.Disks = disks
	x, err := DomainXML(d)
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range want {
		if !strings.Contains(x, `<source file="`+disks[i].Path+`"></source>`+"\n      <target dev=\""+w+`"`) {
			t.Errorf("disk %s is not at target %s in\n%s", disks[i].Path, w, x)
		}
	}
	if _, err := Target(BusVirtio, 4); !errors.Is(err, ErrInvalid) {
		t.Errorf("Target(virtio, 4) = %v, want ErrInvalid", err)
	}
}

func TestDomainXMLInvalid(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(d *Domain)
		want string // in the message
	}{
		{"empty name", func(d *Domain) { d.Name = "" }, "name"},
		{"name with slash", func(d *Domain) { d.Name = "a/b" }, "name"},
		{"name too long", func(d *Domain) { d.Name = strings.Repeat("a", 65) }, "name"},
		{"uuid not hex", func(d *Domain) { d.UUID = "5f1c2a3b-0d4e-4f60-8a7b-9c0d1e2f3a4z" }, "UUID"},
		{"uuid upper case", func(d *Domain) { d.UUID = strings.ToUpper(d.UUID) }, "lower-case"},
		{"uuid without dashes", func(d *Domain) { d.UUID = strings.ReplaceAll(d.UUID, "-", "") }, "UUID"},
		{"unknown type", func(d *Domain) { d.Type = "xen" }, "domain type"},
		{"no vcpus", func(d *Domain) { d.VCPUs = 0 }, "vCPUs"},
		{"too many vcpus", func(d *Domain) { d.VCPUs = 256 }, "vCPUs"},
		{"too little memory", func(d *Domain) { d.MemoryMiB = 15 }, "at least 16 MiB"},
		{"five disks", func(d *Domain) {
			for range 4 {
				d.Disks = append(d.Disks, d.Disks[0])
			}
		}, "at most 4"},
		{"three ide disks and a cdrom", func(d *Domain) {
			d.CDROM = &CDROM{}
			d.Disks = []Disk{
				{Path: "/a", Format: "raw", Bus: BusIDE},
				{Path: "/b", Format: "raw", Bus: BusIDE},
				{Path: "/c", Format: "raw", Bus: BusIDE},
			}
		}, "2 disks besides the CD-ROM"},
		{"unknown bus", func(d *Domain) { d.Disks[0].Bus = "usb" }, "unknown bus"},
		{"empty bus", func(d *Domain) { d.Disks[0].Bus = "" }, "unknown bus"},
		{"unknown format", func(d *Domain) { d.Disks[0].Format = "qed" }, "image format"},
		{"relative disk path", func(d *Domain) { d.Disks[0].Path = "pools/0/x.qcow2" }, "relative"},
		{"disk path with dotdot", func(d *Domain) { d.Disks[0].Path = "/pools/../etc/shadow" }, `".."`},
		{"empty disk path", func(d *Domain) { d.Disks[0].Path = "" }, "empty"},
		{"read-only ide disk", func(d *Domain) { d.Disks[0].Bus, d.Disks[0].ReadOnly = BusIDE, true }, "read-only"},
		{"serial with colon", func(d *Domain) { d.Disks[0].Serial = "img:1" }, "serial"},
		{"serial too long", func(d *Domain) { d.Disks[0].Serial = strings.Repeat("x", 37) }, "serial"},
		{"unknown cache", func(d *Domain) { d.Disks[0].Cache = "fast" }, "cache"},
		{"relative cdrom path", func(d *Domain) { d.CDROM = &CDROM{Path: "debian.iso"} }, "relative"},
		{"cdrom path with dotdot", func(d *Domain) { d.CDROM = &CDROM{Path: "/isos/../x.iso"} }, `".."`},
		{"bad mac", func(d *Domain) { d.NICs = []NIC{{MAC: "52:54:00:12:34"}} }, "MAC"},
		{"empty mac", func(d *Domain) { d.NICs = []NIC{{}} }, "MAC"},
		{"long mac", func(d *Domain) { d.NICs = []NIC{{MAC: "00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01"}} }, "MAC"},
		{"multicast mac", func(d *Domain) { d.NICs = []NIC{{MAC: "01:00:5e:00:00:01"}} }, "multicast"},
		{"same mac twice", func(d *Domain) { d.NICs = []NIC{{MAC: "52:54:00:00:00:01"}, {MAC: "52:54:00:00:00:01"}} }, "twice"},
		{"unknown nic model", func(d *Domain) { d.NICs = []NIC{{MAC: "52:54:00:00:00:01", Model: "ne2k"}} }, "NIC model"},
		{"bad bridge", func(d *Domain) { d.NICs = []NIC{{MAC: "52:54:00:00:00:01", Bridge: "br0 ; reboot"}} }, "bridge"},
		{"mtu too small", func(d *Domain) { d.NICs = []NIC{{MAC: "52:54:00:00:00:01", Bridge: "br0", MTU: 575}} }, "MTU 575: use 576 to 9000"},
		{"mtu too large", func(d *Domain) { d.NICs = []NIC{{MAC: "52:54:00:00:00:01", Bridge: "br0", MTU: 9001}} }, "MTU 9001"},
		{"negative mtu", func(d *Domain) { d.NICs = []NIC{{MAC: "52:54:00:00:00:01", Bridge: "br0", MTU: -1}} }, "MTU -1"},
		{"mtu without bridge", func(d *Domain) { d.NICs = []NIC{{MAC: "52:54:00:00:00:01", MTU: 1450}} }, "without a bridge"},
		{"unknown boot device", func(d *Domain) { d.Boot = []string{"floppy"} }, "boot device"},
		{"boot device twice", func(d *Domain) { d.Boot = []string{"hd", "hd"} }, "twice"},
		{"no console dir", func(d *Domain) { d.ConsoleDir = "" }, "console directory"},
		{"relative log dir", func(d *Domain) { d.LogDir = "log" }, "log directory"},
		{"console dir too long", func(d *Domain) { d.ConsoleDir = "/" + strings.Repeat("c", 70) }, "shorter console directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := base()
			tc.edit(&d)
			x, err := DomainXML(d)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("DomainXML = %v, %q; want an error wrapping ErrInvalid", err, x)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}
