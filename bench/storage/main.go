// Command storage measures Cairn's servers and images side by side with the bare
// commands an administrator would type instead, in one run on this host, and writes
// its section of docs/benchmarks.md (`make bench-storage`): the lines between
// <!-- storage:begin --> and <!-- storage:end -->, replaced when they are there and
// appended otherwise; the rest of the file belongs to the boot benchmark (bench/).
//
//   - a server from a master: POST /api/v1/servers cloning the master and starting the
//     server, against qemu-img create -b + virsh define + virsh start of the same
//     machine definition (virt.DomainXML);
//   - a 10 GiB qcow2 master with 1 GiB written: a linked clone against a full copy,
//     and each against qemu-img create -b and rsync --sparse;
//   - backing that image up and restoring the backup, in MB/s, against rsync --sparse
//     of the same file (and cp --reflink on btrfs).
//
// The image figures are taken with pool 0 on the filesystem of -dir and again, when a
// btrfs loop device can be made, with pool 0 on a btrfs subvolume as on the
// appliance's data disk. Cairn runs in-process: an engine on a temporary state folder
// with this host's libvirtd as its node, its API on a local TLS listener, as the host
// tests set it up. Cairn and the baselines alternate, -runs times each, and the
// report gives every median with the load average and a ratio. Nothing here asserts a
// timing. It needs root, a running libvirtd (`make libvirtd`), qemu-img, qemu-io,
// virsh and rsync; losetup, mkfs.btrfs and btrfs for the btrfs case.
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

// options are the command's flags.
type options struct {
	out     string
	dir     string
	runs    int
	sizeGiB int
	dataMiB int
	btrfs   bool
	timeout time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.out, "out", "docs/benchmarks.md", "the report whose storage section is written")
	flag.StringVar(&o.dir, "dir", os.TempDir(), "where the run's temporary folder is made; its filesystem is the one pool 0 is measured on first")
	flag.IntVar(&o.runs, "runs", 3, "how many times each figure is measured (medians are reported)")
	flag.IntVar(&o.sizeGiB, "size-gib", 10, "virtual size of the big master image, in GiB")
	flag.IntVar(&o.dataMiB, "data-mib", 1024, "how much data is written into the big master image, in MiB")
	flag.BoolVar(&o.btrfs, "btrfs", true, "also measure the images with pool 0 on a btrfs loop device")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Minute, "the longest any one operation may take")
	flag.Parse()

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, logger, o); err != nil {
		logger.Error("storage bench failed", "err", err)
		os.Exit(1)
	}
}
