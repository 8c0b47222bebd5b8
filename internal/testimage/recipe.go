package testimage

import (
	"fmt"
	"sort"
	"strings"
)

// recipeVersion names the way the image is put together. Change it when build.go
// changes what ends up on the disk in a way the texts below do not show (layout, file
// names, compression), so that cached images made the old way are not reused.
const recipeVersion = "cairn-testimage-2"

// Label is the FAT volume label of the test disk; the guest finds its disk by it.
const Label = "CAIRNTEST"

// DefaultMarker is the marker a freshly built image carries.
const DefaultMarker = "cairn-test-image"

// diskMiB is the size of the disk: room for the kernel, the initrd and whatever a
// test writes, small enough to copy in a blink.
const diskMiB = 64

// volumeID is the FAT serial number, fixed so that two builds differ only in file times.
const volumeID = "CA1A7E57"

// Files on the FAT disk, in its root folder.
const (
	markerFile = "cairn-test.txt"
	bootsFile  = "boots.txt"
)

// moduleNames are the kernel modules the guest loads, in this order (each after its
// dependencies): the buses and disk drivers to find its disk on virtio-blk,
// virtio-scsi or IDE, FAT, the ACPI power button and the event device acpid reads,
// fw_cfg for the host name, and virtio-net/e1000 for an optional DHCP lease.
var moduleNames = []string{
	"virtio_pci", "virtio_blk", "virtio_scsi", "virtio_net", "virtio_rng",
	"ata_piix", "ata_generic", "sd_mod",
	"vfat", "nls_cp437", "nls_iso8859_1", "nls_ascii", "nls_utf8",
	"button", "evdev", "qemu_fw_cfg", "e1000",
}

// kernelArgs are the kernel's command line. The serial console comes last so that it
// is /dev/console, where init's lines go; tty0 keeps kernel messages on a VGA screen.
// The rest saves boot time under TCG, where the kernel's own start dominates: no
// address randomisation (its relocation pass costs over a second), no crypto
// self-tests, no speculation mitigations.
const kernelArgs = "console=tty0 console=ttyS0,115200 quiet loglevel=3 nokaslr cryptomgr.notests mitigations=off"

// syslinuxCfg boots the kernel at once, without a prompt.
func syslinuxCfg() string {
	return `# Cairn test image (internal/testimage): boot at once.
SERIAL 0 115200
PROMPT 0
TIMEOUT 0
DEFAULT cairn
LABEL cairn
  KERNEL vmlinuz
  INITRD initrd
  APPEND ` + kernelArgs + `
`
}

// initScript is the guest's /init. It prints the lines of MarkerLine and ReadyLine,
// and only prints "ready" once acpid holds the power button's event device, so that a
// power-down sent after "ready" is never lost. Each network card gets a NICLine and a
// DHCP client, at boot and when it is hot-plugged later (a background loop looks each
// second), and a NICGoneLine when it is pulled. It ends by becoming busybox init, which
// reaps orphans and keeps a shell on each console, so PID 1 never exits.
func initScript() string {
	return `#!/bin/sh
# /init of Cairn's test image (internal/testimage).
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /run /mnt/disk
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run

say() {
	echo "cairn-test: $*"
	echo "cairn-test: $*" >/dev/tty0 2>/dev/null
}

# One modprobe for all: a process per module costs seconds under TCG. The optional
# ones are soft dependencies, some for CPU features this CPU may lack.
modprobe -q -a $(cat /etc/cairn/modules-optional) 2>/dev/null
modprobe -a $(cat /etc/cairn/modules) || say "warning: some kernel modules did not load"

# The disk: the FAT file system labelled ` + Label + `. SCSI and ATA disks appear a
# moment after their drivers load.
dev=
i=0
while [ $i -lt 200 ]; do
	dev=$(findfs LABEL=` + Label + ` 2>/dev/null) && break
	dev=
	sleep 0.05
	i=$((i + 1))
done
marker=none
boots=0
if [ -z "$dev" ]; then
	say "error: no disk labelled ` + Label + `"
elif mount -t vfat -o rw "$dev" /mnt/disk; then
	:
elif mount -t vfat -o ro "$dev" /mnt/disk; then
	say "warning: $dev is read-only, the boot is not counted"
else
	say "error: cannot mount $dev"
	dev=
fi
if [ -n "$dev" ]; then
	marker=$(head -n 1 /mnt/disk/` + markerFile + ` 2>/dev/null | tr -d ' \t\r\n')
	[ -n "$marker" ] || marker=none
	boots=$(head -n 1 /mnt/disk/` + bootsFile + ` 2>/dev/null | tr -cd 0-9)
	boots=$((${boots:-0} + 1))
	echo "$boots" >/mnt/disk/` + bootsFile + ` 2>/dev/null
	sync
fi

host=
fw=/sys/firmware/qemu_fw_cfg/by_name/opt/cairn/hostname/raw
if [ -r "$fw" ]; then
	host=$(head -n 1 "$fw")
elif [ -r /mnt/disk/hostname.txt ]; then
	host=$(head -n 1 /mnt/disk/hostname.txt)
fi
host=$(echo "$host" | tr -cd 'A-Za-z0-9.-')
if [ -n "$host" ]; then
	hostname "$host"
else
	host=none
fi

# nics lists the network cards as " name@mac ... ", the MAC address to tell a card
# that went from one that came in its place under the same name.
nics() {
	for p in /sys/class/net/eth*; do
		[ -e "$p" ] && printf ' %s@%s' "${p##*/}" "$(cat "$p/address")"
	done
	echo ' '
}
# nic_up announces a card, brings it up and asks for a DHCP lease in the background.
nic_up() {
	say "nic $1 $(cat /sys/class/net/$1/address) mtu=$(cat /sys/class/net/$1/mtu)"
	ip link set "$1" up
	udhcpc -f -i "$1" -p "/run/udhcpc.$1.pid" -s /etc/cairn/udhcpc >/dev/null 2>&1 &
}

ip link set lo up
known=$(nics)
for n in $known; do
	nic_up "${n%@*}"
done
# Cards plugged in or pulled while the guest runs (PCI hot-plug), checked each second.
(
	while sleep 1; do
		now=$(nics)
		for n in $known; do
			case "$now" in
			*" $n "*) ;;
			*)
				kill "$(cat "/run/udhcpc.${n%@*}.pid" 2>/dev/null)" 2>/dev/null
				say "nic ${n%@*} gone"
				;;
			esac
		done
		for n in $now; do
			case "$known" in
			*" $n "*) ;;
			*) nic_up "${n%@*}" ;;
			esac
		done
		known=$now
	done
) &

acpid -f -c /etc/acpi -l /run/acpid.log &
acpid=$!
i=0
while [ $i -lt 200 ]; do
	sleep 0.02
	ls -l /proc/$acpid/fd 2>/dev/null | grep -q /dev/input/event && break
	i=$((i + 1))
done
[ $i -lt 200 ] || say "warning: acpid has no input device, the power button will not work"

say "marker=$marker boots=$boots host=$host"
uuid=$(cat /sys/class/dmi/id/product_uuid 2>/dev/null)
say "uuid=${uuid:-none}"
say ready
exec /sbin/init
`
}

