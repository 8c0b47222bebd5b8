package pid1

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Deadlines of going down. Each step is bounded: a hung NFS server or a program that
// ignores SIGTERM must not keep the machine from powering off.
const (
	stopServicesTimeout = 30 * time.Second // dependents stop before dependencies, 10 s each at most
	killGrace           = 5 * time.Second  // SIGTERM to everything left, then SIGKILL
	syncTimeout         = 10 * time.Second
	unmountTimeout      = 10 * time.Second
	fatalDelay          = 10 * time.Second // a fatal error stays on screen at least this long
)

// signalAction maps a signal PID 1 receives to what to do. SIGTERM and SIGINT
// (ctrl-alt-del, once HandleSignals turned the kernel's own reboot off) reboot, as for
// busybox and sysvinit; SIGUSR1, SIGUSR2 (busybox `halt` and `poweroff`) and SIGPWR
// (a UPS daemon) power off: an appliance that halts without powering off helps nobody.
func signalAction(sig os.Signal) (Action, bool) {
	switch sig {
	case syscall.SIGTERM, syscall.SIGINT:
		return Reboot, true
	case syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGPWR:
		return Poweroff, true
	}
	return 0, false
}

// HandleSignals returns a channel that receives an Action when PID 1 is asked to go
// down: by a signal (see signalAction), or by the power button (the ACPI button, which
// qemu's `system_powerdown` presses; the `button` module must be loaded when it is not
// built in). Only the first request waits in the channel; more are dropped until it is
// read.
func HandleSignals(ctx context.Context) <-chan Action {
	out := make(chan Action, 1)
	send := func(a Action) {
		select {
		case out <- a:
		default:
		}
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGPWR)
	if IsPID1() {
		// By default ctrl-alt-del reboots at once, without unmounting; with it "off"
		// the kernel sends SIGINT to PID 1 instead. Only PID 1 may decide this: for
		// anyone else (--dev) it would change the host.
		_ = unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF)
		go watchPowerButton(ctx, func() { send(Poweroff) })
	}
	go func() {
		defer signal.Stop(sigs)
		for {
			select {
			case <-ctx.Done():
				return
			case s := <-sigs:
				if a, ok := signalAction(s); ok {
					send(a)
				}
			}
		}
	}()
	return out
}

// Shutdown takes the machine down: it stops the services with stopServices (given a
// deadline), terminates what is left, syncs, unmounts in reverse order and powers off,
// reboots or halts. As PID 1 it never returns. Not PID 1, it only stops the services
// and returns: the rest would take the host down.
func Shutdown(ctx context.Context, how Action, stopServices func(context.Context)) {
	logger := slog.New(ConsoleHandler(false)).With("component", "pid1")
	logger.Info("going down", "action", how)
	if stopServices != nil {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopServicesTimeout)
		stopServices(stopCtx)
		cancel()
	}
	if !IsPID1() {
		return
	}
	finish(logger, how, time.Time{})
}

// Fatal is PID 1's answer to an error it cannot carry on from (after Talos' handle()):
// it shows the error prominently, terminates every process (SIGTERM, then SIGKILL),
// syncs and unmounts with deadlines, and reboots, no sooner than 10 s after the error
// so that it can be read. Callers that can stop the services cleanly do so first.
// Not PID 1, it exits with status 1.
func Fatal(logger *slog.Logger, err error) {
	logger.Error("fatal error", "err", err)
	Banner(ConsoleWriter(), "Cairn stopped on a fatal error:", err.Error(),
		"Stopping everything; the machine reboots in 10 seconds.")
	if !IsPID1() {
		os.Exit(1)
	}
	finish(logger, Reboot, time.Now().Add(fatalDelay))
}

// finish does the last steps as PID 1 and never returns.
func finish(logger *slog.Logger, how Action, notBefore time.Time) {
	killAll(logger)
	// Sync before unmounting: an unmount that has to detach a busy filesystem does not
	// write it out, and sync may hang on a dead NFS server, hence the deadlines.
	bounded(logger, "sync", syncTimeout, unix.Sync)
	bounded(logger, "unmount", unmountTimeout, func() {
		for _, err := range unmountAll("/") {
			logger.Warn("unmount failed", "err", err)
		}
	})
	bounded(logger, "sync", syncTimeout, unix.Sync)
	if d := time.Until(notBefore); d > 0 {
		time.Sleep(d)
	}
	cmd := map[Action]int{
		Poweroff: unix.LINUX_REBOOT_CMD_POWER_OFF,
		Reboot:   unix.LINUX_REBOOT_CMD_RESTART,
		Halt:     unix.LINUX_REBOOT_CMD_HALT,
	}[how]
	logger.Info("bye", "action", how)
	err := unix.Reboot(cmd)
	logger.Error("reboot system call failed", "action", how, "err", err)
	// PID 1 must not exit: the kernel panics. A sleeping loop, not select{}: with no
	// other goroutine runnable the Go runtime would call that a deadlock and exit.
	for {
		time.Sleep(time.Hour)
	}
}

// bounded runs f and waits for it at most d.
func bounded(logger *slog.Logger, what string, d time.Duration, f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		logger.Warn("step timed out, going on", "step", what, "timeout", d)
	}
}

// killAll sends SIGTERM to every process but PID 1, waits up to killGrace for them to
// end, then sends SIGKILL. Only PID 1 may: kill(-1) from anyone else hits the whole
// host.
func killAll(logger *slog.Logger) {
	if !IsPID1() {
		return
	}
	if err := unix.Kill(-1, unix.SIGTERM); errors.Is(err, unix.ESRCH) {
		return
	}
	if waitNoProcesses(killGrace) {
		return
	}
	logger.Warn("processes left after sigterm, killing them")
	_ = unix.Kill(-1, unix.SIGKILL)
	waitNoProcesses(2 * time.Second)
}

// waitNoProcesses waits until no process but PID 1 is left. It reaps too: zombies
// count as processes for kill(-1, 0), and at this point nobody waits for their status.
func waitNoProcesses(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		for {
			var ws unix.WaitStatus
			if pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
		if errors.Is(unix.Kill(-1, 0), unix.ESRCH) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}
