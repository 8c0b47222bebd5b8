package settings

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf16"
)

// A FAT reader small enough to trust: it finds the volume label and reads one file
// from the top folder, without the kernel's vfat driver (which the admin's kernel may
// not have loaded, and which would need a mount).

var errNotFAT = errors.New("not a FAT file system")

type fatFS struct {
	r         io.ReaderAt
	kind      int    // 12, 16 or 32
	bps       int64  // bytes per sector
	cluster   int64  // bytes per cluster
	fatStart  int64  // byte offset of the first FAT
	rootStart int64  // byte offset of the fixed root folder (FAT12/16)
	rootBytes int64  // size of the fixed root folder (FAT12/16)
	rootClus  uint32 // first cluster of the root folder (FAT32)
	dataStart int64  // byte offset of cluster 2
	clusters  uint32 // number of data clusters
	bpbLabel  string // the label in the boot sector, "" when none
}

func openFAT(r io.ReaderAt) (*fatFS, error) {
	b := make([]byte, 512)
	if err := readFull(r, b, 0); err != nil {
		return nil, err
	}
	le16 := func(o int) uint32 { return uint32(binary.LittleEndian.Uint16(b[o:])) }
	le32 := func(o int) uint32 { return binary.LittleEndian.Uint32(b[o:]) }
	if b[510] != 0x55 || b[511] != 0xAA || (b[0] != 0xEB && b[0] != 0xE9) {
		return nil, errNotFAT
	}
	bps, spc, reserved, nfats := le16(11), uint32(b[13]), le16(14), uint32(b[16])
	rootEnts, tot16, fat16, tot32, fat32 := le16(17), le16(19), le16(22), le32(32), le32(36)
	switch bps {
	case 512, 1024, 2048, 4096:
	default:
		return nil, errNotFAT
	}
	if spc == 0 || spc&(spc-1) != 0 || reserved == 0 || nfats == 0 || nfats > 4 {
		return nil, errNotFAT // NTFS and exFAT have no FATs here; an MBR fails the checks
	}
	fatSz, totSec := fat16, tot16
	if fatSz == 0 {
		fatSz = fat32
	}
	if totSec == 0 {
		totSec = tot32
	}
	rootSectors := (rootEnts*32 + bps - 1) / bps
	firstData := uint64(reserved) + uint64(nfats)*uint64(fatSz) + uint64(rootSectors)
	if fatSz == 0 || uint64(totSec) <= firstData {
		return nil, errNotFAT
	}
	f := &fatFS{
		r:         r,
		bps:       int64(bps),
		cluster:   int64(bps) * int64(spc),
		fatStart:  int64(reserved) * int64(bps),
		rootStart: (int64(reserved) + int64(nfats)*int64(fatSz)) * int64(bps),
		rootBytes: int64(rootEnts) * 32,
		dataStart: int64(firstData) * int64(bps),
		clusters:  uint32((uint64(totSec) - firstData) / uint64(spc)),
	}
	// Microsoft's rule: the FAT type follows from the cluster count alone.
	labelAt, sigAt := 43, 38
	switch {
	case f.clusters < 4085:
		f.kind = 12
	case f.clusters < 65525:
		f.kind = 16
	default:
		f.kind, labelAt, sigAt = 32, 71, 66
		f.rootClus = le32(44)
	}
	if (f.kind == 32) != (fat16 == 0) || (f.kind == 32) != (rootEnts == 0) {
		return nil, errNotFAT
	}
	if b[sigAt] == 0x29 {
		f.bpbLabel = cleanFATLabel(b[labelAt : labelAt+11])
	}
	return f, nil
}

func cleanFATLabel(b []byte) string {
	s := strings.TrimRight(string(b), " \x00")
	if s == "NO NAME" {
		return ""
	}
	return s
}

// label returns the volume label. Like blkid, it prefers the label entry in the root
// folder, which is what Windows and fatlabel change, over the boot sector's copy.
func (f *fatFS) label() (string, error) {
	ents, err := f.rootEntries()
	if err != nil {
		return "", err
	}
	for _, e := range ents {
		if e.attr&0x08 != 0 && e.attr&0x10 == 0 {
			return cleanFATLabel([]byte(e.raw)), nil
		}
	}
	return f.bpbLabel, nil
}

type fatEntry struct {
	name    string // the long name, or the short one as NAME.EXT
	raw     string // the 11 bytes of the short name
	attr    byte
	cluster uint32
	size    uint32
}

func (f *fatFS) rootEntries() ([]fatEntry, error) {
	var dir []byte
	if f.kind == 32 {
		var err error
		if dir, err = f.chain(f.rootClus, 4<<20); err != nil {
			return nil, fmt.Errorf("read root folder: %w", err)
		}
	} else {
		dir = make([]byte, f.rootBytes)
		if err := readFull(f.r, dir, f.rootStart); err != nil {
			return nil, fmt.Errorf("read root folder: %w", err)
		}
	}
	return parseFATDir(dir), nil
}

