package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
)

// Machine describes the host the figures were taken on.
type Machine struct {
	NProc  int
	CPU    string
	Kernel string
	QEMU   string
	// Load is the 1, 5 and 15-minute load average when the run began.
	Load [3]float64
	// LoadEnd is the same when the run ended.
	LoadEnd [3]float64
}

func readMachine() Machine {
	m := Machine{NProc: runtime.NumCPU(), Load: loadAverage()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command("qemu-system-x86_64", "--version").Output(); err == nil {
		m.QEMU, _, _ = strings.Cut(strings.TrimSpace(string(out)), "\n")
	}
	return m
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

// otherQEMUs counts the qemu processes on the host that this program did not start,
// so the report can say that the machine was shared.
func otherQEMUs(own map[int]bool) int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || own[pid] {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err == nil && strings.HasPrefix(strings.TrimSpace(string(b)), "qemu-system") {
			n++
		}
	}
	return n
}
