package datadisk

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
)

// What sniff reads: the first and last MiB, where partition tables, file systems,
// RAID, LVM and ZFS labels keep their signatures, and the places of btrfs's backup
// superblocks.
const (
	edgeBytes = 1 << 20
	probeSize = 4096
)

var probeOffsets = []int64{64<<20 + 64<<10, 256<<30 + 64<<10} // btrfs superblock mirrors

// signature is what sniff found on a device.
type signature struct {
	fstype, label, uuid string
}

// sniff looks for the signatures of file systems, partition tables and volume managers
// on a device of size bytes. Blank means it found none and every byte it read is zero;
// anything it cannot name but is not zero is "unknown data".
func sniff(r io.ReaderAt, size int64) (sig signature, blank bool, err error) {
	head := make([]byte, min(size, edgeBytes))
	if err := readFull(r, head, 0); err != nil {
		return sig, false, err
	}
	sig = identify(head)
	blank = sig.fstype == "" && allZero(head)
	if size > edgeBytes {
		tailLen := min(size-edgeBytes, edgeBytes)
		tail := make([]byte, tailLen)
		if err := readFull(r, tail, size-tailLen); err != nil {
			return sig, false, err
		}
		if !allZero(tail) {
			blank = false
			if sig.fstype == "" {
				sig.fstype = identifyTail(tail)
			}
		}
	}
	for _, off := range probeOffsets {
		if off+probeSize > size {
			continue
		}
		b := make([]byte, probeSize)
		if err := readFull(r, b, off); err != nil {
			return sig, false, err
		}
		if !allZero(b) {
			blank = false
		}
	}
	if sig.fstype == "" && !blank {
		sig.fstype = "unknown data"
	}
	return sig, blank, nil
}

// identify names what the first MiB of a device holds, "" for nothing it knows.
func identify(b []byte) signature {
	at := func(off int, magic string) bool {
		return off+len(magic) <= len(b) && string(b[off:off+len(magic)]) == magic
	}
	str := func(off, n int) string {
		if off+n > len(b) {
			return ""
		}
		s := b[off : off+n]
		if i := bytes.IndexByte(s, 0); i >= 0 {
			s = s[:i]
		}
		return strings.TrimRight(string(s), " ")
	}
	uuid := func(off int) string {
		if off+16 > len(b) {
			return ""
		}
		h := hex.EncodeToString(b[off : off+16])
		return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
	}
	le16 := func(off int) uint16 {
		if off+2 > len(b) {
			return 0
		}
		return binary.LittleEndian.Uint16(b[off:])
	}
	le32 := func(off int) uint32 {
		if off+4 > len(b) {
			return 0
		}
		return binary.LittleEndian.Uint32(b[off:])
	}
	const btrfsSuper = 0x10000
	switch {
	case at(0, "LUKS\xba\xbe"):
		return signature{fstype: "crypto_LUKS", uuid: str(168, 40)}
	case at(btrfsSuper+0x40, "_BHRfS_M"):
		return signature{fstype: "btrfs", label: str(btrfsSuper+0x12b, 256), uuid: uuid(btrfsSuper + 0x20)}
	case at(0, "XFSB"):
		return signature{fstype: "xfs", label: str(108, 12), uuid: uuid(32)}
	case le16(1024+0x38) == 0xEF53:
		fstype := "ext2"
		if le32(1024+0x5C)&0x4 != 0 { // has_journal
			fstype = "ext3"
		}
		if le32(1024+0x60)&0x40 != 0 { // extents
			fstype = "ext4"
		}
		return signature{fstype: fstype, label: str(1024+0x78, 16), uuid: uuid(1024 + 0x68)}
	case at(32769, "CD001"):
		return signature{fstype: "iso9660", label: str(32768+40, 32)}
	case at(0, "hsqs"):
		return signature{fstype: "squashfs"}
	case at(4086, "SWAPSPACE2"), at(4086, "SWAP-SPACE"), at(65526, "SWAPSPACE2"):
		return signature{fstype: "swap", label: str(1052, 16), uuid: uuid(1036)}
	case at(512, "LABELONE"), at(1024, "LABELONE"):
		return signature{fstype: "LVM2_member"}
	case le32(0) == 0xa92b4efc, le32(4096) == 0xa92b4efc:
		return signature{fstype: "linux_raid_member"}
	case at(512, "EFI PART"), at(4096, "EFI PART"):
		return signature{fstype: "gpt"}
	case at(3, "NTFS    "):
		return signature{fstype: "ntfs"}
	case at(3, "EXFAT   "):
		return signature{fstype: "exfat"}
	case at(510, "\x55\xaa") && (at(54, "FAT") || at(82, "FAT32")):
		label := ""
		if at(82, "FAT32") && len(b) > 66 && b[66] == 0x29 {
			label = str(71, 11)
		} else if len(b) > 38 && b[38] == 0x29 {
			label = str(43, 11)
		}
		if label == "NO NAME" {
			label = ""
		}
		return signature{fstype: "vfat", label: label}
	case at(510, "\x55\xaa"):
		return signature{fstype: "dos"} // an MBR partition table
	}
	if zfsLabel(b) {
		return signature{fstype: "zfs_member"}
	}
	return signature{}
}

// zfsLabel finds the uberblock magic in the uberblock array of ZFS label 0.
func zfsLabel(b []byte) bool {
	for off := 128 << 10; off+8 <= len(b) && off < 256<<10; off += 1 << 10 {
		m := binary.LittleEndian.Uint64(b[off:])
		if m == 0x00bab10c || m == 0x0cb1ba00_00000000 {
			return true
		}
	}
	return false
}

// identifyTail names signatures kept at the end of a device.
func identifyTail(b []byte) string {
	switch {
	case len(b) >= 512 && string(b[len(b)-512:len(b)-504]) == "EFI PART":
		return "gpt" // the backup GPT header, with the primary one wiped
	case zfsLabel(b[max(0, len(b)-512<<10):]):
		return "zfs_member"
	}
	for off := 0; off+4 <= len(b); off += 4096 {
		if binary.LittleEndian.Uint32(b[off:]) == 0xa92b4efc {
			return "linux_raid_member"
		}
	}
	return ""
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func readFull(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read %d bytes at %d: %w", len(b), off, err)
}
