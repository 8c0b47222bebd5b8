// Command supervisor is Cairn's PID 1 on the admin and compute nodes, and with --dev
// the same engine on an ordinary Linux host.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/cairn-os/cairn/supervisor"
)

func main() {
	var cfg supervisor.Config
	flag.BoolVar(&cfg.Dev, "dev", false, "run the engine on this Linux host instead of as PID 1")
	flag.StringVar(&cfg.Role, "role", "", "admin or compute (default: cairn.role from the kernel arguments, admin with --dev)")
	flag.StringVar(&cfg.StateDir, "state", "", "state folder with --dev (default ./cairn-state)")
	flag.StringVar(&cfg.Listen, "listen", "", "HTTPS address of the web console and API (default :443, 127.0.0.1:8443 with --dev)")
	flag.StringVar(&cfg.ConfigFile, "config", "", "cairn.yaml to read instead of looking for a CAIRNCFG disk")
	flag.DurationVar(&cfg.Heartbeat, "heartbeat", 0, "node heartbeat interval (default 5s)")
	flag.BoolVar(&cfg.Debug, "debug", false, "log at debug level")
	flag.Parse()

	ctx := context.Background()
	if cfg.Dev {
		// As PID 1 the supervisor reads these signals itself (reboot, poweroff).
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
		defer stop()
	}
	if err := supervisor.Run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "supervisor:", err)
		os.Exit(1)
	}
}
