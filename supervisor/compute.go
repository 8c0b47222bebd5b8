package supervisor

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/cairn-os/cairn/supervisor/agent"
	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/supervisor/netcfg"
	"github.com/cairn-os/cairn/supervisor/pid1"
	"github.com/cairn-os/cairn/supervisor/service"
	"github.com/cairn-os/cairn/supervisor/virt"
	"github.com/vishvananda/netlink"
)

// runCompute brings up a PXE-booted compute node: the network by DHCP, libvirtd, and
// the agent that joins the admin named in the kernel arguments.
func runCompute(ctx context.Context, cfg Config, logger *slog.Logger, mgr *service.Manager) error {
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return fmt.Errorf("read kernel arguments: %w", err)
	}
	args, err := agent.ParseCmdline(string(cmdline))
	if err != nil {
		return fmt.Errorf("kernel arguments: %w", err)
	}
	for _, spec := range libvirtServices() {
		mustAdd(logger, mgr, spec)
	}
	if kernelArgs()["cairn.debug"] == "1" {
		mustAdd(logger, mgr, debugShellService("/dev/ttyS1"))
	}
	if err := computeNetwork(ctx, logger); err != nil {
		return err
	}
	bannerTo(pid1.ConsoleWriter(),
		"Cairn "+Version+" — compute node",
		"Admin:  "+args.AdminURL,
		"This node runs from RAM; it joins the admin and appears on its nodes page.")
	if err := virt.PrepareDirs(engine.DefaultConsoleDir, engine.DefaultConsoleLogDir); err != nil {
		logger.Error("console folders", "err", err)
	}
	nets := &computeNetworks{adminURL: args.AdminURL, log: logger}
	a := agent.New(agent.Config{
		Args:     args,
		Interval: cfg.Heartbeat,
		Logger:   logger,
		Version:  Version,
		Joined: func(ctx context.Context, resp engine.JoinResponse) {
			mountPools(ctx, logger, args.AdminURL, resp)
		},
		ApplyNetwork:   nets.Apply,
		NetworkVersion: nets.Version,
	})
	return a.Run(ctx)
}

// computeNetwork asks for an address on every physical interface until one gets a
// lease: the node does not know which NIC it PXE-booted from.
func computeNetwork(ctx context.Context, logger *slog.Logger) error {
	log := logger.With("component", "network")
	if lo, err := netlink.LinkByName("lo"); err == nil {
		netlink.LinkSetUp(lo)
	}
	backoff := time.Second
	for {
		links, err := netcfg.Physical()
		if err != nil {
			return fmt.Errorf("list network interfaces: %w", err)
		}
		for _, l := range links {
			netcfg.Up(l)
		}
		got := make(chan bool, len(links))
		for _, l := range links {
			go func(l netlink.Link) {
				dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				defer cancel()
				opts := []netcfg.DHCPOption{netcfg.WithResolvConf("/etc/resolv.conf")}
				lease, err := netcfg.DHCP(dctx, l, logger, opts...)
				if err != nil {
					log.Debug("dhcp", "interface", l.Attrs().Name, "err", err)
				} else {
					go netcfg.Maintain(ctx, l, lease, logger, opts...)
				}
				got <- err == nil
			}(l)
		}
		ok := false
		for range links {
			ok = <-got || ok
		}
		if ok {
			return nil
		}
		log.Warn("no dhcp lease on any interface: retrying", "in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}
