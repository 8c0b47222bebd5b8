// Package testimage builds a small bootable VM disk for Cairn's host-tier and qemu-tier
// tests and benchmarks, from Debian packages only: the locked kernel
// (linux-image-amd64, through package image's cache), busybox-static for userspace
// and the host's syslinux as the boot loader. The disk is one whole-disk FAT file
// system ("superfloppy", label CAIRNTEST) holding syslinux, the kernel, an initrd, the
// marker file cairn-test.txt and a boot counter boots.txt; it is made without root
// (mkfs.vfat, syslinux --install and mtools work on the image file).
//
// It boots under qemu's TCG with machine type pc from a virtio-blk, virtio-scsi or IDE
// disk. The guest's /init loads the disk, FAT and ACPI button modules, mounts its
// disk read-write, counts the boot, and prints on the serial console (ttyS0)
//
//	cairn-test: marker=<marker> boots=<n> host=<hostname or none>
//	cairn-test: uuid=<SMBIOS system UUID, libvirt's domain UUID>
//	cairn-test: ready
//
// and then waits: an ACPI power-button press (virsh shutdown, qemu's
// system_powerdown) prints "cairn-test: powering off", unmounts the disk and powers
// off. Serial and VGA consoles have a shell. The host name comes from the fw_cfg entry
// opt/cairn/hostname (libvirt: <sysinfo type='fwcfg'>, qemu: -fw_cfg
// name=opt/cairn/hostname,string=NAME) or the file hostname.txt on the disk. Each
// network card (virtio-net or e1000), present at boot or hot-plugged later, is
// announced as "cairn-test: nic eth0 <mac> mtu=<mtu>" and gets a DHCP lease in the
// background, announced as "cairn-test: net eth0 ip=<address>"; a card pulled while
// the guest runs is announced as "cairn-test: nic eth0 gone".
//
// Build and BuildRaw cache the image under <cache>/testimage (the cache is $CAIRN_CACHE
// or ~/.cache/cairn). The cached file is shared: boot a copy or an overlay (Overlay),
// never the cached file itself.
package testimage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Serial console lines of the guest, for tests to wait on (see WaitForLine).
var (
	// MarkerLine matches the boot's report; its groups are the marker, the boot count
	// and the host name ("none" when it has none).
	MarkerLine = regexp.MustCompile(`cairn-test: marker=(\S+) boots=(\d+) host=(\S+)`)
	// ReadyLine is printed once the guest listens for the power button.
	ReadyLine = regexp.MustCompile(`cairn-test: ready`)
	// PowerOffLine is printed when the power button was pressed, before the guest
	// unmounts its disk and powers off.
	PowerOffLine = regexp.MustCompile(`cairn-test: powering off`)
	// UUIDLine carries the SMBIOS system UUID (libvirt sets the domain's UUID).
	UUIDLine = regexp.MustCompile(`cairn-test: uuid=(\S+)`)
	// NetLine is printed when a network card got a DHCP lease; its groups are the
	// interface and the address.
	NetLine = regexp.MustCompile(`cairn-test: net (\S+) ip=(\S+)`)
	// NICLine is printed for each network card, at boot and when one is hot-plugged;
	// its groups are the interface, its MAC address (lower case) and its MTU, which
	// a virtio card takes from the host (libvirt's <mtu>).
	NICLine = regexp.MustCompile(`cairn-test: nic (\S+) ([0-9a-f:]{17}) mtu=(\d+)`)
	// NICGoneLine is printed when a network card was pulled (PCI hot-unplug); its
	// group is the interface.
	NICGoneLine = regexp.MustCompile(`cairn-test: nic (\S+) gone`)
)

// Build makes (or takes from the cache) the test image and returns the path of a qcow2
// file. It is cached under <cache>/testimage/<key>.qcow2, where the key hashes the
// locked kernel package, busybox-static (the locked one, or the host's version when
// the lock has none), the host's syslinux version and the build recipe, so repeated
// runs and a fresh clone on the same machine reuse it. Two processes may build at
// once: each writes a temporary file and renames it into place. repo is the
// repository root (see RepoRoot), for configs/packages.lock. Do not boot or change the
// returned file: copy it or make an Overlay.
func Build(ctx context.Context, repo string) (string, error) {
	b, err := newBuilder(repo)
	if err != nil {
		return "", err
	}
	return b.qcow2(ctx)
}

// BuildRaw is Build for a raw image (<key>.raw), for tests that edit files on it with
// mtools. The same rule holds: copy it before booting or changing it.
func BuildRaw(ctx context.Context, repo string) (string, error) {
	b, err := newBuilder(repo)
	if err != nil {
		return "", err
	}
	return b.raw(ctx)
}

// RepoRoot walks up from the working folder to the go.mod of Cairn's module and
// returns its folder, so that tests in any package can find the repository.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("repository root: %w", err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && modulePath(string(b)) == "github.com/cairn-os/cairn" {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("repository root: no go.mod of github.com/cairn-os/cairn above %s: run from inside the clone", dir)
		}
	}
}

func modulePath(gomod string) string {
	for _, line := range strings.Split(gomod, "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`)
		}
	}
	return ""
}

// Overlay makes path a qcow2 image backed by base (raw or qcow2), for a test that
// boots the cached image without changing it. The overlay names base by its absolute
// path, so base must stay where it is.
func Overlay(ctx context.Context, base, path string) error {
	abs, err := filepath.Abs(base)
	if err != nil {
		return fmt.Errorf("overlay %s: %w", path, err)
	}
	format, err := imageFormat(abs)
	if err != nil {
		return fmt.Errorf("overlay %s: %w", path, err)
	}
	if _, err := runner.Run(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-F", format, "-b", abs, path); err != nil {
		return fmt.Errorf("overlay %s: %w (install qemu-utils)", path, err)
	}
	return nil
}

// ErrInvalid is returned for a marker or a file name the image cannot hold.
var ErrInvalid = errors.New("invalid")

var (
	validMarker   = regexp.MustCompile(`^[!-~]{1,200}$`)
	validFileName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
)

// SetMarker rewrites cairn-test.txt inside an image file, raw or qcow2 (an overlay
// keeps its backing file: only the changed clusters are written to it), so that a
// test can change the image and see the change on the next boot. The marker is
// printable ASCII without blanks, at most 200 characters. The image must not be in use
// by a running VM.
func SetMarker(ctx context.Context, path, marker string) error {
	if !validMarker.MatchString(marker) {
		return fmt.Errorf("set marker %q: %w: use 1 to 200 printable ASCII characters without blanks", marker, ErrInvalid)
	}
	return WriteDiskFile(ctx, path, markerFile, []byte(marker+"\n"))
}

// Marker reads cairn-test.txt back from an image file (raw or qcow2).
func Marker(ctx context.Context, path string) (string, error) {
	b, err := ReadDiskFile(ctx, path, markerFile)
	if err != nil {
		return "", err
	}
	return firstLine(b), nil
}

// Boots reads the boot counter boots.txt from an image file: how many times a guest
// booted from it (0 for a fresh image).
func Boots(ctx context.Context, path string) (int, error) {
	b, err := ReadDiskFile(ctx, path, bootsFile)
	if err != nil {
		return 0, err
	}
	var n int
	if _, err := fmt.Sscan(firstLine(b), &n); err != nil {
		return 0, fmt.Errorf("read %s on %s: %q is no number", bootsFile, path, firstLine(b))
	}
	return n, nil
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(s)
}
