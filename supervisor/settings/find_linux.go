package settings

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrNoConfig means no attached disk is labelled CAIRNCFG. It is not a failure: the
// caller uses Defaults.
var ErrNoConfig = errors.New("no disk labelled " + DiskLabel + " is attached")

// Where block devices are listed and their nodes live; variables for tests only.
var (
	sysBlock = "/sys/class/block"
	devDir   = "/dev"
)

// Find looks for a disk labelled CAIRNCFG and returns the cairn.yaml in its top folder
// and the device it came from ("/dev/sr1"). It reads the labels and the file itself,
// so no file system driver or mount is needed, and nothing is written. With no names it
// scans every disk, partition and CD drive in /sys/class/block (loop, RAM, NBD and
// floppy devices excepted); names, like "loop3" or "sdb1", restrict it to those. With
// no such disk it returns ErrNoConfig; a CAIRNCFG disk without a readable cairn.yaml is
// an error that says so.
func Find(ctx context.Context, logger *slog.Logger, names ...string) ([]byte, string, error) {
	scanAll := len(names) == 0
	if scanAll {
		entries, err := os.ReadDir(sysBlock)
		if err != nil {
			return nil, "", fmt.Errorf("list block devices in %s: %w", sysBlock, err)
		}
		for _, e := range entries {
			if !skipDevice(e.Name()) {
				names = append(names, e.Name())
			}
		}
	}
	var firstErr error
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return nil, "", err
		}
		dev := filepath.Join(devDir, name)
		data, err := readDevice(dev, logger)
		switch {
		case err == nil:
			return data, dev, nil
		case errors.Is(err, ErrNoConfig):
		case firstErr == nil:
			firstErr = err
		}
	}
	if firstErr != nil {
		return nil, "", firstErr
	}
	return nil, "", ErrNoConfig
}

// skipDevice leaves out devices that cannot be a settings disk, or whose reads would
// hang or crawl (an unconnected NBD, an empty floppy drive).
func skipDevice(name string) bool {
	for _, p := range []string{"loop", "ram", "zram", "nbd", "fd"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// readDevice returns cairn.yaml from dev if dev is labelled CAIRNCFG, and ErrNoConfig
// if it is not (or cannot be read: an empty CD drive).
func readDevice(dev string, logger *slog.Logger) ([]byte, error) {
	// O_NONBLOCK: opening an empty CD drive must not wait for (or close) the tray.
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		logger.Debug("cannot open block device", "device", dev, "err", err)
		return nil, ErrNoConfig
	}
	f := os.NewFile(uintptr(fd), dev)
	defer f.Close()
	fstype, label, err := ReadLabel(f)
	if err != nil {
		logger.Debug("cannot read block device", "device", dev, "err", err)
		return nil, ErrNoConfig
	}
	if !strings.EqualFold(label, DiskLabel) {
		return nil, ErrNoConfig
	}
	logger.Info("settings disk found", "device", dev, "fstype", fstype)
	data, err := readConfig(f, fstype)
	if errors.Is(err, errNoFile) {
		return nil, fmt.Errorf("read settings from %s: the disk is labelled %s but has no %s in its top folder; copy %s there, or detach the disk",
			dev, DiskLabel, FileName, FileName)
	}
	if err != nil {
		return nil, fmt.Errorf("read settings from %s (%s labelled %s): %w", dev, fstype, DiskLabel, err)
	}
	return data, nil
}
