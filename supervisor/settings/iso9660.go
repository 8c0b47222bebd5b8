package settings

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// An ISO 9660 reader for the same two jobs as the FAT one: the volume label, and one
// file from the top folder (with Rock Ridge names when the image has them).

var errNotISO = errors.New("not an ISO 9660 file system")

const isoSector = 2048

type isoFS struct {
	r         io.ReaderAt
	label     string
	blockSize int64
	rootLBA   int64
	rootSize  int64
}

func openISO(r io.ReaderAt) (*isoFS, error) {
	b := make([]byte, isoSector)
	// Volume descriptors start at sector 16 and end with a terminator (type 255); the
	// primary one (type 1) is normally first, but a boot record may come before it.
	for s := int64(16); s < 16+32; s++ {
		if err := readFull(r, b, s*isoSector); err != nil {
			return nil, errNotISO // too small to be an ISO
		}
		if string(b[1:6]) != "CD001" || b[6] != 1 {
			return nil, errNotISO
		}
		switch b[0] {
		case 255:
			return nil, errNotISO
		case 1:
			f := &isoFS{
				r:         r,
				label:     strings.TrimRight(string(b[40:72]), " \x00"),
				blockSize: int64(binary.LittleEndian.Uint16(b[128:])),
				rootLBA:   int64(binary.LittleEndian.Uint32(b[156+2:])),
				rootSize:  int64(binary.LittleEndian.Uint32(b[156+10:])),
			}
			if f.blockSize != 512 && f.blockSize != 1024 && f.blockSize != 2048 {
				return nil, errNotISO
			}
			return f, nil
		}
	}
	return nil, errNotISO
}

type isoEntry struct {
	name  string
	dir   bool
	lba   int64
	size  int64
	multi bool // one extent of a file with several
}

func (f *isoFS) rootEntries() ([]isoEntry, error) {
	if f.rootSize > 4<<20 {
		return nil, fmt.Errorf("root folder is %d bytes, too big for a settings disk", f.rootSize)
	}
	dir := make([]byte, f.rootSize)
	if err := readFull(f.r, dir, f.rootLBA*f.blockSize); err != nil {
		return nil, fmt.Errorf("read root folder: %w", err)
	}
	var out []isoEntry
	for pos := 0; pos < len(dir); {
		l := int(dir[pos])
		if l == 0 { // records do not cross sectors: the rest of this one is padding
			pos = (pos/isoSector + 1) * isoSector
			continue
		}
		if l < 34 || pos+l > len(dir) {
			break
		}
		rec := dir[pos : pos+l]
		pos += l
		nameLen := int(rec[32])
		if 33+nameLen > len(rec) {
			break
		}
		id := rec[33 : 33+nameLen]
		if nameLen == 1 && (id[0] == 0 || id[0] == 1) {
			continue // "." and ".."
		}
		e := isoEntry{
			name:  isoName(string(id)),
			dir:   rec[25]&0x02 != 0,
			multi: rec[25]&0x80 != 0,
			lba:   int64(binary.LittleEndian.Uint32(rec[2:])),
			size:  int64(binary.LittleEndian.Uint32(rec[10:])),
		}
		su := 33 + nameLen
		if nameLen%2 == 0 {
			su++
		}
		if su < len(rec) {
			if rr, ok := rockRidgeName(rec[su:]); ok {
				e.name = rr
			}
		}
		out = append(out, e)
	}
	return out, nil
}

// isoName turns "CAIRN.YAML;1" into "CAIRN.YAML".
func isoName(s string) string {
	if i := strings.IndexByte(s, ';'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSuffix(s, ".")
}

// rockRidgeName reads the NM entries of a record's system use area.
func rockRidgeName(su []byte) (string, bool) {
	var name []byte
	found := false
	for i := 0; i+4 <= len(su); {
		l := int(su[i+2])
		if l < 4 || i+l > len(su) {
			break
		}
		switch string(su[i : i+2]) {
		case "NM":
			if l > 5 && su[i+4]&0x06 == 0 { // not "." or ".."
				name = append(name, su[i+5:i+l]...)
				found = true
			}
		case "ST":
			return string(name), found
		}
		i += l
	}
	return string(name), found
}

func (f *isoFS) readTop(match func(string) bool, max int64) ([]byte, error) {
	ents, err := f.rootEntries()
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if e.dir || !match(e.name) {
			continue
		}
		if e.size > max || e.multi {
			return nil, fmt.Errorf("%s is more than the %d bytes a settings file may have", e.name, max)
		}
		data := make([]byte, e.size)
		if err := readFull(f.r, data, e.lba*f.blockSize); err != nil {
			return nil, fmt.Errorf("read %s: %w", e.name, err)
		}
		return data, nil
	}
	return nil, errNoFile
}
