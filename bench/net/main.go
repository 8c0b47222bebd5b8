// Command net measures Cairn's connections data plane (supervisor/vnet) in one run on
// this host and writes its section of docs/benchmarks.md (`make bench-net`): the lines
// between <!-- net:begin --> and <!-- net:end -->, replaced when they are there and
// appended otherwise; the rest of the file belongs to the other benchmarks.
//
//   - TCP throughput through a 1:1 IP mapping as a ratio to plain routing between the
//     same namespaces: iperf3 from an outside namespace, through an admin namespace,
//     to a server attached to the admin's network bridge the way a guest's tap is;
//     once routed to the server's internal address with no nftables table, once to
//     the mapping's external address and DNATed by the table vnet.Apply writes;
//   - the time of one vnet.Apply that adds 1,000 mappings to four networks, of one
//     that changes nothing, and of one that changes one mapping's port list while
//     1,000 exist, with the number of rules the table then has.
//
// Everything runs in network namespaces it makes and removes again, also when it
// fails or is interrupted (SIGINT, SIGTERM); the host's own namespace is not touched.
// Nothing here asserts a figure. It needs root, ip (iproute2) and iperf3.
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
	out      string
	runs     int
	seconds  int
	mappings int
}

func main() {
	var o options
	flag.StringVar(&o.out, "out", "docs/benchmarks.md", "the report whose net section is written")
	flag.IntVar(&o.runs, "runs", 3, "how many times each figure is measured (medians are reported)")
	flag.IntVar(&o.seconds, "seconds", 5, "how long each iperf3 run sends, in seconds")
	flag.IntVar(&o.mappings, "mappings", 1000, "how many mappings the Apply figures hold")
	flag.Parse()

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	// The first signal cancels ctx: the running iperf3 or Apply stops and the deferred
	// clean-up removes the namespaces. Later signals are ignored until it is done.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	start := time.Now()
	if err := run(ctx, logger, o); err != nil {
		logger.Error("net bench failed", "err", err, "after", time.Since(start).Round(time.Second).String())
		stop()
		os.Exit(1)
	}
}
