// Package qimg is a small typed wrapper around qemu-img, through which Cairn does
// everything with VM disk images: probe, create, make copy-on-write children,
// convert, grow, flatten and check them, and vet uploaded files before they are used.
//
// qemu-img is driven as a program because no well-kept Go library writes qcow2, VMDK,
// VDI and VHDX, and because qemu-img is the same code that qemu runs the images with.
// Every call names the image format explicitly (-f) except the probe in Info, so a
// raw file whose first bytes look like a qcow2 header is never taken for one. Files
// are created and converted into a temporary name beside the destination and renamed
// at the end (package filecopy), so no half-written image ever carries a real name.
package qimg

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cairn-os/cairn/supervisor/filecopy"
)

// Format is a disk image format as Cairn names it.
type Format string

// The formats Cairn stores. ISO is a raw file with an ISO 9660 file system (installer
// media); it is attached as a CD-ROM and never written.
const (
	QCOW2 Format = "qcow2"
	Raw   Format = "raw"
	ISO   Format = "iso"
	VMDK  Format = "vmdk"
	VDI   Format = "vdi"
	VHDX  Format = "vhdx"
)

// Formats lists every format Cairn stores, the default (qcow2) first.
var Formats = []Format{QCOW2, Raw, ISO, VMDK, VDI, VHDX}

var (
	// ErrInvalid means bad input: an unknown format, a size of 0, a shrink, an upload
	// that must be refused. The message says what to fix.
	ErrInvalid = errors.New("invalid")
	// ErrExists means the destination file exists; nothing here overwrites a file. It
	// is the same value as filecopy.ErrExists.
	ErrExists = filecopy.ErrExists
	// ErrInUse means another program (a running VM) holds the image's lock.
	ErrInUse = errors.New("in use")
	// ErrCorrupt means qemu-img check found errors in the image's metadata.
	ErrCorrupt = errors.New("corrupt")
)

// formatList is "qcow2, raw, iso, vmdk, vdi or vhdx", for messages.
var formatList = func() string {
	s := make([]string, len(Formats))
	for i, f := range Formats {
		s[i] = string(f)
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}()

// ParseFormat reads a format name, ignoring case and surrounding spaces.
func ParseFormat(s string) (Format, error) {
	f := Format(strings.ToLower(strings.TrimSpace(s)))
	if f.Known() {
		return f, nil
	}
	return "", fmt.Errorf("image format %q: %w: use %s", s, ErrInvalid, formatList)
}

// Known reports whether f is one of Formats. Info may return formats that qemu-img
// knows and Cairn does not store (vpc, qed, luks…).
func (f Format) Known() bool {
	for _, g := range Formats {
		if f == g {
			return true
		}
	}
	return false
}

// Ext is the file name extension for f, without the dot: "img" for raw, otherwise the
// format's name.
func (f Format) Ext() string {
	if f == Raw {
		return "img"
	}
	return string(f)
}

// QemuName is what qemu-img and libvirt call the format: "raw" for an ISO.
func (f Format) QemuName() string {
	if f == ISO {
		return string(Raw)
	}
	return string(f)
}

func (f Format) check() error {
	if f.Known() {
		return nil
	}
	return fmt.Errorf("image format %q: %w: use %s", string(f), ErrInvalid, formatList)
}
