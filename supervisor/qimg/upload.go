package qimg

import (
	"fmt"
	"path/filepath"
)

// CheckUpload decides whether an uploaded file, probed with Info, may be stored. It
// refuses, with ErrInvalid and a message saying what to do:
//   - a format Cairn does not store, or one other than declared (an empty declared
//     format accepts what was detected; raw and iso are told apart by the ISO 9660
//     signature);
//   - any image that would make qemu read another file of the host: a backing file
//     (the classic attack is a small qcow2 whose backing file is /etc/shadow, which
//     the VM then reads as its disk), a qcow2 external data file, or a VMDK
//     descriptor with extents in other files;
//   - encrypted images, which Cairn has no key for, images qemu marked corrupt, and
//     empty files.
func CheckUpload(info Info, declared Format) error {
	op := "check uploaded image"
	if info.Filename != "" {
		op += " " + filepath.Base(info.Filename)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w: %s", op, ErrInvalid, fmt.Sprintf(format, args...))
	}
	if !info.Format.Known() {
		return bad("it is a %s image, which Cairn does not store; convert it to qcow2 first (qemu-img convert -O qcow2)", info.Format)
	}
	if declared != "" {
		if err := declared.check(); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		switch {
		case declared == info.Format:
		case declared == ISO && info.Format == Raw:
			return bad("it was declared iso but has no ISO 9660 signature; declare it raw if it is a disk image")
		case declared == Raw && info.Format == ISO:
			return bad("it was declared raw but is an ISO 9660 image; declare it iso to attach it as a CD-ROM")
		default:
			return bad("it was declared %s but is a %s image; declare it %s, or convert it to %s before uploading", declared, info.Format, info.Format, declared)
		}
	}
	if info.BackingFile != "" {
		return bad("it has a backing file (%s), which would let it read a file of the host; upload a standalone image (qemu-img convert -O %s makes one)", info.BackingFile, info.Format.QemuName())
	}
	if info.DataFile != "" {
		return bad("its data lives in an external file (%s), which would let it read a file of the host; upload a standalone image (qemu-img convert -O qcow2 makes one)", info.DataFile)
	}
	if info.Format == VMDK {
		switch info.Subformat {
		case "monolithicSparse", "streamOptimized":
		default:
			return bad("it is a %s VMDK, whose data lives in other files; upload a single-file VMDK (qemu-img convert -O vmdk makes one) or a qcow2", info.Subformat)
		}
		for _, e := range info.Extents {
			if e != info.Filename {
				return bad("its descriptor names another file (%s) as an extent, which would let it read a file of the host; convert it with qemu-img convert -O vmdk and upload the result", e)
			}
		}
	}
	if info.Encrypted {
		return bad("it is encrypted and Cairn has no key for it; upload an unencrypted image")
	}
	if info.Corrupt {
		return bad("qemu marked it corrupt; repair it with qemu-img check -r all before uploading")
	}
	if info.VirtualSize <= 0 {
		return bad("it is empty")
	}
	return nil
}
