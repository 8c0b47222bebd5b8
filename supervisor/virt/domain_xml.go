package virt

import (
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"libvirt.org/go/libvirtxml"
)

// Limits of the domains DomainXML makes.
const (
	// MaxDisks is the number of disks a domain can have (besides the CD-ROM).
	MaxDisks = 4
	// MaxVCPUs is the i440fx machine's limit in qemu.
	MaxVCPUs = 255
	// MinMemoryMiB is the least memory a domain can have.
	MinMemoryMiB = 16
	// cdromTarget is the CD-ROM drive's target: the first unit of the second ide
	// channel, where installers look first.
	cdromTarget = "hdc"
	// maxSocketPath is the longest path a unix socket can have (sun_path less NUL).
	maxSocketPath = 107
	// MinMTU and MaxMTU bound a NIC's MTU: IPv4's least datagram every host must
	// take, and the usual jumbo frame.
	MinMTU = 576
	MaxMTU = 9000
)

var (
	nameRE   = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$`)
	uuidRE   = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	serialRE = regexp.MustCompile(`^[A-Za-z0-9_ .+-]{1,36}$`)
	bridgeRE = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,15}$`)

	// formats are qemu's names of the image formats Cairn attaches.
	formats = []string{"qcow2", "raw", "vmdk", "vdi", "vhdx"}
	// cacheModes are qemu's disk cache modes.
	cacheModes = []string{"none", "writeback", "writethrough", "directsync", "unsafe"}
	nicModels  = []string{"virtio", "e1000", "rtl8139"}
	bootDevs   = []string{"hd", "cdrom", "network"}
)

// SerialSocket is the path of the unix socket of d's serial console.
func (d Domain) SerialSocket() string { return filepath.Join(d.ConsoleDir, d.UUID+".serial") }

// VNCSocket is the path of the unix socket of d's VNC display.
func (d Domain) VNCSocket() string { return filepath.Join(d.ConsoleDir, d.UUID+".vnc") }

// SerialLog is the path of the file that d's serial output is appended to.
func (d Domain) SerialLog() string { return filepath.Join(d.LogDir, d.UUID+".serial.log") }

// Target is the libvirt target name of the index'th disk (from 0) on bus: vda, sdb,
// hda, … DomainXML names the disks this way, and AttachDisk prefers it. On ide, hdc is
// the CD-ROM's when the domain has one.
func Target(bus Bus, index int) (string, error) {
	if index < 0 || index >= MaxDisks {
		return "", fmt.Errorf("disk target: %w: index %d is out of range 0–%d", ErrInvalid, index, MaxDisks-1)
	}
	var prefix string
	switch bus {
	case BusVirtio:
		prefix = "vd"
	case BusSCSI:
		prefix = "sd"
	case BusIDE:
		prefix = "hd"
	default:
		return "", fmt.Errorf("disk target: %w: unknown bus %q (use virtio, scsi or ide)", ErrInvalid, bus)
	}
	return prefix + string(rune('a'+index)), nil
}

// Targets returns the target names DomainXML gives disks, in the same order.
func Targets(disks []Disk) ([]string, error) {
	count := map[Bus]int{}
	out := make([]string, len(disks))
	for i, d := range disks {
		t, err := Target(d.Bus, count[d.Bus])
		if err != nil {
			return nil, fmt.Errorf("disk %d: %w", i, err)
		}
		count[d.Bus]++
		out[i] = t
	}
	return out, nil
}

// DomainXML returns the libvirt definition of d: an i440fx ("pc") machine with ACPI,
// SeaBIOS writing to the serial port, the serial console on a unix socket (and logged
// to a file), a VNC display on a unix socket, a VGA card, a USB tablet and a virtio
// RNG. Powering off or crashing ends the domain; a reboot restarts it. An invalid
// description returns an error wrapping ErrInvalid that says what to change.
func DomainXML(d Domain) (string, error) {
	x, err := domainDef(d)
	if err != nil {
		return "", err
	}
	s, err := x.Marshal()
	if err != nil {
		return "", fmt.Errorf("domain %s: marshal xml: %w", d.Name, err)
	}
	return s + "\n", nil
}

