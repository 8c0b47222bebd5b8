// Package supervisor is Cairn's PID 1. In the admin's stage-1 initramfs it finds the
// boot medium and switches to the read-only root; as PID 1 of that root (or of a
// compute node's initramfs) it mounts, loads modules, reaps, brings up the network,
// supervises the system services and runs the engine (admin) or the node agent
// (compute). With --dev it runs the same engine on an ordinary Linux host.
package supervisor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/cairn-os/cairn/supervisor/pid1"
	"github.com/cairn-os/cairn/supervisor/stage1"
)

// Version is the build's version, set by the linker.
var Version = "dev"

// Config is what the command line gives the supervisor.
type Config struct {
	Dev        bool
	Role       string
	StateDir   string
	Listen     string
	ConfigFile string
	Heartbeat  time.Duration
	Debug      bool
}

// Roles of a machine.
const (
	RoleAdmin   = "admin"
	RoleCompute = "compute"
)

// Marker files the image builders put into the initramfs images.
const (
	stage1Marker  = "/etc/cairn-stage1"
	computeMarker = "/etc/cairn-compute"
)

// Run runs the supervisor until ctx ends (with --dev) or the machine powers off.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Dev {
		logger := newLogger(os.Stderr, cfg.Debug)
		return runDev(ctx, cfg, logger)
	}
	if _, err := os.Stat(stage1Marker); err == nil {
		logger := newLogger(os.Stdout, cfg.Debug)
		return stage1.Run(ctx, logger)
	}
	if !pid1.IsPID1() {
		return errors.New("not PID 1: run with --dev to use this host's libvirtd and a state folder")
	}
	return runPID1(ctx, cfg)
}

func newLogger(w *os.File, debug bool) *slog.Logger {
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// kernelArgs reads cairn.* and other key=value arguments from /proc/cmdline.
func kernelArgs() map[string]string {
	args := map[string]string{}
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return args
	}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	sc.Split(bufio.ScanWords)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		args[k] = v
	}
	return args
}

// role decides what this machine is: the flag, then the kernel argument, then the
// image it booted from.
func role(cfg Config) (string, error) {
	r := cfg.Role
	if r == "" {
		r = kernelArgs()["cairn.role"]
	}
	if r == "" {
		r = RoleAdmin
		if _, err := os.Stat(computeMarker); err == nil {
			r = RoleCompute
		}
	}
	if r != RoleAdmin && r != RoleCompute {
		return "", fmt.Errorf("role %q: use admin or compute", r)
	}
	return r, nil
}
