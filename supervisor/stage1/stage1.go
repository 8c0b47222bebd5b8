// Package stage1 is the first stage of the admin node's boot, run by the supervisor
// as /init of the ISO's small initramfs (marked by /etc/cairn-stage1). It loads the
// modules that reach the boot medium, finds the CD, USB stick or disk whose ISO 9660
// volume is CAIRN and holds /cairn/root.squashfs, mounts that squashfs read-only under
// a tmpfs overlay as the new root, and switch_roots into it to run
// /usr/lib/cairn/supervisor as PID 1 (stage 2). docs/architecture.md has the layout.
package stage1

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"
)

// Paths of stage 1: what the initramfs holds, where it mounts, what it runs next.
const (
	// ModulesFile lists the modules to load, one per line, in order.
	ModulesFile = "/etc/cairn/modules-stage1"
	// VolumeID is the boot medium's ISO 9660 volume identifier.
	VolumeID = "CAIRN"
	// SquashfsPath is the root filesystem's path on the medium.
	SquashfsPath = "cairn/root.squashfs"
	// Stage2 is the supervisor in the new root.
	Stage2 = "/usr/lib/cairn/supervisor"

	mediumDir = "/run/cairn/medium"
	newRoot   = "/newroot"
)

// layout is where stage 1 mounts things; tests use a temporary one.
type layout struct {
	medium, lower, rw, root string
}

// bootLayout keeps the medium, the squashfs and the tmpfs under /run, which SwitchRoot
// moves into the new root whole: the overlay's layers stay reachable, and stage 2
// finds them at /run/cairn/{medium,lower,rw}.
var bootLayout = layout{medium: mediumDir, lower: "/run/cairn/lower", rw: "/run/cairn/rw", root: newRoot}

// Timeouts: how long to wait for the medium to appear (USB sticks and SCSI scans take
// seconds), and how long a failure stays on the console before the reboot.
var (
	findTimeout = 30 * time.Second
	failPause   = 30 * time.Second
)

// Run runs stage 1. It does not return when it succeeds: the process becomes stage 2.
// On failure it shows what went wrong on the consoles, waits 30 seconds and reboots
// (stage 1 has no shell to drop to); it returns an error only when it cannot even
// reboot, or when it is not PID 1.
func Run(ctx context.Context, logger *slog.Logger) error {
	if os.Getpid() != 1 {
		return errors.New("stage 1: not PID 1 (it runs only as /init of the ISO's initramfs)")
	}
	logger = logger.With("component", "stage1")
	err := run(ctx, logger)
	return fail(ctx, logger, err)
}

func run(ctx context.Context, logger *slog.Logger) error {
	start := time.Now()
	if err := mountEarly(); err != nil {
		// /proc, /sys or /dev missing makes everything below fail: say so first.
		logger.Error("early mounts", "err", err)
	}
	names, err := readModuleList(ModulesFile)
	if err != nil {
		logger.Warn("no module list", "err", err)
	}
	for _, e := range loadModules(logger, names) {
		// Not fatal: most modules drive hardware this machine may not have. If the
		// medium then cannot be found or mounted, this line says why.
		logger.Warn("module not loaded", "err", e)
	}
	logger.Info("modules loaded", "count", len(names), "took", time.Since(start).Round(time.Millisecond))

	dev, err := findMedium(ctx, logger, findTimeout)
	if err != nil {
		return err
	}
	logger.Info("boot medium found", "device", dev, "took", time.Since(start).Round(time.Millisecond))
	if err := mountRoot(logger, bootLayout, dev); err != nil {
		return err
	}
	argv := append([]string{Stage2}, os.Args[1:]...)
	logger.Info("switching root", "init", Stage2, "took", time.Since(start).Round(time.Millisecond))
	return switchRoot(newRoot, Stage2, argv)
}

// fail reports err on every console, waits and reboots.
func fail(ctx context.Context, logger *slog.Logger, err error) error {
	logger.Error("stage 1 failed", "err", err)
	showFailure(err, failPause)
	select {
	case <-ctx.Done():
	case <-time.After(failPause):
	}
	if rerr := reboot(); rerr != nil {
		return fmt.Errorf("stage 1: %w (and reboot: %v)", err, rerr)
	}
	return err
}
