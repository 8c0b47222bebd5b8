// Package supervisor is Cairn's PID 1. In the admin's stage-1 initramfs it finds the
// boot medium and switches to the read-only root; as PID 1 of that root (or of a
// compute node's initramfs) it mounts, loads modules, reaps, brings up the network,
// supervises the system services and runs the engine (admin) or the node agent
// (compute). With --dev it runs the same engine on an ordinary Linux host.
package supervisor

import (
	"context"
	"errors"
	"time"
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

// Run runs the supervisor until ctx ends (with --dev) or the machine powers off.
func Run(ctx context.Context, cfg Config) error {
	return errors.New("not yet wired")
}
