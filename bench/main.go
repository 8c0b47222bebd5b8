// Command bench measures Cairn side by side with bare baselines, in one run under the
// same qemu, and writes the figures to docs/benchmarks.md (`make bench`):
//
//   - admin boot: qemu start → /api/v1/health answering through the forwarded port,
//     against a Debian kernel + busybox initramfs booting to a shell;
//   - compute boot: power-on → the node `ready` in /api/v1/nodes, against dnsmasq +
//     iPXE network-booting the same kernel and initramfs to the supervisor's first
//     line on the serial console;
//   - the sizes of the ISO, its squashfs and initramfs, and the compute image;
//   - the admin's memory in use at idle, with every service running.
//
// Guests run one pair at a time. Timings are wall-clock and depend on the machine and
// its load, so the report carries both next to every figure; nothing here asserts a
// timing. It needs root (network namespace, tap device) and the host programs of
// `make deps` plus dnsmasq-base, which it installs with apt-get when it is missing.
package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	var o options
	flag.StringVar(&o.iso, "iso", "build/cairn.iso", "the admin ISO")
	flag.StringVar(&o.compute, "compute", "build/compute", "folder with the compute node's vmlinuz and initramfs")
	flag.StringVar(&o.out, "out", "docs/benchmarks.md", "the report to write")
	flag.StringVar(&o.work, "work", "build/bench", "folder for disks, logs and the PXE server's files (emptied first)")
	flag.IntVar(&o.runs, "runs", 1, "how many times to measure each boot")
	flag.DurationVar(&o.idle, "idle", 30*time.Second, "how long the admin idles with a compute node joined before its memory is read")
	flag.DurationVar(&o.timeout, "timeout", 15*time.Minute, "the longest any one boot may take")
	flag.BoolVar(&o.ra, "dnsmasq-ra", true, "let the dnsmasq baseline answer IPv6 router solicitations and tell iPXE not to wait for proxyDHCP, as Cairn's PXE server does")
	flag.BoolVar(&o.skipCairn, "skip-cairn", false, "measure only the baselines and the sizes")
	flag.Parse()

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, logger, o); err != nil {
		logger.Error("bench failed", "err", err)
		os.Exit(1)
	}
}
