// Package datadisk finds, formats and mounts the admin node's data disk, which holds
// the engine's state and storage pool 0 (docs/architecture.md, "Data disk"). A disk
// labelled CAIRNDATA is mounted as it is; otherwise the first blank disk is formatted
// btrfs with that label. A disk that holds anything else is never written: it is
// checked for data again immediately before mkfs runs, and mkfs runs without --force.
package datadisk

import (
	"fmt"
	"strings"
)

// Label is the btrfs label of the data disk.
const Label = "CAIRNDATA"

// Mountpoint is where the data disk is mounted on the admin node.
const Mountpoint = "/var/lib/cairn"

// Folders below the mountpoint (docs/architecture.md).
const (
	StateDir = "state"   // the engine's state: cairn.db, pki/
	Pool0Dir = "pools/0" // storage pool 0
)

// MinSize is the smallest disk that is formatted as a data disk.
const MinSize = 1 << 30

// Disk is a whole disk as List sees it.
type Disk struct {
	// Name is the kernel's name ("vdb"); Path its device node ("/dev/vdb").
	Name, Path string
	SizeBytes  uint64
	// Model is the model the disk reports, empty for virtual disks that report none.
	Model string
	// Removable is the kernel's removable flag (USB sticks, card readers).
	Removable bool
	ReadOnly  bool
	// FSType is what the disk holds: a file system ("btrfs", "ext4", "vfat"), a
	// partition table ("gpt", "dos"), a volume manager ("LVM2_member"), "unknown data",
	// or "" when it is blank.
	FSType string
	// Label and UUID are the file system's, when it has them.
	Label, UUID string
	// Blank means no signature was found and the first and last MiB are all zeros.
	Blank bool
	// Mounted means the disk or one of its partitions is mounted, used as swap, or
	// held by another block device (LVM, RAID, dm-crypt).
	Mounted bool
}

// IsDataDisk reports whether d is a Cairn data disk: btrfs labelled CAIRNDATA.
func (d Disk) IsDataDisk() bool {
	return d.FSType == "btrfs" && d.Label == Label
}

// describe says in a few words what is on the disk, for messages.
func (d Disk) describe() string {
	switch {
	case d.Blank:
		return "is blank"
	case d.FSType == "unknown data":
		return "holds data of a kind Cairn does not recognise"
	case d.FSType == "gpt" || d.FSType == "dos":
		return "has a partition table"
	case d.Label != "":
		return fmt.Sprintf("holds %s labelled %q", d.FSType, d.Label)
	default:
		return "holds " + d.FSType
	}
}

// Action is what Prepare does with the chosen disk.
type Action int

// Actions.
const (
	// None: no disk is suitable; the engine keeps its state in memory.
	None Action = iota
	// Mount an existing CAIRNDATA disk.
	Mount
	// Format a blank disk, then mount it.
	Format
)

// String returns the action's name.
func (a Action) String() string {
	switch a {
	case Mount:
		return "mount"
	case Format:
		return "format"
	}
	return "none"
}

// Choose picks the data disk. A CAIRNDATA disk always wins, so that a blank disk added
// later is never formatted in its place. Otherwise it is the first blank disk that is
// writable, not removable, not in use and at least MinSize. With no suitable disk the
// action is None and the error says why each disk was passed over and what to attach;
// the caller warns loudly and keeps state in memory. Several CAIRNDATA disks of
// different file systems are an error too: which one holds the state is not knowable.
func Choose(disks []Disk) (Disk, Action, error) {
	var data []Disk
	for _, d := range disks {
		if d.IsDataDisk() {
			data = append(data, d)
		}
	}
	if len(data) > 0 {
		for _, d := range data[1:] {
			if d.UUID != data[0].UUID {
				return Disk{}, None, fmt.Errorf("choose data disk: %s are all labelled %s but are different file systems; detach all but the one that holds the engine's state, then reboot",
					names(data), Label)
			}
		}
		// Several disks of one file system are one multi-device btrfs: mounting any
		// member mounts it.
		if data[0].ReadOnly {
			return Disk{}, None, fmt.Errorf("choose data disk: %s is labelled %s but is read-only; make it writable (a write-protect switch, or the VM's disk settings) and reboot", data[0].Path, Label)
		}
		return data[0], Mount, nil
	}
	var passed []string
	for _, d := range disks {
		switch {
		case !d.Blank:
			passed = append(passed, fmt.Sprintf("%s %s and is left alone", d.Name, d.describe()))
		case d.Mounted:
			passed = append(passed, d.Name+" is in use")
		case d.ReadOnly:
			passed = append(passed, d.Name+" is read-only")
		case d.Removable:
			passed = append(passed, d.Name+" is removable")
		case d.SizeBytes < MinSize:
			passed = append(passed, fmt.Sprintf("%s has %d MiB", d.Name, d.SizeBytes>>20))
		default:
			return d, Format, nil
		}
	}
	why := "there are no disks"
	if len(passed) > 0 {
		why = strings.Join(passed, "; ")
	}
	return Disk{}, None, fmt.Errorf("no data disk (%s): attach a blank disk of at least %d GiB, or one labelled %s, and reboot. Until then the engine keeps its state in memory and loses it at power-off",
		why, MinSize>>30, Label)
}

func names(disks []Disk) string {
	var s []string
	for _, d := range disks {
		s = append(s, d.Path)
	}
	return strings.Join(s, ", ")
}
