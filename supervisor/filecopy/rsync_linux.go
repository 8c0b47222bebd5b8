package filecopy

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cairn-os/cairn/supervisor/hostcmd"
)

// rsyncArgs are the flags for copying one image file (rsync 3.1.3 or later, which
// allows --sparse with --inplace; Debian 12 has 3.2.7):
//   - --sparse writes runs of zeros as holes, so an empty 10 GiB raw image stays empty.
//   - --inplace writes straight into our temporary file rather than into a temporary
//     file of rsync's own, which a killed rsync would leave behind (the temporary
//     folder is ours to remove); with a new file it is as safe as the default.
//   - --whole-file skips the delta algorithm, which only costs time with no old copy.
//   - --info=progress2 prints one progress line for the whole transfer, with the bytes
//     done first, rewritten with \r; --no-inc-recursive makes its total known up front.
var rsyncArgs = []string{"--sparse", "--inplace", "--whole-file", "--info=progress2", "--no-inc-recursive"}

// rsync copies src to dst (both absolute, so that rsync never reads a "host:path"
// into them) and reports the bytes done from rsync's progress lines as they stream.
func rsync(ctx context.Context, src, dst string, total int64, progress func(done, total int64)) error {
	cmd := exec.CommandContext(ctx, "rsync", append(rsyncArgs, src, dst)...)
	// The C locale fixes the progress line's number format.
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	// A local rsync forks a receiver and a generator: cancelling kills the whole group,
	// not only the first process, so that nothing writes after we clean up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	cmd.Stdout = &hostcmd.LineWriter{Fn: func(line string) {
		if done, ok := parseRsyncProgress(line); ok {
			progress(min(done, total), total)
		}
	}}
	var stderr hostcmd.Tail
	cmd.Stderr = &stderr
	p, err := hostcmd.Start(cmd)
	if err != nil {
		return fmt.Errorf("start rsync: %w (install rsync)", err)
	}
	pgid := p.PID()
	err = p.Wait()
	if ctx.Err() != nil {
		waitGroupGone(pgid, 10*time.Second)
		return ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("rsync: %w: %s", err, stderr.LastLine())
	}
	return nil
}

// parseRsyncProgress reads the bytes done from an --info=progress2 line such as
// "    524,320,768   4%   98.69MB/s    0:01:41".
func parseRsyncProgress(line string) (int64, bool) {
	f := strings.Fields(line)
	if len(f) < 2 || !strings.HasSuffix(f[1], "%") {
		return 0, false
	}
	digits := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		if r == ',' || r == '.' || r == '\'' {
			return -1 // thousands separators
		}
		return 'x'
	}, f[0])
	n, err := strconv.ParseInt(digits, 10, 64)
	return n, err == nil
}

// waitGroupGone waits (at most max) until no live process is left in process group
// pgid. Zombies do not count: they write nothing, and whoever reaps orphans (PID 1)
// may be slow to collect them.
func waitGroupGone(pgid int, max time.Duration) {
	deadline := time.Now().Add(max)
	for groupAlive(pgid) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}

func groupAlive(pgid int) bool {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// "pid (comm) state ppid pgrp …"; comm may hold spaces and parentheses.
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) >= 3 && f[0] != "Z" && f[0] != "X" && f[2] == strconv.Itoa(pgid) {
			return true
		}
	}
	return false
}
