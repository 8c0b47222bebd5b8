package qimg

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// ProbeTimeout bounds Info and Chain when the caller's context has no deadline of its
// own. qemu-img opens the files a VMDK descriptor names, and one that names a FIFO
// would make it wait for ever.
const ProbeTimeout = time.Minute

// Info is what qemu-img reports about one image file.
type Info struct {
	// Filename is the file as qemu-img opened it: the absolute path given to Info, or
	// a backing file's path in a Chain.
	Filename string `json:"filename,omitempty"`
	// Format is the detected format: ISO for a raw file with an ISO 9660 signature
	// ("CD001" at byte 0x8001). It may be one that Cairn does not store (see Known).
	Format Format `json:"format"`
	// VirtualSize is the size of the disk the VM sees, in bytes.
	VirtualSize int64 `json:"virtual_size"`
	// ActualSize is the space the file takes on disk, in bytes.
	ActualSize int64 `json:"actual_size"`
	// ClusterSize is the allocation unit of qcow2, VMDK, VDI and VHDX images.
	ClusterSize int64 `json:"cluster_size,omitempty"`
	// BackingFile is the (absolute) file this copy-on-write image reads unchanged
	// blocks from; empty when the image stands alone.
	BackingFile string `json:"backing_file,omitempty"`
	// BackingFormat is the backing file's format as recorded in the image (raw for an
	// ISO, which qemu cannot tell apart).
	BackingFormat Format `json:"backing_format,omitempty"`
	// Encrypted is true for an image that needs a key to read.
	Encrypted bool `json:"encrypted"`
	// Dirty is true for a qcow2 image with lazy refcounts that was not closed cleanly;
	// qemu repairs it on the next open.
	Dirty bool `json:"dirty"`
	// Corrupt is true for a qcow2 image that qemu found damaged and marked so; it can
	// only be opened read-only until `qemu-img check -r all` repairs it.
	Corrupt bool `json:"corrupt,omitempty"`
	// DataFile is the external data file of a qcow2 image (its guest data lives
	// there, not in the image file); empty for ordinary images.
	DataFile string `json:"data_file,omitempty"`
	// Subformat is a VMDK's create type: monolithicSparse and streamOptimized are one
	// file; the others are a descriptor that names other files (Extents).
	Subformat string `json:"subformat,omitempty"`
	// Extents are the files a VMDK's data lives in; for a single-file VMDK, the file
	// itself.
	Extents []string `json:"extents,omitempty"`
}

// qemuInfo is `qemu-img info --output=json`, the fields we read.
type qemuInfo struct {
	Filename            string `json:"filename"`
	Format              string `json:"format"`
	VirtualSize         int64  `json:"virtual-size"`
	ActualSize          int64  `json:"actual-size"`
	ClusterSize         int64  `json:"cluster-size"`
	BackingFilename     string `json:"backing-filename"`
	FullBackingFilename string `json:"full-backing-filename"`
	BackingFormat       string `json:"backing-filename-format"`
	Encrypted           bool   `json:"encrypted"`
	Dirty               bool   `json:"dirty-flag"`
	FormatSpecific      struct {
		Data struct {
			Corrupt    bool   `json:"corrupt"`
			DataFile   string `json:"data-file"`
			CreateType string `json:"create-type"`
			Extents    []struct {
				Filename string `json:"filename"`
			} `json:"extents"`
		} `json:"data"`
	} `json:"format-specific"`
}

func (q qemuInfo) info() Info {
	in := Info{
		Filename:      q.Filename,
		Format:        Format(q.Format),
		VirtualSize:   q.VirtualSize,
		ActualSize:    q.ActualSize,
		ClusterSize:   q.ClusterSize,
		BackingFile:   q.FullBackingFilename,
		BackingFormat: Format(q.BackingFormat),
		Encrypted:     q.Encrypted,
		Dirty:         q.Dirty,
		Corrupt:       q.FormatSpecific.Data.Corrupt,
		DataFile:      q.FormatSpecific.Data.DataFile,
		Subformat:     q.FormatSpecific.Data.CreateType,
	}
	if in.BackingFile == "" {
		// qemu leaves out the full name when it cannot make one ("json:{…}" names).
		in.BackingFile = q.BackingFilename
	}
	for _, e := range q.FormatSpecific.Data.Extents {
		in.Extents = append(in.Extents, e.Filename)
	}
	if in.Format == Raw && isISO(in.Filename) {
		in.Format = ISO
	}
	return in
}

// isISO reports whether the file has an ISO 9660 volume descriptor: "CD001" at byte
// 0x8001 (sector 16 of 2048 bytes, after the type byte).
func isISO(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	sig := make([]byte, 5)
	if _, err := f.ReadAt(sig, 0x8001); err != nil {
		return false
	}
	return bytes.Equal(sig, []byte("CD001"))
}

// Info probes one image file and reports its format, sizes and backing file. It runs
// `qemu-img info --output=json -U`: -U (force share) lets it read an image that a
// running VM holds open, and without --backing-chain qemu-img does not open the
// backing file at all, so probing an untrusted upload reads only that file (and, for
// a VMDK descriptor, the extents it names: CheckUpload refuses those).
func (t Tool) Info(ctx context.Context, path string) (Info, error) {
	path, err := filepath.Abs(path)
	if err != nil {
		return Info{}, err
	}
	op := "inspect image " + path
	var q qemuInfo
	if err := t.probe(ctx, op, path, &q, "info", "--output=json", "-U", path); err != nil {
		return Info{}, err
	}
	return q.info(), nil
}

// Chain reports an image and its backing files, the image itself first. Unlike Info it
// opens each backing file in turn, so use it only on Cairn's own images.
func (t Tool) Chain(ctx context.Context, path string) ([]Info, error) {
	path, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	op := "inspect backing chain of " + path
	var qs []qemuInfo
	if err := t.probe(ctx, op, path, &qs, "info", "--output=json", "-U", "--backing-chain", path); err != nil {
		return nil, err
	}
	infos := make([]Info, len(qs))
	for i, q := range qs {
		infos[i] = q.info()
	}
	return infos, nil
}

// probe runs a qemu-img command that prints JSON into v.
func (t Tool) probe(ctx context.Context, op, path string, v any, args ...string) error {
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, ProbeTimeout)
		defer cancel()
	}
	out, err := t.run(ctx, op, args...)
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%s: %w: qemu-img gave no answer; the image may name a file that blocks reads (a FIFO or a device)", op, ctx.Err())
	}
	if err != nil {
		return err
	}
	if err := json.NewDecoder(bytes.NewReader(jsonPart(out))).Decode(v); err != nil {
		return fmt.Errorf("%s: read qemu-img's answer: %w", op, err)
	}
	return nil
}

// jsonPart returns out from the first line that starts a JSON object or array:
// qemu-img's warnings and error lines share the combined output with its JSON.
func jsonPart(out []byte) []byte {
	for i := 0; i < len(out); i++ {
		if (out[i] == '{' || out[i] == '[') && (i == 0 || out[i-1] == '\n') {
			return out[i:]
		}
	}
	return out
}
