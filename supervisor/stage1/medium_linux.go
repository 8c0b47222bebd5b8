package stage1

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// pvdOffset is where an ISO 9660 primary volume descriptor starts: sector 16 of
// 2048 bytes. Its volume identifier is bytes 40–71, padded with spaces.
const pvdOffset = 16 * 2048

// VolumeIDOf returns the volume identifier of an ISO 9660 primary volume descriptor,
// and false when pvd is not one.
func VolumeIDOf(pvd []byte) (string, bool) {
	if len(pvd) < 72 || pvd[0] != 1 || string(pvd[1:6]) != "CD001" || pvd[6] != 1 {
		return "", false
	}
	return strings.TrimRight(string(pvd[40:72]), " \x00"), true
}

// mediumPrefixes are the block devices that can hold the medium: CD drives, SCSI,
// SATA and USB disks, virtio disks, NVMe and SD/MMC cards.
var mediumPrefixes = []string{"sr", "sd", "vd", "nvme", "mmcblk", "xvd"}

// blockDevice is an entry of /sys/class/block.
type blockDevice struct {
	Name      string
	Partition bool
}

// candidates orders the devices to look at: whole devices first (a hybrid ISO
// written to a USB stick has its file system at the start of the whole disk; its
// partitions are the EFI image or the same bytes again), then partitions, by name.
func candidates(devs []blockDevice) []string {
	var whole, parts []string
	for _, d := range devs {
		ok := false
		for _, p := range mediumPrefixes {
			if strings.HasPrefix(d.Name, p) {
				ok = true
				break
			}
		}
		switch {
		case !ok:
		case d.Partition:
			parts = append(parts, d.Name)
		default:
			whole = append(whole, d.Name)
		}
	}
	slices.Sort(whole)
	slices.Sort(parts)
	return append(whole, parts...)
}

func listBlockDevices() []blockDevice {
	ents, _ := os.ReadDir("/sys/class/block")
	var devs []blockDevice
	for _, e := range ents {
		_, err := os.Stat(filepath.Join("/sys/class/block", e.Name(), "partition"))
		devs = append(devs, blockDevice{Name: e.Name(), Partition: err == nil})
	}
	return devs
}

// readVolumeID reads the volume identifier of an ISO 9660 file system on dev.
func readVolumeID(dev string) (string, bool) {
	f, err := os.OpenFile(dev, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return "", false // e.g. an empty CD drive: ENOMEDIUM
	}
	defer f.Close()
	pvd := make([]byte, 2048)
	if _, err := f.ReadAt(pvd, pvdOffset); err != nil {
		return "", false
	}
	return VolumeIDOf(pvd)
}

// findMedium waits up to timeout for a block device whose ISO 9660 volume is
// VolumeID and that holds SquashfsPath. It returns the device with the medium
// mounted at mediumDir.
func findMedium(ctx context.Context, logger *slog.Logger, timeout time.Duration) (string, error) {
	if err := os.MkdirAll(mediumDir, 0o755); err != nil {
		return "", fmt.Errorf("mkdir %s: %w", mediumDir, err)
	}
	deadline := time.Now().Add(timeout)
	rejected := map[string]bool{}
	lastReport := time.Now()
	for {
		seen := candidates(listBlockDevices())
		for _, name := range seen {
			if rejected[name] {
				continue
			}
			dev := "/dev/" + name
			id, ok := readVolumeID(dev)
			if !ok || id != VolumeID {
				continue
			}
			if err := unix.Mount(dev, mediumDir, "iso9660", unix.MS_RDONLY, ""); err != nil {
				logger.Warn("cannot mount a CAIRN volume", "device", dev, "err", err)
				rejected[name] = true
				continue
			}
			if _, err := os.Stat(filepath.Join(mediumDir, SquashfsPath)); err != nil {
				logger.Warn("CAIRN volume without the root file system", "device", dev, "err", err)
				_ = unix.Unmount(mediumDir, 0)
				rejected[name] = true
				continue
			}
			return dev, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no boot medium: no block device with ISO 9660 volume %s and /%s after %s (devices: %s)",
				VolumeID, SquashfsPath, timeout, strings.Join(seen, " "))
		}
		if time.Since(lastReport) >= 5*time.Second {
			logger.Info("waiting for the boot medium", "devices", strings.Join(seen, " "))
			lastReport = time.Now()
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}
