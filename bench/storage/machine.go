package main

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/cairn-os/cairn/supervisor/hostcmd"
)

// Machine describes the host the figures were taken on.
type Machine struct {
	CPU         string
	Cores       int
	MemoryBytes uint64
	Kernel      string
	QEMU        string
	Libvirt     string
	Rsync       string
	// OtherQEMUs is how many qemu processes ran on the host when the run began.
	OtherQEMUs int
	// Load is the 1, 5 and 15-minute load average when the run began; LoadEnd when
	// it ended.
	Load, LoadEnd [3]float64
}

// readMachine reads the CPU model, cores, memory and the versions of the programs
// measured.
func readMachine(ctx context.Context) Machine {
	m := Machine{Cores: runtime.NumCPU(), Load: loadAverage()}
	m.CPU = procField("/proc/cpuinfo", "model name")
	if kb, err := strconv.ParseUint(strings.TrimSuffix(procField("/proc/meminfo", "MemTotal"), " kB"), 10, 64); err == nil {
		m.MemoryBytes = kb << 10
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	m.QEMU = firstOutputLine(ctx, "qemu-system-x86_64", "--version")
	m.Libvirt = firstOutputLine(ctx, "libvirtd", "--version")
	m.Rsync = firstOutputLine(ctx, "rsync", "--version")
	m.OtherQEMUs = countQEMUs()
	return m
}

// countQEMUs counts the qemu processes on the host.
func countQEMUs() int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err == nil && strings.HasPrefix(string(b), "qemu-system") {
			n++
		}
	}
	return n
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

// mountOf returns the filesystem type and source of the mount that holds path, from
// /proc/self/mountinfo (the longest mount point that is a prefix of path).
func mountOf(path string) (fstype, source string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "unknown", ""
	}
	defer f.Close()
	best := -1
	s := bufio.NewScanner(f)
	for s.Scan() {
		// id parent major:minor root mountpoint options [optional…] - fstype source superoptions
		pre, post, ok := strings.Cut(s.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 2 {
			continue
		}
		mp := unescapeMount(pf[4])
		if !within(path, mp) || len(mp) <= best {
			continue
		}
		best, fstype, source = len(mp), qf[0], qf[1]
	}
	if best < 0 {
		return "unknown", ""
	}
	return fstype, source
}

// within reports whether path is dir or below it.
func within(path, dir string) bool {
	return dir == "/" || path == dir || strings.HasPrefix(path, dir+"/")
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
