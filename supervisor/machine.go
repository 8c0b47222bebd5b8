package supervisor

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-os/cairn/supervisor/pid1"
	"github.com/cairn-os/cairn/supervisor/service"
)

// runPID1 is stage 2: PID 1 of the admin's read-only root or of a compute node's
// initramfs. It never returns while it is PID 1: every way out is a poweroff or reboot.
func runPID1(ctx context.Context, cfg Config) error {
	// Mounts come first: the console, /proc/cmdline and module loading need them.
	mountErr := pid1.MountEarly()
	// The kernel starts init without PATH; every program the supervisor runs (and
	// the programs those run) look their helpers up in it.
	os.Setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
	logger := slog.New(pid1.ConsoleHandler(cfg.Debug || kernelArgs()["cairn.debug"] == "1"))
	if mountErr != nil {
		logger.Error("early mounts incomplete", "err", mountErr)
	}
	// The reaper must run before the first child is started (see package hostcmd).
	pid1.StartReaper(ctx)
	logger.Info("cairn supervisor starting", "version", Version, "pid", os.Getpid())

	r, err := role(cfg)
	if err != nil {
		pid1.Fatal(logger, err)
	}
	for _, err := range pid1.LoadModules(logger, readList("/etc/cairn/modules")) {
		logger.Debug("module not loaded", "err", err)
	}
	setHostname(logger, r)
	kvmAccess(logger)

	mgr := service.NewManager(logger.With("component", "service"))
	actions := pid1.HandleSignals(ctx)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	mgrDone := make(chan error, 1)
	go func() { mgrDone <- mgr.Run(runCtx) }()

	roleDone := make(chan error, 1)
	go func() {
		defer pid1.Recover(logger, "role "+r, func(p any) { roleDone <- fmt.Errorf("panic: %v", p) })
		if r == RoleCompute {
			roleDone <- runCompute(runCtx, cfg, logger, mgr)
		} else {
			roleDone <- runAdmin(runCtx, cfg, logger, mgr, pid1.ConsoleWriter())
		}
	}()

	stop := func(stopCtx context.Context) {
		cancel()
		select {
		case <-mgrDone:
		case <-stopCtx.Done():
		}
	}
	select {
	case a := <-actions:
		logger.Info("shutting down", "action", a)
		pid1.Shutdown(ctx, a, stop)
	case err := <-roleDone:
		// The role only returns on a fatal error: stop what runs, then reboot.
		stopCtx, c := context.WithTimeout(context.Background(), 15*time.Second)
		stop(stopCtx)
		c()
		pid1.Fatal(logger, fmt.Errorf("%s role stopped: %w", r, err))
	}
	return nil
}

func setHostname(logger *slog.Logger, role string) {
	name := "cairn-" + role
	if b, err := os.ReadFile("/etc/hostname"); err == nil && strings.TrimSpace(string(b)) != "" && role == RoleAdmin {
		name = strings.TrimSpace(string(b))
	}
	if err := setHostnameSyscall(name); err != nil {
		logger.Warn("set hostname", "err", err)
	}
}

// readList reads a file with one entry a line; # starts a comment.
func readList(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if i := strings.IndexByte(l, '#'); i >= 0 {
			l = l[:i]
		}
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// kvmAccess gives /dev/kvm to group kvm, as udev would: libvirt runs qemu as
// libvirt-qemu (a member of kvm), and devtmpfs makes the device root-only.
func kvmAccess(logger *slog.Logger) {
	const dev = "/dev/kvm"
	if _, err := os.Stat(dev); err != nil {
		logger.Info("no /dev/kvm: servers run under software emulation (TCG)")
		return
	}
	gid := groupID("kvm")
	if gid < 0 {
		return
	}
	if err := os.Chown(dev, 0, gid); err != nil {
		logger.Warn("chown /dev/kvm", "err", err)
	}
	if err := os.Chmod(dev, 0o660); err != nil {
		logger.Warn("chmod /dev/kvm", "err", err)
	}
}

// groupID looks a group up in /etc/group; -1 when it is not there.
func groupID(name string) int {
	b, err := os.ReadFile("/etc/group")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Split(l, ":")
		if len(f) >= 3 && f[0] == name {
			if id, err := strconv.Atoi(f[2]); err == nil {
				return id
			}
		}
	}
	return -1
}
