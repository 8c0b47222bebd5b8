package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-os/cairn/qemu-tests/vm"
)

type options struct {
	iso, compute, out, work string
	// isoCopy is the copy of iso in work that the admin boots.
	isoCopy       string
	runs          int
	idle, timeout time.Duration
	ra, skipCairn bool
}

// runner carries what every measurement needs.
type runner struct {
	o      options
	logger *slog.Logger
	// own holds the PIDs of the qemu processes this program started, so that the
	// report can count the others.
	own map[int]bool
}

func run(ctx context.Context, logger *slog.Logger, o options) error {
	if os.Geteuid() != 0 {
		return errNotRoot
	}
	if o.runs < 1 {
		return fmt.Errorf("--runs %d: measure at least once", o.runs)
	}
	var err error
	for _, p := range []*string{&o.iso, &o.compute, &o.out, &o.work} {
		if *p, err = filepath.Abs(*p); err != nil {
			return err
		}
	}
	if !o.skipCairn {
		if _, err := os.Stat(o.iso); err != nil {
			return fmt.Errorf("admin ISO: %w (build it with `make iso`)", err)
		}
	}
	if _, _, err := computeImage(o.compute); err != nil {
		return err
	}
	if err := os.RemoveAll(o.work); err != nil {
		return fmt.Errorf("work folder: %w", err)
	}
	if err := os.MkdirAll(o.work, 0o755); err != nil {
		return fmt.Errorf("work folder: %w", err)
	}

	if !o.skipCairn {
		// The guests boot a copy, so that a rebuild of the ISO during the run does not
		// change what is measured, and the sizes are those of the ISO that booted.
		iso := filepath.Join(o.work, "cairn.iso")
		if err := copyFile(o.iso, iso); err != nil {
			return fmt.Errorf("copy the admin ISO: %w", err)
		}
		o.isoCopy = iso
	}
	r := &runner{o: o, logger: logger, own: map[int]bool{}}
	rep := Report{Date: time.Now().UTC(), Machine: readMachine(), Runs: o.runs, DnsmasqRA: o.ra, Idle: o.idle}
	rep.Accel, rep.AccelReason = vm.AccelReason()
	logger.Info("bench starting", "accel", rep.Accel, "load", rep.Machine.Load, "runs", o.runs)

	var b baselineFiles
	if b.kernel, b.initrd, err = vm.BaselineImage(ctx, vm.CacheDir()); err != nil {
		return err
	}
	b.iso = filepath.Join(o.work, "baseline.iso")
	if err := vm.BaselineISO(ctx, vm.CacheDir(), b.iso, ""); err != nil {
		logger.Warn("no baseline ISO", "err", err)
		b.iso = ""
	}
	tmp := ""
	if !o.skipCairn {
		tmp = o.work
	}
	rep.Sizes, rep.Notes = sizes(ctx, o.iso, o.compute, tmp, b)

	// Each run measures a baseline, then Cairn's counterpart, so that both sides of a
	// ratio see the machine in about the same state; one guest (or the admin and one
	// compute node) at a time.
	for i := 1; i <= o.runs; i++ {
		dir := filepath.Join(o.work, "run"+strconv.Itoa(i))
		logger.Info("run", "n", i, "of", o.runs)

		s, m, err := bootBaseline(ctx, r, dir, b, o.idle)
		rep.AdminBoot.add(false, s, err)
		if err == nil {
			rep.BaselineMemory = append(rep.BaselineMemory, m)
		}
		if b.iso != "" {
			s, err := bootBaselineISO(ctx, r, dir, b)
			rep.ISOBoot.add(false, s, err)
		}
		s, err = bootPXEBaseline(ctx, r, dir, o.compute)
		rep.ComputeBoot.add(false, s, err)
		if err := ctx.Err(); err != nil {
			return err
		}

		if o.skipCairn {
			continue
		}
		res, err := measureCairn(ctx, r, filepath.Join(dir, "cairn"))
		if err != nil {
			logger.Error("cairn side", "err", err)
		}
		rep.AdminBoot.add(true, res.Admin, reachedErr(res.Admin, err))
		rep.ComputeBoot.add(true, res.Compute, reachedErr(res.Compute, err))
		rep.ComputeFirstLine.add(true, res.ComputeFirstLine, reachedErr(res.ComputeFirstLine, err))
		if err == nil {
			rep.AdminMemory = append(rep.AdminMemory, res.Memory)
			rep.Services = res.Services
			rep.AdminUptime = res.AdminUptime
		} else if rep.CairnError == "" {
			rep.CairnError = firstLine(err.Error())
			rep.CairnConsoleErrors = res.AdminErrors
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	rep.Machine.LoadEnd = loadAverage()

	if err := os.WriteFile(o.out, []byte(keepSections(o.out, rep.Markdown())), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	logger.Info("report written", "path", o.out)
	return nil
}

// reachedErr returns the run's error for a figure that was not reached, and nil for one
// that was (a later step may still have failed).
func reachedErr(s Sample, err error) error {
	if s.Seconds > 0 {
		return nil
	}
	if err == nil {
		return fmt.Errorf("not reached")
	}
	return err
}

// keepSections appends to md the sections other benchmarks wrote into the report
// (between "<!-- name:begin -->" and "<!-- name:end -->", such as bench/storage's),
// so that this run replaces only its own figures.
func keepSections(path, md string) string {
	old, err := os.ReadFile(path)
	if err != nil {
		return md
	}
	rest := string(old)
	for {
		i := strings.Index(rest, "<!-- ")
		if i < 0 {
			return md
		}
		name, _, ok := strings.Cut(rest[i+5:], ":begin -->")
		if !ok || strings.ContainsAny(name, " \n") {
			rest = rest[i+5:]
			continue
		}
		end := "<!-- " + name + ":end -->"
		j := strings.Index(rest[i:], end)
		if j < 0 {
			return md
		}
		md = strings.TrimRight(md, "\n") + "\n\n" + rest[i:i+j+len(end)] + "\n"
		rest = rest[i+j+len(end):]
	}
}
