package vm

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// SettingsLabel is the volume label the admin looks for to find cairn.yaml.
const SettingsLabel = "CAIRNCFG"

// SettingsFormat is the filesystem of a settings disk.
type SettingsFormat string

// The filesystems a settings disk can have; the admin reads both.
const (
	SettingsFAT SettingsFormat = "fat"
	SettingsISO SettingsFormat = "iso9660"
)

// SettingsDisk writes a disk image at path, labelled CAIRNCFG, that holds cairn.yaml
// with content: a 1.44 MB FAT image (mkfs.vfat + mcopy from mtools) or an ISO 9660
// image (xorriso). Neither needs root or a loop device. An existing image is replaced.
func SettingsDisk(ctx context.Context, path string, content []byte, format SettingsFormat) error {
	os.Remove(path)
	switch format {
	case SettingsFAT, "":
		mkfs, err := findProgram("mkfs.vfat")
		if err != nil {
			return fmt.Errorf("settings disk %s: %w", path, err)
		}
		if err := run(ctx, mkfs, "-n", SettingsLabel, "-C", path, "1440"); err != nil {
			return fmt.Errorf("settings disk %s: %w", path, err)
		}
		src, err := os.CreateTemp("", "cairn-yaml-")
		if err != nil {
			return fmt.Errorf("settings disk %s: %w", path, err)
		}
		defer os.Remove(src.Name())
		if _, err := src.Write(content); err != nil {
			src.Close()
			return fmt.Errorf("settings disk %s: %w", path, err)
		}
		src.Close()
		if err := run(ctx, "mcopy", "-i", path, src.Name(), "::cairn.yaml"); err != nil {
			return fmt.Errorf("settings disk %s: %w", path, err)
		}
	case SettingsISO:
		dir, err := os.MkdirTemp("", "cairn-cfg-")
		if err != nil {
			return fmt.Errorf("settings disk %s: %w", path, err)
		}
		defer os.RemoveAll(dir)
		if err := os.WriteFile(filepath.Join(dir, "cairn.yaml"), content, 0o644); err != nil {
			return fmt.Errorf("settings disk %s: %w", path, err)
		}
		if err := run(ctx, "xorriso", "-as", "mkisofs", "-quiet", "-V", SettingsLabel, "-J", "-R", "-o", path, dir); err != nil {
			return fmt.Errorf("settings disk %s: %w", path, err)
		}
	default:
		return fmt.Errorf("settings disk %s: format %q is neither fat nor iso9660", path, format)
	}
	return nil
}

// CreateDisk makes a blank qcow2 disk image of size (qemu-img syntax: "20G") unless
// path already exists, and reports whether it made one. A disk that exists is kept:
// it holds the state of earlier boots.
func CreateDisk(ctx context.Context, path, size string) (created bool, err error) {
	if _, err := os.Stat(path); err == nil {
		return false, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, fmt.Errorf("create disk %s: %w", path, err)
	}
	if err := run(ctx, "qemu-img", "create", "-q", "-f", "qcow2", path, size); err != nil {
		return false, fmt.Errorf("create disk %s: %w", path, err)
	}
	return true, nil
}

// findProgram looks a program up on PATH and in the sbin folders, which a non-root
// PATH often lacks.
func findProgram(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found (install it with `make deps`)", name)
}

// run runs a program and returns an error with its output when it fails.
func run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	// mtools refuses images whose geometry it does not recognise unless told not to check.
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