// inittab keeps a shell on the serial console and one on the VGA console.
func inittab() string {
	return `# Cairn test image: shells on the consoles; /init did the rest.
ttyS0::respawn:-/bin/sh
tty1::askfirst:-/bin/sh
::ctrlaltdel:/etc/cairn/stop reboot
::shutdown:/etc/cairn/stop
`
}

// powerButton is what acpid runs for the power button (PWRF/00000080).
func powerButton() string {
	return `#!/bin/sh
echo "cairn-test: powering off" >/dev/console
echo "cairn-test: powering off" >/dev/tty0 2>/dev/null
/etc/cairn/stop poweroff
`
}

// stopScript leaves the disk clean, then powers off or reboots when told to.
func stopScript() string {
	return `#!/bin/sh
sync
umount /mnt/disk 2>/dev/null || mount -o remount,ro /mnt/disk 2>/dev/null
sync
case "$1" in
poweroff) poweroff -f ;;
reboot) reboot -f ;;
esac
`
}

// dhcpScript is udhcpc's script: it configures the address and prints it.
func dhcpScript() string {
	return `#!/bin/sh
case "$1" in
deconfig)
	ip addr flush dev "$interface"
	;;
bound|renew)
	ip addr flush dev "$interface"
	ip addr add "$ip/${mask:-24}" dev "$interface"
	[ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
	[ "$1" = bound ] && echo "cairn-test: net $interface ip=$ip" >/dev/console
	;;
esac
exit 0
`
}

// profile is the shells' start-up file.
func profile() string {
	return `export PATH=/sbin:/bin:/usr/sbin:/usr/bin
export PS1='cairn-test:\w\$ '
# The disk is at /mnt/disk; a shell started there would keep it from being unmounted.
cd /
`
}

// guestFiles are the text files of the initrd (path → mode, content); the recipe's
// part of the cache key.
func guestFiles() map[string]guestFile {
	return map[string]guestFile{
		"init":                   {0o755, initScript()},
		"etc/inittab":            {0o644, inittab()},
		"etc/profile":            {0o644, profile()},
		"etc/acpi/PWRF/00000080": {0o755, powerButton()},
		"etc/cairn/stop":         {0o755, stopScript()},
		"etc/cairn/udhcpc":       {0o755, dhcpScript()},
	}
}

type guestFile struct {
	mode    uint64
	content string
}

// recipeText is everything about the recipe that the cache key covers, as text.
func recipeText() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\nlabel %s\nsize %d MiB\nvolume %s\nmodules %s\nsyslinux.cfg\n%s",
		recipeVersion, Label, diskMiB, volumeID, strings.Join(moduleNames, " "), syslinuxCfg())
	files := guestFiles()
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "file %s %o\n%s", n, files[n].mode, files[n].content)
	}
	return b.String()
}
