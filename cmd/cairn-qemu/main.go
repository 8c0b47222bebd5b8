// Command cairn-qemu is `make run`: it boots the admin ISO in qemu with a blank data
// disk and a private LAN, waits for the web console, PXE-boots diskless compute VMs
// from the admin over that LAN, and prints where the console is and how to log in.
// Ctrl-C powers every VM down cleanly. The data disk and the admin password stay in
// the work folder, so the next run finds the engine as it was left.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cairn-os/cairn/qemu-tests/lab"
	"github.com/cairn-os/cairn/qemu-tests/vm"
)

func main() {
	iso := flag.String("iso", "build/cairn.iso", "the admin ISO")
	work := flag.String("work", "build/run", "folder for the disks, settings and logs (kept between runs)")
	compute := flag.Int("compute", 1, "how many compute VMs to PXE-boot")
	port := flag.Int("port", 8443, "port on 127.0.0.1 that forwards to the web console")
	firmware := flag.String("firmware", "bios", "bios or uefi")
	flag.Parse()

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, options{iso: *iso, work: *work, compute: *compute, port: *port, firmware: vm.Firmware(*firmware)}); err != nil {
		logger.Error("cairn-qemu failed", "err", err)
		os.Exit(1)
	}
}

type options struct {
	iso, work string
	compute   int
	port      int
	firmware  vm.Firmware
}

func say(format string, args ...any) {
	fmt.Printf("[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func run(ctx context.Context, o options) error {
	if o.firmware != vm.BIOS && o.firmware != vm.UEFI {
		return fmt.Errorf("--firmware %q: write bios or uefi", o.firmware)
	}
	if _, err := os.Stat(o.iso); err != nil {
		return fmt.Errorf("admin ISO: %w (build it with `make iso`)", err)
	}
	iso, _ := filepath.Abs(o.iso)
	work, _ := filepath.Abs(o.work)
	set, fresh, err := loadOrMakeSettings(filepath.Join(work, "cairn.yaml"))
	if err != nil {
		return err
	}
	if fresh {
		say("first run: generated the admin password and wrote %s", filepath.Join(work, "cairn.yaml"))
	}
	accel, why := vm.AccelReason()
	say("accelerator: %s (%s)", accel, why)
	if accel == vm.TCG {
		say("under TCG the admin takes a minute or more to come up, and a compute node a few more")
	}

	l, err := lab.New(ctx, lab.Config{ISO: iso, Work: work, Firmware: o.firmware, Port: o.port, Settings: set, Logf: say})
	if err != nil {
		return err
	}
	// From here on every exit path powers the VMs down. The signal context is done
	// after Ctrl-C, so the shutdown gets a context of its own.
	defer func() {
		// A second Ctrl-C ends this program at once; qemu then gets SIGTERM (its
		// parent-death signal), which still flushes the disks.
		signal.Reset(syscall.SIGINT, syscall.SIGTERM)
		say("stopping: pressing the power button of every VM (up to 60 s, then qemu quits; Ctrl-C again to stop at once)")
		sctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		if err := l.Stop(sctx, 60*time.Second); err != nil {
			say("stopped, with problems: %v", err)
		} else {
			say("all VMs are off; the data disk keeps the engine's state for the next run")
		}
	}()

	say("booting the admin (%d MiB, %d vCPUs, %s): console log %s", lab.AdminMemoryMiB, lab.AdminCPUs, o.firmware, l.Admin.SerialPath())
	if err := l.StartAdmin(ctx); err != nil {
		return err
	}
	if _, err := l.WaitAdmin(ctx); err != nil {
		return failed(l, err)
	}
	for i := range o.compute {
		v, err := l.StartCompute(ctx, i)
		if err != nil {
			return err
		}
		say("PXE-booting %s (MAC %s, %d MiB, %d vCPUs, no disk): console log %s", v.Name, lab.ComputeMAC(i), lab.ComputeMemoryMiB, lab.ComputeCPUs, v.SerialPath())
	}
	for i := range o.compute {
		if _, _, err := l.WaitNode(ctx, lab.ComputeMAC(i), "ready"); err != nil {
			return failed(l, err)
		}
	}
	printBox(l, o)
	<-ctx.Done()
	fmt.Println()
	return nil
}

// failed shows the end of every console when the wait was not cut short by Ctrl-C.
func failed(l *lab.Lab, err error) error {
	if errors.Is(err, context.Canceled) {
		return nil
	}
	fmt.Fprintln(os.Stderr, l.Tails(30))
	return err
}

// loadOrMakeSettings keeps the settings of an earlier run, whose password the engine
// on the data disk already has, or makes new ones with a generated password.
func loadOrMakeSettings(path string) (lab.Settings, bool, error) {
	s, err := lab.LoadSettings(path)
	if err == nil {
		return s, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return s, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return s, false, err
	}
	s = lab.NewSettings(lab.GeneratePassword(), false)
	return s, true, os.WriteFile(path, s.YAML(), 0o600)
}

func printBox(l *lab.Lab, o options) {
	lines := []string{
		"Cairn is running in qemu.",
		"",
		"Web console:  " + l.URL(),
		"Login:        " + lab.AdminUser + " / " + l.Settings.AdminPassword,
		"CA:           " + l.API.CAFingerprint(),
		"CLI:          build/bin/cairn login " + l.URL() + " --user " + lab.AdminUser + " --ca-fingerprint " + l.API.CAFingerprint(),
		"",
		"Console logs: " + l.Admin.SerialPath(),
	}
	for _, c := range l.Computes {
		lines = append(lines, "              "+c.SerialPath())
	}
	stops := "Ctrl-C stops both VMs"
	if len(l.Computes) != 1 {
		stops = fmt.Sprintf("Ctrl-C stops all %d VMs", len(l.VMs()))
	}
	lines = append(lines, "",
		"The browser warns about the certificate: the engine's own CA signed it (fingerprint above).",
		stops+" (power button, up to 60 s); the engine's state stays in "+filepath.Join(o.work, "data.qcow2")+".")
	width := 0
	for _, s := range lines {
		width = max(width, len([]rune(s)))
	}
	fmt.Println("┌" + strings.Repeat("─", width+2) + "┐")
	for _, s := range lines {
		fmt.Println("│ " + s + strings.Repeat(" ", width-len([]rune(s))) + " │")
	}
	fmt.Println("└" + strings.Repeat("─", width+2) + "┘")
}