func domainDef(d Domain) (*libvirtxml.Domain, error) {
	if err := d.validate(); err != nil {
		return nil, fmt.Errorf("domain %q: %w", d.Name, err)
	}
	x := &libvirtxml.Domain{
		Type:          d.Type,
		Name:          d.Name,
		UUID:          d.UUID,
		Memory:        &libvirtxml.DomainMemory{Value: uint(d.MemoryMiB), Unit: "MiB"},
		CurrentMemory: &libvirtxml.DomainCurrentMemory{Value: uint(d.MemoryMiB), Unit: "MiB"},
		VCPU:          &libvirtxml.DomainVCPU{Placement: "static", Value: uint(d.VCPUs)},
		OS: &libvirtxml.DomainOS{
			Type: &libvirtxml.DomainOSType{Arch: "x86_64", Machine: "pc", Type: "hvm"},
			// SeaBIOS prints its boot messages (and "No bootable device") to the
			// serial console too, where Cairn's console shows them.
			BIOS: &libvirtxml.DomainBIOS{UseSerial: "yes"},
		},
		Features: &libvirtxml.DomainFeatureList{
			ACPI: &libvirtxml.DomainFeature{},
			APIC: &libvirtxml.DomainFeatureAPIC{},
		},
		Clock:      &libvirtxml.DomainClock{Offset: "utc"},
		OnPoweroff: "destroy",
		OnReboot:   "restart",
		OnCrash:    "destroy",
		Devices:    &libvirtxml.DomainDeviceList{},
	}
	if d.Type == "kvm" {
		// host-model migrates: libvirt expands it to a named model at start.
		x.CPU = &libvirtxml.DomainCPU{Mode: "host-model"}
	}
	boot := d.Boot
	if len(boot) == 0 {
		boot = []string{"hd"}
	}
	for _, b := range boot {
		x.OS.BootDevices = append(x.OS.BootDevices, libvirtxml.DomainBootDevice{Dev: b})
	}

	dev := x.Devices
	targets, _ := Targets(d.Disks) // validated above
	scsi := false
	for i, disk := range d.Disks {
		dev.Disks = append(dev.Disks, diskDef(disk, targets[i]))
		scsi = scsi || disk.Bus == BusSCSI
	}
	if d.CDROM != nil {
		dev.Disks = append(dev.Disks, cdromDef(d.CDROM.Path))
	}
	if scsi {
		dev.Controllers = append(dev.Controllers, scsiController())
	}
	for _, n := range d.NICs {
		dev.Interfaces = append(dev.Interfaces, nicDef(n))
	}
	sock := d.SerialSocket()
	dev.Serials = []libvirtxml.DomainSerial{{
		Source: &libvirtxml.DomainChardevSource{UNIX: &libvirtxml.DomainChardevSourceUNIX{Mode: "bind", Path: sock}},
		Log:    &libvirtxml.DomainChardevLog{File: d.SerialLog(), Append: "on"},
		Target: &libvirtxml.DomainSerialTarget{Port: new(uint)},
	}}
	dev.Consoles = []libvirtxml.DomainConsole{{
		Source: &libvirtxml.DomainChardevSource{UNIX: &libvirtxml.DomainChardevSourceUNIX{Mode: "bind", Path: sock}},
		Target: &libvirtxml.DomainConsoleTarget{Type: "serial", Port: new(uint)},
	}}
	dev.Inputs = []libvirtxml.DomainInput{{Type: "tablet", Bus: "usb"}}
	dev.Graphics = []libvirtxml.DomainGraphic{{VNC: &libvirtxml.DomainGraphicVNC{
		Listeners: []libvirtxml.DomainGraphicListener{{Socket: &libvirtxml.DomainGraphicListenerSocket{Socket: d.VNCSocket()}}},
	}}}
	dev.Videos = []libvirtxml.DomainVideo{{Model: libvirtxml.DomainVideoModel{Type: "vga"}}}
	dev.RNGs = []libvirtxml.DomainRNG{{
		Model:   "virtio",
		Backend: &libvirtxml.DomainRNGBackend{Random: &libvirtxml.DomainRNGBackendRandom{Device: "/dev/urandom"}},
	}}
	return x, nil
}

// diskDef is the <disk> element of a disk image at target.
func diskDef(d Disk, target string) libvirtxml.DomainDisk {
	cache := d.Cache
	if cache == "" {
		cache = "none"
	}
	x := libvirtxml.DomainDisk{
		Device: "disk",
		Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: d.Format, Cache: cache},
		Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: d.Path}},
		Target: &libvirtxml.DomainDiskTarget{Dev: target, Bus: string(d.Bus)},
		Serial: d.Serial,
	}
	if d.ReadOnly {
		x.ReadOnly = &libvirtxml.DomainDiskReadOnly{}
	}
	return x
}

