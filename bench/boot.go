package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-os/cairn/qemu-tests/lab"
	"github.com/cairn-os/cairn/qemu-tests/vm"
)

// Sample is one timed boot and the machine's state when it began.
type Sample struct {
	Seconds float64
	// Load1 is the host's 1-minute load average when the guest was started.
	Load1 float64
	// OtherQEMUs counts qemu processes that this program did not start, running then.
	OtherQEMUs int
}

// baselineFiles are the baseline's images: the Debian kernel and busybox initramfs of
// vm.BaselineImage, and a grub-mkrescue ISO of the two.
type baselineFiles struct {
	kernel, initrd, iso string
}

// pollInterval is how often the waits below look at a console log or the API. It
// bounds their resolution; a quarter of a second is small beside boots of seconds.
const pollInterval = 250 * time.Millisecond

// serialPoll is how often a console log is read: reading a file is cheap, so more
// often than the API.
const serialPoll = 50 * time.Millisecond

// supervisorFirst is the first line Cairn's supervisor prints on the console
// (supervisor/machine.go): the compute boots are timed to it.
var supervisorFirst = regexp.MustCompile(`cairn supervisor starting`)

var baselineReady = regexp.MustCompile(regexp.QuoteMeta(vm.BaselineReady))

// waitLine reads the guest's console log every serialPoll until re matches, and
// returns the guest's uptime (time since qemu started) at that moment.
func waitLine(ctx context.Context, v *vm.VM, re *regexp.Regexp) (time.Duration, error) {
	var buf []byte
	tick := time.NewTicker(serialPoll)
	defer tick.Stop()
	for {
		f, err := os.Open(v.SerialPath())
		if err == nil {
			f.Seek(int64(len(buf)), io.SeekStart)
			b, _ := io.ReadAll(f)
			f.Close()
			buf = append(buf, b...)
			if re.Match(buf) {
				return v.Uptime(), nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%s: waiting for /%s/ on the console: %w", v.Name, re, ctx.Err())
		case <-v.Done():
			return 0, fmt.Errorf("%s: qemu ended (%v) before /%s/ showed on the console", v.Name, v.Wait(), re)
		case <-tick.C:
		}
	}
}

// sampleStart records the machine's state just before a guest starts.
func sampleStart(own map[int]bool) Sample {
	return Sample{Load1: loadAverage()[0], OtherQEMUs: otherQEMUs(own)}
}

// bootBaseline boots the baseline kernel + busybox initramfs directly (-kernel) in a
// guest of the admin's size and times qemu start → the shell's line on the console.
// After idle it reads the guest's memory in use from its shell.
func bootBaseline(ctx context.Context, r *runner, dir string, b baselineFiles, idle time.Duration) (Sample, memory, error) {
	v := &vm.VM{
		Name: "baseline-kernel", Memory: lab.AdminMemoryMiB, CPUs: lab.AdminCPUs,
		Kernel: b.kernel, Initrd: b.initrd, Append: vm.BaselineAppend,
		Workdir: filepath.Join(dir, "baseline-kernel"), Logger: r.logger,
	}
	s, err := r.timeBoot(ctx, v, baselineReady)
	if err != nil {
		return s, memory{}, err
	}
	defer v.Kill()
	select {
	case <-time.After(idle):
	case <-ctx.Done():
		return s, memory{}, ctx.Err()
	}
	out, err := v.ConsoleRun(ctx, vm.BaselinePrompt, "cat /proc/meminfo")
	if err != nil {
		return s, memory{}, fmt.Errorf("baseline meminfo: %w", err)
	}
	m, err := parseMeminfo(out)
	return s, m, err
}

// bootBaselineISO boots the grub-mkrescue ISO of the baseline under SeaBIOS, from a
// CD-ROM as the admin boots, and times qemu start → the shell's line.
func bootBaselineISO(ctx context.Context, r *runner, dir string, b baselineFiles) (Sample, error) {
	v := &vm.VM{
		Name: "baseline-iso", Memory: lab.AdminMemoryMiB, CPUs: lab.AdminCPUs,
		CDROM: b.iso, Boot: []vm.BootDevice{vm.BootCDROM},
		Workdir: filepath.Join(dir, "baseline-iso"), Logger: r.logger,
	}
	s, err := r.timeBoot(ctx, v, baselineReady)
	v.Kill()
	return s, err
}

// timeBoot starts v and returns how long after qemu started re showed on its console.
// The guest is left running when it succeeds and killed when it does not.
func (r *runner) timeBoot(ctx context.Context, v *vm.VM, re *regexp.Regexp) (Sample, error) {
	ctx, cancel := context.WithTimeout(ctx, r.o.timeout)
	defer cancel()
	s := sampleStart(r.own)
	if err := v.Start(ctx); err != nil {
		return s, err
	}
	r.own[v.PID()] = true
	d, err := waitLine(ctx, v, re)
	if err != nil {
		v.Kill()
		return s, fmt.Errorf("%w\n%s", err, v.SerialTail(20))
	}
	s.Seconds = d.Seconds()
	r.logger.Info("boot timed", "vm", v.Name, "seconds", s.Seconds, "load1", s.Load1)
	return s, nil
}

// memory is what a guest's /proc/meminfo says: total and available bytes.
type memory struct {
	Total, Available uint64
}

// InUse returns the memory in use: total less available.
func (m memory) InUse() uint64 { return m.Total - min(m.Available, m.Total) }

// parseMeminfo reads MemTotal and MemAvailable (in kB) from /proc/meminfo's text.
func parseMeminfo(s string) (memory, error) {
	var m memory
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(strings.TrimSpace(line))
		if len(f) < 2 {
			continue
		}
		n, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "MemTotal:":
			m.Total = n << 10
		case "MemAvailable:":
			m.Available = n << 10
		}
	}
	if m.Total == 0 || m.Available == 0 {
		return m, fmt.Errorf("meminfo: no MemTotal or MemAvailable in %q", s)
	}
	return m, nil
}
