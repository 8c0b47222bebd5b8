// Package virt is Cairn's hypervisor driver: it turns the engine's description of a
// server into libvirt domain XML (a pure function, DomainXML) and drives domains
// through a node's libvirtd over go-libvirt: define, start, stop, pause, hot-plug
// disks and NICs (on host bridges, with an MTU the guest learns), change CD-ROM
// media, follow lifecycle events, read the node's capabilities, make child images in
// node-local storage and live-migrate between nodes on shared storage.
//
// Nodes keep no state of their own: the engine defines every domain from its own
// records, so this package never reads a domain's definition back to decide what a
// server is.
//
// What a node needs for the domains DomainXML makes (seen with Debian 12's libvirt 9.0
// and qemu 7.2):
//
//   - qemu runs as QemuUser (libvirt-qemu). It makes the VNC socket itself, so the
//     console directory must be writable by it; PrepareDirs makes both directories
//     right. Every directory above an image, ISO or console directory must let it
//     through (o+x); libvirt hands the files themselves to it while the domain runs.
//   - /dev/kvm must be readable and writable by QemuUser (root:kvm 0660, Debian's udev
//     rule). When qemu can open /dev/kvm but libvirt's own check for QemuUser says it
//     cannot (root:root 0600, as a devtmpfs without udev leaves it), libvirt treats its
//     cached qemu capabilities as stale and probes qemu again on every call: dozens of
//     probes, minutes, for one define.
//   - Disks use cache mode "none" (O_DIRECT) unless Disk.Cache says otherwise: libvirt
//     refuses to live-migrate writable disks with another mode, and refuses disks on a
//     file system that is not shared (NFS, GFS2, Ceph, …) at all. tmpfs has no O_DIRECT
//     before Linux 6.6.
//   - libvirt sets an MTU only on NICs with a tap device (bridged ones), and a guest
//     learns it only from virtio-net. Pulling a NIC from a running guest needs the
//     guest's ACPI cooperation; libvirt waits 5 s for it, DetachNIC up to 20 s.
//   - The VNC socket stays behind when a domain stops (qemu removes it only when it
//     makes it again); a console that finds it refuses connections until the domain
//     runs.
package virt