func parseFATDir(dir []byte) []fatEntry {
	var out []fatEntry
	var long []uint16
	var longSum byte
	for i := 0; i+32 <= len(dir); i += 32 {
		e := dir[i : i+32]
		if e[0] == 0x00 {
			break // end of folder
		}
		if e[0] == 0xE5 {
			long = nil
			continue // deleted
		}
		attr := e[11]
		if attr&0x3F == 0x0F { // a piece of a long name, stored last piece first
			seq := int(e[0] & 0x1F)
			if e[0]&0x40 != 0 {
				long = make([]uint16, 13*seq)
				longSum = e[13]
			}
			if seq == 0 || long == nil || 13*seq > len(long) || e[13] != longSum {
				long = nil
				continue
			}
			var part []uint16
			for _, o := range []int{1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30} {
				part = append(part, binary.LittleEndian.Uint16(e[o:]))
			}
			copy(long[13*(seq-1):], part)
			continue
		}
		raw := make([]byte, 11)
		copy(raw, e[:11])
		if raw[0] == 0x05 {
			raw[0] = 0xE5
		}
		ent := fatEntry{
			raw:     string(raw),
			attr:    attr,
			cluster: uint32(binary.LittleEndian.Uint16(e[20:]))<<16 | uint32(binary.LittleEndian.Uint16(e[26:])),
			size:    binary.LittleEndian.Uint32(e[28:]),
		}
		if long != nil && shortNameSum(e[:11]) == longSum {
			n := len(long)
			for j, c := range long {
				if c == 0 {
					n = j
					break
				}
			}
			ent.name = string(utf16.Decode(long[:n]))
		} else {
			ent.name = strings.TrimRight(string(raw[:8]), " ")
			if ext := strings.TrimRight(string(raw[8:]), " "); ext != "" {
				ent.name += "." + ext
			}
		}
		long = nil
		out = append(out, ent)
	}
	return out
}

func shortNameSum(name []byte) byte {
	var sum byte
	for _, c := range name {
		sum = (sum>>1 | sum<<7) + c
	}
	return sum
}

// chain reads the clusters of a file or folder, at most max bytes.
func (f *fatFS) chain(start uint32, max int64) ([]byte, error) {
	var out []byte
	c := start
	for n := uint32(0); ; n++ {
		if c < 2 || c >= f.clusters+2 || n > f.clusters {
			return nil, fmt.Errorf("cluster chain from %d is broken at %d", start, c)
		}
		if int64(len(out))+f.cluster > max {
			return nil, fmt.Errorf("cluster chain from %d is longer than %d bytes", start, max)
		}
		buf := make([]byte, f.cluster)
		if err := readFull(f.r, buf, f.dataStart+int64(c-2)*f.cluster); err != nil {
			return nil, err
		}
		out = append(out, buf...)
		next, err := f.next(c)
		if err != nil {
			return nil, err
		}
		if next == 0 {
			return out, nil
		}
		c = next
	}
}

// next returns the cluster after c, or 0 at the end of the chain.
func (f *fatFS) next(c uint32) (uint32, error) {
	var b [4]byte
	var v, end uint32
	switch f.kind {
	case 12:
		if err := readFull(f.r, b[:2], f.fatStart+int64(c+c/2)); err != nil {
			return 0, err
		}
		v = uint32(binary.LittleEndian.Uint16(b[:]))
		if c&1 == 1 {
			v >>= 4
		}
		v &= 0xFFF
		end = 0xFF8
	case 16:
		if err := readFull(f.r, b[:2], f.fatStart+int64(c)*2); err != nil {
			return 0, err
		}
		v, end = uint32(binary.LittleEndian.Uint16(b[:])), 0xFFF8
	default:
		if err := readFull(f.r, b[:], f.fatStart+int64(c)*4); err != nil {
			return 0, err
		}
		v, end = binary.LittleEndian.Uint32(b[:])&0x0FFFFFFF, 0x0FFFFFF8
	}
	if v >= end {
		return 0, nil
	}
	return v, nil
}

// readTop reads a file from the root folder whose name matches.
func (f *fatFS) readTop(match func(string) bool, max int64) ([]byte, error) {
	ents, err := f.rootEntries()
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if e.attr&0x18 != 0 || !match(e.name) {
			continue // folders and the volume label
		}
		if int64(e.size) > max {
			return nil, fmt.Errorf("%s is %d bytes, more than the %d a settings file may have", e.name, e.size, max)
		}
		if e.size == 0 {
			return []byte{}, nil
		}
		data, err := f.chain(e.cluster, int64(e.size)+f.cluster)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", e.name, err)
		}
		if int64(len(data)) < int64(e.size) {
			return nil, fmt.Errorf("read %s: its clusters hold %d of its %d bytes", e.name, len(data), e.size)
		}
		return data[:e.size], nil
	}
	return nil, errNoFile
}

// readFull reads exactly len(b) bytes at off.
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
