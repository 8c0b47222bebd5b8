package supervisor

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"time"

	"github.com/cairn-os/cairn/supervisor/engine"
)

// mountPools mounts the admin's shared pools over NFSv4, each at the same path as on
// the admin, so that qcow2 backing files mean the same on every node. A mount that
// fails is retried with backoff until it works or ctx ends; one already mounted is
// left alone (a re-join after an admin restart finds them mounted).
func mountPools(ctx context.Context, logger *slog.Logger, adminURL string, resp engine.JoinResponse) {
	log := logger.With("component", "pools")
	u, err := url.Parse(adminURL)
	if err != nil {
		log.Error("admin url", "err", err)
		return
	}
	// An NFSv4 server tells its clients apart by a client ID made from the host
	// name; nodes booted from the same image share "cairn-compute", and the server
	// would take two nodes for one, mixing up their opens and locks (qemu's image
	// locks). Give each node its own ID before it mounts anything.
	if id, err := machineID(); err == nil {
		if err := os.WriteFile("/sys/module/nfs/parameters/nfs4_unique_id", []byte(id), 0o644); err != nil {
			log.Warn("nfs client id", "err", err)
		}
	}
	if resp.LocalDir != "" {
		if err := os.MkdirAll(resp.LocalDir, 0o755); err != nil {
			log.Error("local storage", "dir", resp.LocalDir, "err", err)
		}
	}
	for _, p := range resp.Pools {
		go func(p engine.PoolExport) {
			backoff := 2 * time.Second
			for ctx.Err() == nil {
				err := mountPool(ctx, u.Hostname(), p.Path)
				if err == nil {
					log.Info("pool mounted", "pool", p.ID, "path", p.Path)
					return
				}
				log.Warn("mount pool failed: retrying", "pool", p.ID, "path", p.Path, "in", backoff, "err", err)
				select {
				case <-ctx.Done():
				case <-time.After(backoff):
				}
				backoff = min(backoff*2, time.Minute)
			}
		}(p)
	}
}

func mountPool(ctx context.Context, host, path string) error {
	if isMountpoint(path) {
		return nil
	}
	if err := os.MkdirAll(path, 0o755); err != nil {
		return err
	}
	mctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	// hard: qemu must never see an I/O error because the admin rebooted; it waits.
	out, err := hostRunner.Run(mctx, "/sbin/mount.nfs4", host+":"+path, path, "-o", "vers=4.2,hard,proto=tcp,timeo=600,noatime")
	if err != nil {
		return fmt.Errorf("mount.nfs4 %s:%s: %w (%s)", host, path, err, out)
	}
	return nil
}
