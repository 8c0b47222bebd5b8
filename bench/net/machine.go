package main

import (
	"bufio"
	"context"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/cairn-os/cairn/supervisor/hostcmd"
)

// Machine describes the host the figures were taken on.
type Machine struct {
	CPU    string
	Cores  int
	Kernel string
	IPerf  string
	// Load is the 1, 5 and 15-minute load average when the run began; LoadEnd when
	// it ended.
	Load, LoadEnd [3]float64
}

// readMachine reads the CPU model, cores, kernel and iperf3's version.
func readMachine(ctx context.Context) Machine {
	m := Machine{Cores: runtime.NumCPU(), Load: loadAverage()}
	m.CPU = procField("/proc/cpuinfo", "model name")
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	m.IPerf = firstOutputLine(ctx, "iperf3", "--version")
	return m
}

// procField returns the value of the first "key: value" line of a /proc file whose
// key is key, or "".
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func firstOutputLine(ctx context.Context, name string, args ...string) string {
	out, err := hostcmd.Exec{}.Run(ctx, name, args...)
	if err != nil {
		return "unknown (" + firstLine(err.Error()) + ")"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return strings.Join(strings.Fields(line), " ")
}

// loadAverage returns /proc/loadavg's three averages; zeros when it cannot be read.
func loadAverage() [3]float64 {
	var l [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return l
	}
	f := strings.Fields(string(b))
	for i := 0; i < 3 && i < len(f); i++ {
		l[i], _ = strconv.ParseFloat(f[i], 64)
	}
	return l
}
