package service

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"
)

// outcome is how one attempt to run a service ended.
type outcome struct {
	ran      time.Duration
	exit     string // "exit 0", "exit 1", "signal: killed"; empty when nothing ran
	failure  string // why the program could not be started
	notFound bool   // the program does not exist (yet)
	restart  bool   // ended by a Restart request
	shutdown bool   // ended because the manager stops
}

// supervise runs one service until ctx ends: it waits for the services in After,
// then starts the program and restarts it with backoff whenever it ends.
func (m *Manager) supervise(ctx context.Context, v *svc) {
	name := v.spec.Name
	log := m.logger.With("service", name)
	defer func() {
		m.mu.Lock()
		if v.status.State != StateUnsupported {
			v.status.State = StateStopped
			v.status.PID = 0
			v.status.Message = ""
		}
		v.stopped = true
		m.notifyLocked()
		m.mu.Unlock()
	}()
	if v.spec.Unsupported != "" {
		log.Info("service unsupported", "reason", v.spec.Unsupported)
		return
	}
	if !m.waitDeps(ctx, v) {
		return
	}

	backoff := minBackoff
	for {
		o := m.runOnce(ctx, v, log)
		if o.shutdown {
			return
		}
		if o.restart {
			backoff = minBackoff
			continue
		}
		if v.spec.OneShot && o.exit == "exit 0" {
			m.update(v, func(st *Status) {
				st.State, st.PID, st.Message = StateDone, 0, ""
			})
			log.Info("one-shot service done")
			select {
			case <-ctx.Done():
				return
			case <-v.restart:
				continue
			}
		}

		var delay time.Duration
		switch {
		case o.notFound:
			// It might appear (a pool mounted later, a package unpacked): look slowly.
			delay = maxBackoff
		default:
			if o.ran >= stableAfter {
				backoff = minBackoff
			}
			delay = backoff
			backoff = min(2*backoff, maxBackoff)
		}
		if o.failure != "" {
			log.Error("service failed to start", "err", o.failure, "retry_in", delay)
			m.update(v, func(st *Status) {
				st.State, st.PID = StateFailed, 0
				st.Message = fmt.Sprintf("%s (retrying in %s)", o.failure, delay)
			})
		} else {
			// The program's last line usually says why; put it where people look.
			log.Warn("service exited", "exit", o.exit, "ran", o.ran.Round(time.Millisecond), "restart_in", delay,
				"last_output", lastLine(v.log.Last(512)))
			v.log.Note(fmt.Sprintf("[cairn] %s exited (%s), restarting in %s", name, o.exit, delay))
			m.update(v, func(st *Status) {
				st.State, st.PID = StateBackoff, 0
				st.Message = fmt.Sprintf("restarting in %s", delay)
			})
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-v.restart:
			t.Stop()
			backoff = minBackoff
		case <-t.C:
		}
	}
}

// waitDeps waits until every service in v's After list is ready. It returns false when
// ctx ended or a dependency can never run (then v is unsupported too).
func (m *Manager) waitDeps(ctx context.Context, v *svc) bool {
	if len(v.spec.After) == 0 {
		return true
	}
	var blocked string // a dependency that is unsupported
	cond := func() bool {
		var waiting []string
		for _, dep := range v.spec.After {
			d, ok := m.byName[dep]
			switch {
			case ok && d.status.State == StateUnsupported:
				blocked = fmt.Sprintf("needs %s, which is unsupported: %s", dep, d.status.Message)
				return true
			case !ok || !ready(d):
				waiting = append(waiting, dep)
			}
		}
		msg := ""
		if len(waiting) > 0 {
			msg = "waiting for " + strings.Join(waiting, ", ")
		}
		if v.status.State != StateStarting || v.status.Message != msg {
			v.status.State, v.status.Message = StateStarting, msg
			m.notifyLocked()
		}
		return len(waiting) == 0
	}
	if err := m.waitFor(ctx, cond); err != nil {
		return false
	}
	if blocked != "" {
		m.logger.Warn("service unsupported", "service", v.spec.Name, "reason", blocked)
		m.update(v, func(st *Status) { st.State, st.Message = StateUnsupported, blocked })
		return false
	}
	return true
}

// ready reports whether services after d may start. m.mu must be held.
func ready(d *svc) bool {
	if d.spec.OneShot {
		return d.status.State == StateDone
	}
	return d.status.State == StateRunning
}

