package settings

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// File system types that ReadLabel recognises, named as mount(8) names them.
const (
	FSTypeFAT = "vfat"
	FSTypeISO = "iso9660"
)

// MaxFileSize is the largest cairn.yaml that is read.
const MaxFileSize = 1 << 20

var errNoFile = errors.New("no " + FileName + " in the top folder")

// ReadLabel returns the type and volume label of the FAT or ISO 9660 file system on r
// (a whole disk, a partition, a CD or an image file). For anything else it returns
// empty strings and no error; the error is for a device it could not read. For an ISO
// image it is the primary volume descriptor's volume identifier; for FAT the label in
// the root folder, or else the one in the boot sector.
func ReadLabel(r io.ReaderAt) (fstype, label string, err error) {
	if iso, err := openISO(r); err == nil {
		return FSTypeISO, iso.label, nil
	}
	fat, err := openFAT(r)
	if errors.Is(err, errNotFAT) {
		return "", "", nil
	}
	if err != nil {
		return "", "", err
	}
	label, err = fat.label()
	if err != nil {
		return FSTypeFAT, fat.bpbLabel, nil // a broken root folder still has the boot sector's label
	}
	return FSTypeFAT, label, nil
}

// readConfig reads cairn.yaml (or cairn.yml) from the top folder of the file system on
// r. An ISO 9660 image without Rock Ridge names may only have room for "CAIRN.YAM".
func readConfig(r io.ReaderAt, fstype string) ([]byte, error) {
	match := func(name string) bool {
		for _, want := range []string{"cairn.yaml", "cairn.yml", "cairn.yam"} {
			if strings.EqualFold(name, want) {
				return true
			}
		}
		return false
	}
	switch fstype {
	case FSTypeISO:
		iso, err := openISO(r)
		if err != nil {
			return nil, err
		}
		return iso.readTop(match, MaxFileSize)
	case FSTypeFAT:
		fat, err := openFAT(r)
		if err != nil {
			return nil, err
		}
		return fat.readTop(match, MaxFileSize)
	}
	return nil, fmt.Errorf("file system type %q is not FAT or ISO 9660", fstype)
}
