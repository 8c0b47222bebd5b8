package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-os/cairn/internal/testutil"
	"github.com/cairn-os/cairn/supervisor/hostcmd"
	"golang.org/x/sys/unix"
)

// run starts a manager with specs and stops it (waiting for every process) at the
// end of the test.
func run(t *testing.T, specs ...Spec) *Manager {
	t.Helper()
	m := NewManager(slog.New(slog.NewTextHandler(io.Discard, nil)))
	for _, s := range specs {
		if err := m.Add(s); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("run did not return after stop")
		}
	})
	return m
}

func status(m *Manager, name string) Status {
	for _, s := range m.Status() {
		if s.Name == name {
			return s
		}
	}
	return Status{}
}

// waitStatus polls until cond holds for the named service; timings are not asserted,
// the deadline only keeps a broken test from hanging.
func waitStatus(t *testing.T, m *Manager, name, what string, cond func(Status) bool) Status {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := status(m, name)
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: waited for %s, have %+v", name, what, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func isRunning(s Status) bool { return s.State == StateRunning && s.PID > 0 }

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil && !zombie(pid) }

func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(f) > 0 && f[0] == "Z"
}

// groupMembers returns the live processes in process group pgid.
func groupMembers(t *testing.T, pgid int) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// After "(comm)": state ppid pgrp …
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) > 2 && f[2] == strconv.Itoa(pgid) && f[0] != "Z" {
			out = append(out, pid)
		}
	}
	return out
}

