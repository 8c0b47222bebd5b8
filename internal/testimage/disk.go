package testimage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// qcow2Magic starts every qcow2 file.
var qcow2Magic = []byte{'Q', 'F', 'I', 0xfb}

// imageFormat tells qcow2 from raw by the file's first bytes.
func imageFormat(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	head := make([]byte, 4)
	if _, err := io.ReadFull(f, head); err != nil {
		return "", fmt.Errorf("read %s: %w: not a disk image", path, err)
	}
	if bytes.Equal(head, qcow2Magic) {
		return "qcow2", nil
	}
	return "raw", nil
}

// ReadDiskFile reads a file from the root folder of the test disk in an image file
// (raw or qcow2), with mtools. It works while a VM runs from the image (qcow2 is read
// with qemu-img's shared lock), but then sees only what the guest has synced.
func ReadDiskFile(ctx context.Context, path, name string) ([]byte, error) {
	if !validFileName.MatchString(name) {
		return nil, fmt.Errorf("read %q on %s: %w file name", name, path, ErrInvalid)
	}
	var out []byte
	err := withRaw(ctx, path, false, func(raw string) error {
		b, err := runner.Run(ctx, "mtype", "-i", raw, "::"+name)
		if err != nil {
			return fmt.Errorf("read %s on %s: %w (is it a test image? mtools must be installed)", name, path, err)
		}
		out = b
		return nil
	})
	return out, err
}

// WriteDiskFile writes a file into the root folder of the test disk in an image file
// (raw or qcow2), replacing it if it exists. A qcow2 image keeps its backing file and
// gets only the clusters that changed. No VM may run from the image.
func WriteDiskFile(ctx context.Context, path, name string, data []byte) error {
	if !validFileName.MatchString(name) {
		return fmt.Errorf("write %q on %s: %w file name", name, path, ErrInvalid)
	}
	tmp, err := os.MkdirTemp("", "cairn-testimage-")
	if err != nil {
		return fmt.Errorf("write %s on %s: %w", name, path, err)
	}
	defer os.RemoveAll(tmp)
	src := filepath.Join(tmp, "content")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		return fmt.Errorf("write %s on %s: %w", name, path, err)
	}
	return withRaw(ctx, path, true, func(raw string) error {
		if _, err := runner.Run(ctx, "mcopy", "-o", "-i", raw, src, "::"+name); err != nil {
			return fmt.Errorf("write %s on %s: %w (is it a test image? mtools must be installed)", name, path, err)
		}
		return nil
	})
}

// chunk is the unit in which a changed raw copy is written back into a qcow2 image.
const chunk = 64 << 10

// withRaw runs f on a raw view of the image at path: the file itself when it is raw,
// else a temporary raw copy. When write is set, the chunks f changed in the copy are
// written back into the qcow2 image with qemu-io, which keeps its backing chain and
// everything f did not touch.
func withRaw(ctx context.Context, path string, write bool, f func(raw string) error) error {
	format, err := imageFormat(path)
	if err != nil {
		return err
	}
	if format == "raw" {
		return f(path)
	}
	tmp, err := os.MkdirTemp("", "cairn-testimage-")
	if err != nil {
		return fmt.Errorf("raw copy of %s: %w", path, err)
	}
	defer os.RemoveAll(tmp)
	raw := filepath.Join(tmp, "disk.raw")
	args := []string{"convert", "-f", "qcow2", "-O", "raw", path, raw}
	if !write {
		args = append([]string{"convert", "-U"}, args[1:]...)
	}
	if _, err := runner.Run(ctx, "qemu-img", args...); err != nil {
		return fmt.Errorf("raw copy of %s: %w (install qemu-utils; is a VM running from it?)", path, err)
	}
	if !write {
		return f(raw)
	}
	before, err := chunkSums(raw)
	if err != nil {
		return err
	}
	if err := f(raw); err != nil {
		return err
	}
	after, err := chunkSums(raw)
	if err != nil {
		return err
	}
	in, err := os.Open(raw)
	if err != nil {
		return fmt.Errorf("write back into %s: %w", path, err)
	}
	defer in.Close()
	// One qemu-io run writes every changed run of chunks, each from its own file.
	var cmds []string
	for i := 0; i < len(after); {
		if i < len(before) && before[i] == after[i] {
			i++
			continue
		}
		j := i
		for j < len(after) && (j >= len(before) || before[j] != after[j]) {
			j++
		}
		buf := make([]byte, (j-i)*chunk)
		n, err := in.ReadAt(buf, int64(i)*chunk)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("write back into %s: %w", path, err)
		}
		part := filepath.Join(tmp, fmt.Sprintf("part-%d", i))
		if err := os.WriteFile(part, buf[:n], 0o600); err != nil {
			return fmt.Errorf("write back into %s: %w", path, err)
		}
		cmds = append(cmds, "-c", fmt.Sprintf("write -q -s %s %d %d", part, int64(i)*chunk, n))
		i = j
	}
	if len(cmds) == 0 {
		return nil
	}
	args = append([]string{"-f", "qcow2"}, cmds...)
	out, err := runner.Run(ctx, "qemu-io", append(args, path)...)
	if err != nil {
		return fmt.Errorf("write back into %s: %w (is a VM running from it?)", path, err)
	}
	// qemu-io reports a failed command on its output but still exits 0.
	if s := strings.TrimSpace(string(out)); s != "" {
		return fmt.Errorf("write back into %s: qemu-io: %s", path, s)
	}
	return nil
}

// chunkSums hashes each chunk of a file.
func chunkSums(path string) ([][32]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	var sums [][32]byte
	buf := make([]byte, chunk)
	for {
		n, err := io.ReadFull(f, buf)
		if n > 0 {
			sums = append(sums, sha256.Sum256(buf[:n]))
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return sums, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
	}
}
