package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/cairn-os/cairn/qemu-tests/engineapi"
	"github.com/cairn-os/cairn/qemu-tests/lab"
	"github.com/cairn-os/cairn/qemu-tests/vm"
)

// cairnResult is what one boot of the lab measured. A zero Sample was not reached.
type cairnResult struct {
	Admin Sample
	// Compute is power-on → node ready; ComputeFirstLine power-on → the supervisor's
	// first console line, for comparison with the dnsmasq baseline's end point.
	Compute, ComputeFirstLine Sample
	// Memory is the admin node's memory as its heartbeat reported it, after idling.
	Memory   memory
	Services []engineapi.Service
	// AdminUptime is how long the admin had been up when Memory was read.
	AdminUptime time.Duration
	// AdminErrors are the error lines of the admin's console, kept when a step failed.
	AdminErrors []string
}

// adminNode is the part of GET /api/v1/nodes/admin that the memory figure needs.
type adminNode struct {
	State           string `json:"state"`
	MemoryBytes     uint64 `json:"memory_bytes"`
	MemoryFreeBytes uint64 `json:"memory_free_bytes"`
}

// measureCairn boots the lab's admin from the ISO with a blank data disk and times
// qemu start → /api/v1/health answering; then boots one compute VM from its PXE
// server and times power-on → the node `ready`; then lets both idle and reads the
// admin's memory in use and its services. It fills in as much as it reached.
func measureCairn(ctx context.Context, r *runner, dir string) (res cairnResult, err error) {
	// A blank data disk each time: the boot timed is a first boot.
	if err := os.RemoveAll(dir); err != nil {
		return res, fmt.Errorf("cairn: %w", err)
	}
	port, err := vm.FreePort()
	if err != nil {
		return res, fmt.Errorf("cairn: %w", err)
	}
	l, err := lab.New(ctx, lab.Config{
		ISO: r.o.isoCopy, Work: dir, Firmware: vm.BIOS, Port: port,
		Settings: lab.NewSettings(lab.GeneratePassword(), false),
		Logf:     func(format string, args ...any) { r.logger.Debug(fmt.Sprintf(format, args...)) },
	})
	if err != nil {
		return res, err
	}
	defer l.Kill()
	defer func() {
		if err != nil {
			res.AdminErrors = errorLines(l.Admin.SerialPath(), 10)
		}
	}()
	l.Admin.Logger = r.logger

	// The admin: qemu start → /api/v1/health.
	bctx, cancel := context.WithTimeout(ctx, r.o.timeout)
	defer cancel()
	res.Admin = sampleStart(r.own)
	if err := l.StartAdmin(bctx); err != nil {
		return res, err
	}
	r.own[l.Admin.PID()] = true
	d, err := poll(bctx, func(ctx context.Context) (bool, error) {
		if !l.Admin.Running() {
			return false, fmt.Errorf("the admin VM stopped: %v", l.Admin.Wait())
		}
		hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return l.API.Health(hctx) == nil, nil
	}, l.Admin)
	if err != nil {
		return res, fmt.Errorf("admin health: %w\n%s", err, l.Admin.SerialTail(30))
	}
	res.Admin.Seconds = d.Seconds()
	r.logger.Info("admin ready", "seconds", res.Admin.Seconds, "load1", res.Admin.Load1)
	if err := l.API.Pin(ctx); err != nil {
		return res, fmt.Errorf("cairn: %w", err)
	}

	// A compute node: power-on → ready, with the admin up and idle.
	cctx, cancel := context.WithTimeout(ctx, r.o.timeout)
	defer cancel()
	res.Compute = sampleStart(r.own)
	c, err := l.StartCompute(cctx, 0)
	if err != nil {
		return res, err
	}
	c.Logger = r.logger
	r.own[c.PID()] = true
	first := make(chan time.Duration, 1)
	go func() {
		d, err := waitLine(cctx, c, supervisorFirst)
		if err != nil {
			d = 0
		}
		first <- d
	}()
	// A compute VM whose network boot failed falls through to SeaBIOS's other devices
	// and stops there: no need to wait for the time-out.
	noBoot := make(chan struct{})
	go func() {
		if _, err := waitLine(cctx, c, noBootable); err == nil {
			close(noBoot)
		}
	}()
	id := engineapi.NodeID(lab.ComputeMAC(0))
	d, err = poll(cctx, func(ctx context.Context) (bool, error) {
		if !l.Admin.Running() {
			return false, fmt.Errorf("the admin VM stopped: %v", l.Admin.Wait())
		}
		select {
		case <-noBoot:
			return false, errors.New("the compute VM's network boot failed: SeaBIOS found no bootable device")
		default:
		}
		n, ok, err := l.API.Node(ctx, id)
		if errors.Is(err, engineapi.ErrUnauthorized) {
			return false, err
		}
		return err == nil && ok && n.State == "ready", nil
	}, c)
	if err != nil {
		return res, fmt.Errorf("compute node ready: %w\n%s", err, l.Tails(30))
	}
	res.Compute.Seconds = d.Seconds()
	res.ComputeFirstLine = res.Compute
	// The line came before the join; the watcher has seen it or soon will.
	select {
	case d := <-first:
		res.ComputeFirstLine.Seconds = d.Seconds()
	case <-time.After(2 * time.Second):
		res.ComputeFirstLine.Seconds = 0
	}
	r.logger.Info("compute node ready", "seconds", res.Compute.Seconds, "first_line_seconds", res.ComputeFirstLine.Seconds)

	// Idle: both up, nothing asked of them.
	select {
	case <-time.After(r.o.idle):
	case <-ctx.Done():
		return res, ctx.Err()
	}
	var n adminNode
	if err := l.API.Get(ctx, "/nodes/admin", &n); err != nil {
		return res, fmt.Errorf("admin memory: %w", err)
	}
	res.Memory = memory{Total: n.MemoryBytes, Available: n.MemoryFreeBytes}
	res.AdminUptime = l.Admin.Uptime()
	if res.Services, err = l.API.Services(ctx); err != nil {
		return res, fmt.Errorf("admin services: %w", err)
	}
	return res, nil
}

// errorLines returns the last n lines of a console log that the supervisor logged at
// level ERROR, without terminal escapes.
func errorLines(path string, n int) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "level=ERROR") {
			out = append(out, strings.TrimSpace(ansi.ReplaceAllString(line, "")))
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}

var ansi = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

// noBootable is what SeaBIOS prints when every boot device failed.
var noBootable = regexp.MustCompile(`No bootable device`)

// poll calls check every pollInterval until it reports true or fails, and returns the
// guest's uptime (time since its qemu started) when it reported true.
func poll(ctx context.Context, check func(context.Context) (bool, error), v *vm.VM) (time.Duration, error) {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		ok, err := check(ctx)
		if err != nil {
			return 0, err
		}
		if ok {
			return v.Uptime(), nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("gave up after %s: %w", v.Uptime().Round(time.Second), ctx.Err())
		case <-t.C:
		}
	}
}