// cdromDef is the CD-ROM drive with the ISO at path, or empty when path is "".
func cdromDef(path string) libvirtxml.DomainDisk {
	x := libvirtxml.DomainDisk{
		Device:   "cdrom",
		Driver:   &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "raw"},
		Target:   &libvirtxml.DomainDiskTarget{Dev: cdromTarget, Bus: string(BusIDE)},
		ReadOnly: &libvirtxml.DomainDiskReadOnly{},
	}
	if path != "" {
		x.Source = &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: path}}
	}
	return x
}

// scsiController is the virtio-scsi controller that scsi disks hang off; without it
// libvirt would add an emulated LSI controller, which few guests have drivers for.
func scsiController() libvirtxml.DomainController {
	return libvirtxml.DomainController{Type: "scsi", Index: new(uint), Model: "virtio-scsi"}
}

// nicDef is the <interface> element of n: on its bridge, or a user-mode NIC.
func nicDef(n NIC) libvirtxml.DomainInterface {
	model := n.Model
	if model == "" {
		model = "virtio"
	}
	mac, _ := net.ParseMAC(n.MAC) // validated
	x := libvirtxml.DomainInterface{
		MAC:   &libvirtxml.DomainInterfaceMAC{Address: mac.String()},
		Model: &libvirtxml.DomainInterfaceModel{Type: model},
	}
	if n.Bridge != "" {
		x.Source = &libvirtxml.DomainInterfaceSource{Bridge: &libvirtxml.DomainInterfaceSourceBridge{Bridge: n.Bridge}}
	} else {
		x.Source = &libvirtxml.DomainInterfaceSource{User: &libvirtxml.DomainInterfaceSourceUser{}}
	}
	if n.MTU != 0 {
		x.MTU = &libvirtxml.DomainInterfaceMTU{Size: uint(n.MTU)}
	}
	return x
}

// validate checks d and says what to change, wrapping ErrInvalid.
func (d Domain) validate() error {
	if !nameRE.MatchString(d.Name) {
		return fmt.Errorf("%w: name %q: use 1–64 letters, digits, '.', '_' or '-', not starting with '.' or '-'", ErrInvalid, d.Name)
	}
	if err := checkUUID(d.UUID); err != nil {
		return err
	}
	if d.Type != "kvm" && d.Type != "qemu" {
		return fmt.Errorf("%w: domain type %q: use \"kvm\" or \"qemu\"", ErrInvalid, d.Type)
	}
	if d.VCPUs < 1 || d.VCPUs > MaxVCPUs {
		return fmt.Errorf("%w: %d vCPUs: use 1 to %d", ErrInvalid, d.VCPUs, MaxVCPUs)
	}
	if d.MemoryMiB < MinMemoryMiB {
		return fmt.Errorf("%w: %d MiB of memory: give it at least %d MiB", ErrInvalid, d.MemoryMiB, MinMemoryMiB)
	}
	if len(d.Disks) > MaxDisks {
		return fmt.Errorf("%w: %d disks: a server can have at most %d", ErrInvalid, len(d.Disks), MaxDisks)
	}
	ide := 0
	for i, disk := range d.Disks {
		if err := disk.validate(); err != nil {
			return fmt.Errorf("disk %d: %w", i, err)
		}
		if disk.Bus == BusIDE {
			ide++
		}
	}
	if d.CDROM != nil {
		if ide > 2 {
			return fmt.Errorf("%w: %d ide disks and a CD-ROM: the ide bus has room for 2 disks besides the CD-ROM; put the others on virtio or scsi", ErrInvalid, ide)
		}
		if d.CDROM.Path != "" {
			if err := checkPath("CD-ROM image", d.CDROM.Path); err != nil {
				return err
			}
		}
	}
	macs := map[string]bool{}
	for i, n := range d.NICs {
		if err := n.validate(); err != nil {
			return fmt.Errorf("nic %d: %w", i, err)
		}
		mac, _ := net.ParseMAC(n.MAC)
		if macs[mac.String()] {
			return fmt.Errorf("nic %d: %w: MAC address %s is used twice", i, ErrInvalid, n.MAC)
		}
		macs[mac.String()] = true
	}
	seen := map[string]bool{}
	for _, b := range d.Boot {
		if !slices.Contains(bootDevs, b) {
			return fmt.Errorf("%w: boot device %q: use hd, cdrom or network", ErrInvalid, b)
		}
		if seen[b] {
			return fmt.Errorf("%w: boot device %q is listed twice", ErrInvalid, b)
		}
		seen[b] = true
	}
	if err := checkPath("console directory", d.ConsoleDir); err != nil {
		return err
	}
	if err := checkPath("log directory", d.LogDir); err != nil {
		return err
	}
	if p := d.VNCSocket(); len(p) > maxSocketPath {
		return fmt.Errorf("%w: console socket %s is longer than %d bytes, the limit of unix sockets: use a shorter console directory", ErrInvalid, p, maxSocketPath)
	}
	return nil
}

