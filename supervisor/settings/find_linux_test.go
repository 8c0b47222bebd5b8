package settings

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-os/cairn/internal/testutil"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newLoop attaches img read-only to a new loop device and returns its name ("loop7").
func newLoop(t *testing.T, img string) string {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireProgram(t, "losetup")
	out, err := exec.Command("losetup", "--find", "--show", "--read-only", img).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup %s: %v: %s", img, err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "--detach", dev).Run() })
	return filepath.Base(dev)
}

// A CAIRNCFG disk attached as a real block device is found and read.
func TestFindLoopDevice(t *testing.T) {
	other := newLoop(t, makeFAT(t, 16, "DATA", exampleConfig))
	fat := newLoop(t, makeFAT(t, 32, "CAIRNCFG", exampleConfig))
	iso := newLoop(t, makeISO(t, "CAIRNCFG", []byte("pxe: off\n"), "-J"))
	empty := newLoop(t, makeFAT(t, 12, "cairncfg", nil))
	ctx, logger := context.Background(), testLogger(t)

	data, source, err := Find(ctx, logger, other, fat)
	if err != nil || source != "/dev/"+fat || !bytes.Equal(data, exampleConfig) {
		t.Errorf("Find(FAT) = %d bytes from %q, %v; want cairn.yaml from /dev/%s", len(data), source, err, fat)
	}
	data, source, err = Find(ctx, logger, iso)
	if err != nil || source != "/dev/"+iso || string(data) != "pxe: off\n" {
		t.Errorf("Find(ISO) = %q from %q, %v", data, source, err)
	}
	if _, _, err := Find(ctx, logger, other); !errors.Is(err, ErrNoConfig) {
		t.Errorf("Find(disk labelled DATA) err = %v, want ErrNoConfig", err)
	}
	_, _, err = Find(ctx, logger, empty)
	if err == nil || errors.Is(err, ErrNoConfig) || !strings.Contains(err.Error(), "has no cairn.yaml in its top folder") {
		t.Errorf("Find(CAIRNCFG without cairn.yaml) err = %v, want one that says what is missing", err)
	}
	// A good disk wins over a broken one, whatever the order.
	if _, source, err := Find(ctx, logger, empty, fat); err != nil || source != "/dev/"+fat {
		t.Errorf("Find(empty, good) = %q, %v", source, err)
	}
}

// Without names, Find scans every block device but loop, RAM, NBD and floppy devices.
// The scan runs over a fake /sys/class/block and /dev, so no host disk is read.
func TestFindScan(t *testing.T) {
	sys, dev := t.TempDir(), t.TempDir()
	oldSys, oldDev := sysBlock, devDir
	sysBlock, devDir = sys, dev
	t.Cleanup(func() { sysBlock, devDir = oldSys, oldDev })
	put := func(name, img string) {
		os.Mkdir(filepath.Join(sys, name), 0o755)
		var b []byte
		if img != "" {
			b, _ = os.ReadFile(img)
		}
		os.WriteFile(filepath.Join(dev, name), b, 0o644)
	}
	put("loop0", makeFAT(t, 12, "CAIRNCFG", []byte("hostname: from-loop\n")))
	put("sda", "")
	put("sr0", "") // an empty CD drive
	ctx, logger := context.Background(), testLogger(t)
	if _, _, err := Find(ctx, logger); !errors.Is(err, ErrNoConfig) {
		t.Fatalf("Find with no settings disk: %v, want ErrNoConfig", err)
	}
	put("sdb1", makeISO(t, "CAIRNCFG", []byte("hostname: from-usb\n")))
	data, source, err := Find(ctx, logger)
	if err != nil || source != filepath.Join(dev, "sdb1") || string(data) != "hostname: from-usb\n" {
		t.Errorf("Find = %q from %q, %v; want sdb1's cairn.yaml", data, source, err)
	}
}