func TestKilledServiceIsRestarted(t *testing.T) {
	t.Parallel()
	sleep := testutil.RequireProgram(t, "sleep")
	m := run(t, Spec{Name: "sleeper", Path: sleep, Args: []string{"1000"}})

	first := waitStatus(t, m, "sleeper", "running", isRunning)
	if first.Restarts != 0 || first.StartedAt.IsZero() {
		t.Fatalf("first start: %+v", first)
	}
	if err := syscall.Kill(first.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	second := waitStatus(t, m, "sleeper", "a new process", func(s Status) bool {
		return isRunning(s) && s.PID != first.PID
	})
	if second.Restarts != 1 {
		t.Errorf("restarts = %d, want 1", second.Restarts)
	}
	if second.LastExit != "signal: killed" {
		t.Errorf("last exit = %q, want %q", second.LastExit, "signal: killed")
	}
	if !second.StartedAt.After(first.StartedAt) {
		t.Errorf("started at %v, not after the first start %v", second.StartedAt, first.StartedAt)
	}
	logs, _ := m.Logs("sleeper", 0)
	if !bytes.Contains(logs, []byte("exited (signal: killed), restarting in 1s")) {
		t.Errorf("logs do not tell of the exit: %q", logs)
	}
}

func TestAfterStartsInOrder(t *testing.T) {
	t.Parallel()
	sleep := testutil.RequireProgram(t, "sleep")
	release := make(chan struct{})
	seen := make(chan Status, 1)
	var m *Manager
	m = run(t,
		// Added first but needs virtlogd: must wait whatever the order of Add.
		Spec{Name: "libvirtd", Path: sleep, Args: []string{"1000"}, After: []string{"virtlogd"},
			Prepare: func(context.Context) error {
				seen <- status(m, "virtlogd")
				return nil
			}},
		Spec{Name: "virtlogd", Path: sleep, Args: []string{"1000"},
			Prepare: func(ctx context.Context) error {
				select {
				case <-release:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}},
	)
	waitStatus(t, m, "libvirtd", "waiting", func(s Status) bool {
		return s.State == StateStarting && s.Message == "waiting for virtlogd"
	})
	close(release)
	dep := <-seen
	if dep.State != StateRunning {
		t.Errorf("libvirtd prepared while virtlogd was %s", dep.State)
	}
	waitStatus(t, m, "libvirtd", "running", isRunning)
}

func TestAfterUnsupportedIsUnsupported(t *testing.T) {
	t.Parallel()
	sleep := testutil.RequireProgram(t, "sleep")
	m := run(t,
		Spec{Name: "nfsd", Path: "/usr/sbin/rpc.nfsd", Unsupported: "no nfsd in this kernel"},
		Spec{Name: "mountd", Path: sleep, Args: []string{"1000"}, After: []string{"nfsd"}},
	)
	s := waitStatus(t, m, "mountd", "unsupported", func(s Status) bool { return s.State == StateUnsupported })
	if !strings.Contains(s.Message, "no nfsd in this kernel") {
		t.Errorf("message = %q", s.Message)
	}
}

func TestOneShot(t *testing.T) {
	t.Parallel()
	sh := testutil.RequireProgram(t, "sh")
	sleep := testutil.RequireProgram(t, "sleep")
	m := run(t,
		Spec{Name: "exportfs", Path: sh, Args: []string{"-c", "echo exported"}, OneShot: true},
		Spec{Name: "mountd", Path: sleep, Args: []string{"1000"}, After: []string{"exportfs"}},
		Spec{Name: "broken", Path: sh, Args: []string{"-c", "exit 3"}, OneShot: true},
	)
	s := waitStatus(t, m, "exportfs", "done", func(s Status) bool { return s.LastExit != "" })
	if s.State != StateDone || s.LastExit != "exit 0" || s.Restarts != 0 || s.PID != 0 {
		t.Errorf("one-shot after success: %+v", s)
	}
	waitStatus(t, m, "mountd", "running after the one-shot", isRunning)
	b := waitStatus(t, m, "broken", "failed run", func(s Status) bool { return s.LastExit != "" })
	if b.LastExit != "exit 3" {
		t.Errorf("failing one-shot: last exit %q, want exit 3", b.LastExit)
	}
	waitStatus(t, m, "broken", "retried", func(s Status) bool { return s.Restarts >= 1 })

	// Restart runs a finished one-shot again.
	if err := m.Restart(context.Background(), "exportfs"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, m, "exportfs", "second run done", func(s Status) bool {
		return s.Restarts == 1 && s.State == StateDone && s.LastExit == "exit 0"
	})
	logs, _ := m.Logs("exportfs", 0)
	if n := bytes.Count(logs, []byte("exported\n")); n != 2 {
		t.Errorf("one-shot ran %d times, want 2; logs %q", n, logs)
	}
}

func TestUnsupportedNeverStarts(t *testing.T) {
	t.Parallel()
	m := run(t, Spec{Name: "nfsd", Path: "/bin/true", Unsupported: "no nfsd in this kernel"})
	time.Sleep(200 * time.Millisecond)
	s := status(m, "nfsd")
	if s.State != StateUnsupported || s.Message != "no nfsd in this kernel" || s.PID != 0 || s.LastExit != "" {
		t.Errorf("unsupported service: %+v", s)
	}
	if err := m.Restart(context.Background(), "nfsd"); err == nil {
		t.Error("restart of an unsupported service succeeded")
	}
}

func TestLogsKeepLastOutput(t *testing.T) {
	t.Parallel()
	sh := testutil.RequireProgram(t, "sh")
	// 300 000 x's, more than the 256 KiB kept, then a last line.
	script := `head -c 300000 /dev/zero | tr '\0' x; echo; echo last line; exec sleep 1000`
	m := run(t, Spec{Name: "chatty", Path: sh, Args: []string{"-c", script}})
	deadline := time.Now().Add(20 * time.Second)
	var logs []byte
	for !bytes.HasSuffix(logs, []byte("last line\n")) {
		if time.Now().After(deadline) {
			t.Fatalf("no last line in %d bytes of logs", len(logs))
		}
		time.Sleep(50 * time.Millisecond)
		logs, _ = m.Logs("chatty", 0)
	}
	if len(logs) != logSize {
		t.Errorf("kept %d bytes, want %d", len(logs), logSize)
	}
	if strings.Trim(string(logs[:len(logs)-len("\nlast line\n")]), "x") != "" {
		t.Errorf("kept output is not the last output")
	}
	tail, _ := m.Logs("chatty", 10)
	if string(tail) != "last line\n" {
		t.Errorf("last 10 bytes = %q", tail)
	}
	if _, err := m.Logs("nobody", 10); !errors.Is(err, ErrNotFound) {
		t.Errorf("logs of an unknown service: err = %v", err)
	}
}

func TestSubscribeGetsLines(t *testing.T) {
	t.Parallel()
	sh := testutil.RequireProgram(t, "sh")
	m := run(t, Spec{Name: "ticker", Path: sh, Args: []string{"-c", "while :; do echo tick; sleep 0.1; done"}})
	lines, cancel := m.Subscribe("ticker")
	defer cancel()
	select {
	case l := <-lines:
		if string(l) != "tick\n" {
			t.Errorf("line = %q", l)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no line")
	}
	cancel()
	for range lines { // closed by cancel; drain what was buffered
	}
	if _, ok := <-func() <-chan []byte { c, _ := m.Subscribe("nobody"); return c }(); ok {
		t.Error("subscription to an unknown service is open")
	}
}

func TestProcessGroupEndsWithService(t *testing.T) {
	t.Parallel()
	sh := testutil.RequireProgram(t, "sh")
	m := NewManager(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := m.Add(Spec{Name: "forker", Path: sh, Args: []string{"-c", "sleep 1000 & sleep 1000"}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()

	// A crash of the main process takes its helpers along.
	s := waitStatus(t, m, "forker", "running", isRunning)
	members := waitGroup(t, s.PID, 3) // sh and two sleeps
	if err := syscall.Kill(s.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	s2 := waitStatus(t, m, "forker", "restarted", func(n Status) bool { return isRunning(n) && n.PID != s.PID })
	for _, pid := range members {
		if !dies(pid) {
			t.Errorf("pid %d of the crashed service's group still runs", pid)
		}
	}

	// Stopping the manager ends the whole group too.
	members = waitGroup(t, s2.PID, 3)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, pid := range members {
		if !dies(pid) {
			t.Errorf("pid %d of the stopped service's group still runs", pid)
		}
	}
	if st := status(m, "forker"); st.State != StateStopped || st.PID != 0 {
		t.Errorf("after stop: %+v", st)
	}
}

// dies reports whether pid is gone (or a zombie) within a few seconds: a process that
// closed its output has not necessarily finished exiting.
func dies(pid int) bool {
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

func waitGroup(t *testing.T, pgid, n int) []int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := groupMembers(t, pgid)
		if len(m) >= n {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %d has %d processes, want %d", pgid, len(m), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMissingProgramFails(t *testing.T) {
	t.Parallel()
	m := run(t,
		Spec{Name: "abs", Path: "/nonexistent/" + testutil.Name("cairn")},
		Spec{Name: "inpath", Path: testutil.Name("cairn-no-such-program")},
	)
	for _, name := range []string{"abs", "inpath"} {
		s := waitStatus(t, m, name, "failed", func(s Status) bool { return s.State == StateFailed })
		if !strings.Contains(s.Message, "program not found") || !strings.Contains(s.Message, "retrying in 30s") {
			t.Errorf("%s: message %q", name, s.Message)
		}
	}
}

func TestPrepareErrorFails(t *testing.T) {
	t.Parallel()
	m := run(t, Spec{Name: "prep", Path: "/bin/true", Prepare: func(context.Context) error {
		return errors.New("mkdir /run/libvirt: read-only file system")
	}})
	s := waitStatus(t, m, "prep", "failed", func(s Status) bool { return s.State == StateFailed })
	if !strings.HasPrefix(s.Message, "prepare: mkdir /run/libvirt") {
		t.Errorf("message %q", s.Message)
	}
}

func TestRestartAndAdd(t *testing.T) {
	t.Parallel()
	sleep := testutil.RequireProgram(t, "sleep")
	m := run(t, Spec{Name: "a", Path: sleep, Args: []string{"1000"}})
	if err := m.Add(Spec{Name: "a", Path: sleep}); err == nil {
		t.Error("a duplicate name was added")
	}
	first := waitStatus(t, m, "a", "running", isRunning)
	if err := m.Restart(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	s := waitStatus(t, m, "a", "restarted", func(s Status) bool { return isRunning(s) && s.PID != first.PID })
	if s.Restarts != 1 {
		t.Errorf("restarts = %d, want 1", s.Restarts)
	}
	if !dies(first.PID) {
		t.Errorf("old pid %d still runs", first.PID)
	}
	if err := m.Restart(context.Background(), "nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("restart of an unknown service: err = %v", err)
	}

	// Added while running: started at once, after what it needs.
	if err := m.Add(Spec{Name: "b", Path: sleep, Args: []string{"1000"}, After: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, m, "b", "running", isRunning)
	if got := m.Status(); len(got) != 2 || got[0].Name != "a" || got[1].Name != "b" {
		t.Errorf("status order: %+v", got)
	}
}

// TestUnderReaper runs services the way PID 1 does: a reaper collects every child
// with wait4(-1), and the services' exits must still reach them.
func TestUnderReaper(t *testing.T) {
	// Not parallel: the reaper would take the exits of other tests' plain children.
	sleep := testutil.RequireProgram(t, "sleep")
	sh := testutil.RequireProgram(t, "sh")
	// As a subreaper, orphans come to this process as they come to PID 1.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) })
	reapCtx, stopReaper := context.WithCancel(context.Background())
	kick := make(chan struct{}, 1)
	hostcmd.StartReaper(reapCtx, kick)
	tick := time.NewTicker(50 * time.Millisecond) // stands in for SIGCHLD
	go func() {
		for range tick.C {
			select {
			case kick <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(tick.Stop)

	m := NewManager(slog.New(slog.NewTextHandler(io.Discard, nil)))
	for _, s := range []Spec{
		{Name: "sleeper", Path: sleep, Args: []string{"1000"}},
		{Name: "oneshot", Path: sh, Args: []string{"-c", "exit 0"}, OneShot: true},
		// The helper is orphaned when sh exits; the reaper must take it, not the service.
		{Name: "orphaner", Path: sh, Args: []string{"-c", "sleep 0.2 & exit 4"}, OneShot: true},
	} {
		if err := m.Add(s); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()

	first := waitStatus(t, m, "sleeper", "running", isRunning)
	if err := syscall.Kill(first.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	s := waitStatus(t, m, "sleeper", "restarted", func(s Status) bool { return isRunning(s) && s.PID != first.PID })
	if s.LastExit != "signal: killed" {
		t.Errorf("last exit under the reaper = %q", s.LastExit)
	}
	waitStatus(t, m, "oneshot", "done", func(s Status) bool { return s.LastExit == "exit 0" && s.State == StateDone })
	waitStatus(t, m, "orphaner", "exit 4", func(s Status) bool { return s.LastExit == "exit 4" })

	// The reaper stops before the services (a shutdown in the wrong order): waiting
	// processes must not hang.
	stopReaper()
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("services did not stop after the reaper ended")
	}
	if st := status(m, "sleeper"); st.State != StateStopped {
		t.Errorf("after stop: %+v", st)
	}
}
