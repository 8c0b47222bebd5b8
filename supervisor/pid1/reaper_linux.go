package pid1

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/cairn-os/cairn/supervisor/hostcmd"
)

// StartReaper starts reaping every child and orphan of PID 1 and passes their exits
// to hostcmd, until ctx ends. Call it before the first program is started (see
// package hostcmd), and with a context that outlives the services: once the reaper
// stops, zombies pile up.
func StartReaper(ctx context.Context) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGCHLD)
	// SIGCHLDs coalesce anyway (the kernel sends one for many exits): a kick with
	// room for one is enough, the reaper then collects every exited child.
	kick := make(chan struct{}, 1)
	go func() {
		defer signal.Stop(sigs)
		for {
			select {
			case <-ctx.Done():
				return
			case <-sigs:
				select {
				case kick <- struct{}{}:
				default:
				}
			}
		}
	}()
	hostcmd.StartReaper(ctx, kick)
}
