package virt

import "errors"

// Sentinel errors. Errors returned by this package wrap one of them where it applies,
// so the engine can map them to HTTP statuses with errors.Is.
var (
	// ErrNotFound means libvirt on this node does not know the domain, volume or pool.
	ErrNotFound = errors.New("not found")
	// ErrInvalid means the request cannot work as given: a bad domain description, an
	// operation the domain's current state does not allow, a device it does not have.
	ErrInvalid = errors.New("invalid")
	// ErrExists means the object to create is already there.
	ErrExists = errors.New("already exists")
	// ErrNotReleased means the guest has not let go of a device that was unplugged
	// while it runs: the device is gone from the domain's definition, and from the
	// running domain only once the guest releases it or the domain stops.
	ErrNotReleased = errors.New("not released by the guest")
)

// Bus is the bus a disk is attached to.
type Bus string

// The disk buses of the i440fx ("pc") machine Cairn uses.
const (
	BusVirtio Bus = "virtio"
	BusSCSI   Bus = "scsi"
	BusIDE    Bus = "ide"
)

// Disk is one disk image attached to a domain.
type Disk struct {
	// Path is the image file's absolute path on the node.
	Path string
	// Format is qemu's name of the image format: qcow2, raw, vmdk, vdi or vhdx.
	Format string
	// Bus is virtio, scsi or ide.
	Bus Bus
	// ReadOnly attaches the disk read-only (not possible on the ide bus).
	ReadOnly bool
	// Serial is the serial number the guest sees (Cairn uses the image ID): at most
	// 36 of the characters A–Z a–z 0–9 _ . + - and space. Guests see at most the
	// first 20 on virtio and ide.
	Serial string
	// Cache is qemu's cache mode; empty means "none" (O_DIRECT), the mode libvirt
	// requires for a live migration on shared storage. Use "writeback" for a file
	// system without O_DIRECT (tmpfs before Linux 6.6).
	Cache string
}

// CDROM is the domain's CD-ROM drive (ide, target hdc).
type CDROM struct {
	// Path is the ISO image's absolute path; empty for a drive without media.
	Path string
}

// NIC is one network interface.
type NIC struct {
	// MAC is the interface's unicast MAC address, as in 52:54:00:12:34:56.
	MAC string
	// Model is the emulated device: virtio (the default when empty), e1000 or
	// rtl8139.
	Model string
	// Bridge is the host bridge the interface is plugged into. When empty the
	// interface is a user-mode (slirp) NIC: a placeholder until Cairn has
	// connections.
	Bridge string
	// MTU is the interface's MTU, MinMTU–MaxMTU, or 0 for the default (1500); only
	// a NIC with a Bridge can have one. It is set on the host's tap device and, with
	// the virtio model, told to the guest, whose driver takes it: networks carried
	// over VXLAN need 1450. Other models' guests must be told some other way (DHCP).
	MTU int
}

// Domain is the engine's description of one server, from which DomainXML makes the
// libvirt definition.
type Domain struct {
	// UUID is the domain's UUID in lower-case canonical form
	// (8-4-4-4-12 hexadecimal digits); libvirt's events and List use the same form.
	UUID string
	// Name is the libvirt domain name: 1–64 of A–Z a–z 0–9 . _ - (not starting with
	// . or -), unique on the node.
	Name string
	// Type is "kvm" on nodes with hardware virtualisation and "qemu" (TCG)
	// elsewhere; the caller decides from Capabilities.
	Type string
	// VCPUs is the number of virtual CPUs, 1–255 (the i440fx machine's limit).
	VCPUs int
	// MemoryMiB is the guest's memory in MiB, at least 16.
	MemoryMiB int
	// Disks are attached in order; each bus gets its targets in turn (vda…vdd,
	// sda…sdd, hda…hdd; hdc is the CD-ROM's when there is one). At most 4, and at
	// most 2 on ide when there is a CD-ROM.
	Disks []Disk
	// CDROM is nil for no drive, or a drive (empty when its Path is empty) whose
	// media can be changed later with ChangeMedia.
	CDROM *CDROM
	// NICs are the network interfaces, in order.
	NICs []NIC
	// Boot is the boot order: "hd", "cdrom", "network". Empty means "hd".
	Boot []string
	// ConsoleDir is where the serial console's and the VNC display's unix sockets
	// are made: <ConsoleDir>/<uuid>.serial and <ConsoleDir>/<uuid>.vnc. qemu must be
	// able to create files there (see PrepareDirs).
	ConsoleDir string
	// LogDir is where the serial output is also logged (appended):
	// <LogDir>/<uuid>.serial.log, so the console can show what the guest printed
	// before anyone connected.
	LogDir string
}

// State is a domain's run state as libvirt reports it.
type State string

// The states of a domain.
const (
	StateRunning     State = "running"
	StatePaused      State = "paused"
	StateShutoff     State = "shutoff"
	StateShutdown    State = "shutdown" // being shut down
	StateCrashed     State = "crashed"
	StatePMSuspended State = "pmsuspended"
	StateBlocked     State = "blocked"
	StateNoState     State = "nostate"
)

// Event is a change of a domain's run state.
type Event struct {
	// UUID and Name identify the domain.
	UUID string
	Name string
	// State is the domain's state after the event.
	State State
	// Reason says why, in libvirt's words: "booted", "migrated", "restored",
	// "paused", "unpaused", "shutdown", "destroyed", "crashed", "failed", "saved",
	// "finished" (the guest has powered off), "guest", "host", "panicked", …
	Reason string
	// Kind is libvirt's event type: started, suspended, resumed, stopped, shutdown,
	// pmsuspended or crashed.
	Kind string
}

// Caps is what a node's hypervisor offers.
type Caps struct {
	// KVM is true when libvirt offers domain type "kvm" for x86_64 guests. It says
	// what libvirt found (/dev/kvm usable by qemu), not that guests run well: under
	// nested virtualisation KVM can be present and still hang.
	KVM bool
	// Arch is the host's architecture, as in x86_64.
	Arch string
	// Emulator is the qemu binary libvirt uses for x86_64 guests.
	Emulator string
	// Machines are the x86_64 machine types qemu offers (pc, q35, pc-i440fx-7.2, …).
	Machines []string
	// CPUs is the number of logical CPUs of the node.
	CPUs int
	// MemoryBytes is the node's memory; FreeMemoryBytes what is free now.
	MemoryBytes     uint64
	FreeMemoryBytes uint64
}