func (d Disk) validate() error {
	if err := checkPath("image", d.Path); err != nil {
		return err
	}
	if !slices.Contains(formats, d.Format) {
		return fmt.Errorf("%w: image format %q: use one of %s", ErrInvalid, d.Format, strings.Join(formats, ", "))
	}
	if d.Bus != BusVirtio && d.Bus != BusSCSI && d.Bus != BusIDE {
		return fmt.Errorf("%w: unknown bus %q: use virtio, scsi or ide", ErrInvalid, d.Bus)
	}
	if d.ReadOnly && d.Bus == BusIDE {
		return fmt.Errorf("%w: qemu cannot attach a read-only disk to the ide bus: use virtio or scsi", ErrInvalid)
	}
	if d.Serial != "" && !serialRE.MatchString(d.Serial) {
		return fmt.Errorf("%w: disk serial %q: use at most 36 letters, digits, spaces or _ . + -", ErrInvalid, d.Serial)
	}
	if d.Cache != "" && !slices.Contains(cacheModes, d.Cache) {
		return fmt.Errorf("%w: cache mode %q: use one of %s", ErrInvalid, d.Cache, strings.Join(cacheModes, ", "))
	}
	return nil
}

func (n NIC) validate() error {
	mac, err := net.ParseMAC(n.MAC)
	if err != nil || len(mac) != 6 {
		return fmt.Errorf("%w: MAC address %q: use six hexadecimal pairs as in 52:54:00:12:34:56", ErrInvalid, n.MAC)
	}
	if mac[0]&1 != 0 {
		return fmt.Errorf("%w: MAC address %s is a multicast address: the first byte must be even", ErrInvalid, n.MAC)
	}
	if n.Model != "" && !slices.Contains(nicModels, n.Model) {
		return fmt.Errorf("%w: NIC model %q: use one of %s", ErrInvalid, n.Model, strings.Join(nicModels, ", "))
	}
	if n.Bridge != "" && !bridgeRE.MatchString(n.Bridge) {
		return fmt.Errorf("%w: bridge %q is not an interface name (1–15 letters, digits, _ . : -)", ErrInvalid, n.Bridge)
	}
	if n.MTU != 0 && (n.MTU < MinMTU || n.MTU > MaxMTU) {
		return fmt.Errorf("%w: MTU %d: use %d to %d, or 0 for the default", ErrInvalid, n.MTU, MinMTU, MaxMTU)
	}
	if n.MTU != 0 && n.Bridge == "" {
		return fmt.Errorf("%w: MTU %d on a NIC without a bridge: libvirt sets MTUs only on bridged NICs; give it a bridge or MTU 0", ErrInvalid, n.MTU)
	}
	return nil
}

// checkUUID accepts only the canonical lower-case form, the one libvirt's events
// and lists use, so that the engine's keys match them.
func checkUUID(u string) error {
	if !uuidRE.MatchString(u) {
		return fmt.Errorf("%w: UUID %q: use the lower-case form 8-4-4-4-12 hexadecimal digits", ErrInvalid, u)
	}
	return nil
}

// checkPath accepts absolute paths without ".." elements: definitions are read by
// libvirtd, whose working directory is not the caller's.
func checkPath(what, p string) error {
	if p == "" {
		return fmt.Errorf("%w: %s path is empty", ErrInvalid, what)
	}
	if !filepath.IsAbs(p) {
		return fmt.Errorf("%w: %s path %q is relative: give an absolute path", ErrInvalid, what, p)
	}
	if slices.Contains(strings.Split(p, "/"), "..") {
		return fmt.Errorf("%w: %s path %q contains \"..\": give the path without it", ErrInvalid, what, p)
	}
	if strings.ContainsRune(p, 0) {
		return fmt.Errorf("%w: %s path %q contains a NUL byte", ErrInvalid, what, p)
	}
	return nil
}
