package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// errNoRoot is returned when the benchmark does not run as root.
var errNoRoot = errors.New("run the net benchmark as root: it makes network namespaces, links and nftables tables")

// run measures everything and writes the report's section.
func run(ctx context.Context, log *slog.Logger, o options) error {
	if os.Geteuid() != 0 {
		return errNoRoot
	}
	if o.runs < 1 || o.seconds < 1 {
		return fmt.Errorf("-runs %d -seconds %d: give at least 1 of each", o.runs, o.seconds)
	}
	if err := requirePrograms(); err != nil {
		return err
	}
	out, err := filepath.Abs(o.out)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Dir(out)); err != nil {
		return fmt.Errorf("report %s: %w: run from the repository's root or give -out", o.out, err)
	}

	start := time.Now()
	r := Report{Date: start, Machine: readMachine(ctx), Runs: o.runs}
	s := newSite(log)
	defer s.close()
	log.Info("namespaces", "prefix", "cbnet-"+s.id+"-")
	r.Throughput = measureThroughput(ctx, log, s, o)
	r.Apply = measureApply(ctx, log, s, o)
	s.close()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("interrupted, report not written: %w", err)
	}
	r.Machine.LoadEnd = loadAverage()
	r.Took = time.Since(start)
	md := r.Markdown()
	fmt.Print(md)
	if err := writeSection(out, md); err != nil {
		return err
	}
	log.Info("report written", "file", out, "took", r.Took.Round(time.Second).String())
	return nil
}

// requirePrograms says which program is missing and how to install it.
func requirePrograms() error {
	for _, p := range []struct{ name, pkg string }{
		{"iperf3", "iperf3"},
		{"ip", "iproute2"},
		{"ss", "iproute2"},
	} {
		if _, err := exec.LookPath(p.name); err != nil {
			return fmt.Errorf("%s is not installed: apt-get install %s (or make deps)", p.name, p.pkg)
		}
	}
	return nil
}