// runOnce prepares and starts the program once and waits until it ends, is restarted
// or the manager stops.
func (m *Manager) runOnce(ctx context.Context, v *svc, log *slog.Logger) outcome {
	// A Restart asked for while the service waited is served by this start.
	select {
	case <-v.restart:
	default:
	}
	m.mu.Lock()
	if v.attempts > 0 {
		v.status.Restarts++
	}
	v.attempts++
	v.status.State, v.status.Message = StateStarting, ""
	m.notifyLocked()
	m.mu.Unlock()

	if v.spec.Prepare != nil {
		if err := v.spec.Prepare(ctx); err != nil {
			if ctx.Err() != nil {
				return outcome{shutdown: true}
			}
			return outcome{failure: fmt.Sprintf("prepare: %v", err)}
		}
	}

	// Our own pipe rather than an io.Writer in cmd.Stdout: exec.Cmd would wait in Wait
	// for its copying goroutine, that is for every process holding the pipe, and a
	// leftover child of the service would then block the restart.
	r, w, err := os.Pipe()
	if err != nil {
		return outcome{failure: fmt.Sprintf("create output pipe: %v", err)}
	}
	p, err := startProcess(v.spec, w)
	w.Close() // the child has its copy; ours would keep the reader from seeing EOF
	if err != nil {
		r.Close()
		if isNotFound(v.spec.Path, err) {
			return outcome{failure: fmt.Sprintf("program not found: %s", v.spec.Path), notFound: true}
		}
		return outcome{failure: fmt.Sprintf("start: %v", err)}
	}
	pid := p.PID()
	started := time.Now()
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		_, _ = v.log.ReadFrom(r)
	}()
	exited := make(chan error, 1)
	go func() { exited <- p.Wait() }()

	m.mu.Lock()
	v.alive = true
	v.status.State, v.status.PID, v.status.StartedAt, v.status.Message = StateRunning, pid, started, ""
	m.notifyLocked()
	m.mu.Unlock()
	log.Info("service started", "pid", pid)

	var o outcome
	var werr error
	select {
	case werr = <-exited:
	case <-v.restart:
		o.restart = true
		log.Info("restarting service", "pid", pid)
		werr = m.stop(v, pid, exited)
	case <-ctx.Done():
		o.shutdown = true
		m.waitDependents(v)
		werr = m.stop(v, pid, exited)
	}
	o.ran = time.Since(started)
	o.exit = exitString(werr)

	// Whatever the main process left in its group (a forked helper) goes with it, so
	// the next start does not find the port or pid file taken. The group cannot have
	// been reused: a PID is not handed out while a group of that ID has members.
	_ = signalGroup(pid, syscall.SIGKILL)
	select {
	case <-readDone:
	case <-time.After(2 * time.Second):
		// A process outside the group (it called setsid) still holds the pipe.
	}
	r.Close()
	<-readDone

	m.mu.Lock()
	v.alive = false
	v.status.PID = 0
	v.status.LastExit = o.exit
	m.notifyLocked()
	m.mu.Unlock()
	return o
}

// stop sends the stop signal to the service's process group and SIGKILL when it has
// not ended after stopTimeout; it returns the main process's exit.
func (m *Manager) stop(v *svc, pid int, exited <-chan error) error {
	if err := signalGroup(pid, v.spec.StopSignal); err != nil && !errors.Is(err, syscall.ESRCH) {
		m.logger.Warn("signal service", "service", v.spec.Name, "pid", pid, "err", err)
	}
	t := time.NewTimer(stopTimeout)
	defer t.Stop()
	select {
	case err := <-exited:
		return err
	case <-t.C:
		m.logger.Warn("service did not stop, killing it", "service", v.spec.Name, "pid", pid)
		_ = signalGroup(pid, syscall.SIGKILL)
		return <-exited
	}
}

// waitDependents waits, at shutdown, until no service that runs after v has a process
// left, so that libvirtd is gone before virtlogd is stopped. It gives up after twice
// the stop timeout: a dependency cycle must not hang the shutdown.
func (m *Manager) waitDependents(v *svc) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*stopTimeout)
	defer cancel()
	_ = m.waitFor(ctx, func() bool {
		for _, d := range m.svcs {
			if d.alive && slices.Contains(d.spec.After, v.spec.Name) {
				return false
			}
		}
		return true
	})
}

// exitString turns the error of hostcmd's Wait into Status.LastExit: "exit 0",
// "exit 1", "signal: killed".
func exitString(err error) string {
	if err == nil {
		return "exit 0"
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok {
			if ws.Signaled() {
				return "signal: " + ws.Signal().String()
			}
			return fmt.Sprintf("exit %d", ws.ExitStatus())
		}
	}
	s := err.Error()
	if rest, ok := strings.CutPrefix(s, "exit status "); ok {
		return "exit " + rest
	}
	return s
}

// isNotFound reports whether a start failed because the program does not exist, as
// opposed to, say, a missing working directory.
func isNotFound(path string, err error) bool {
	if errors.Is(err, exec.ErrNotFound) {
		return true
	}
	if errors.Is(err, fs.ErrNotExist) {
		_, serr := os.Stat(path)
		return errors.Is(serr, fs.ErrNotExist)
	}
	return false
}

// lastLine is the last non-empty line of a program's output.
func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
