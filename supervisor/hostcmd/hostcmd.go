// Package hostcmd runs host programs for the supervisor. Every program Cairn starts
// goes through it, because as PID 1 the supervisor reaps every child with wait4(-1)
// (orphans are reparented to it), and that would steal the exit status from a plain
// exec.Cmd.Wait. While the reaper runs, Start subscribes to the reaper's exit
// broadcasts before the child exists, so no exit can be missed (after Talos' reaper).
package hostcmd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
)

// Runner runs a host program and returns its combined output. Drivers take a Runner so
// that tests can record calls; the real one is Exec.
type Runner interface {
	Run(ctx context.Context, name string, args ...string) ([]byte, error)
}

// Exec runs programs for real.
type Exec struct{}

var _ Runner = Exec{}

// Run runs name with args and returns its combined output. A failure's error names the
// command and carries the program's last output line, which usually says why.
func (Exec) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	p, err := Start(cmd)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := p.Wait(); err != nil {
		return out.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, lastLine(out.Bytes()))
	}
	return out.Bytes(), nil
}

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 300 {
		s = s[:300]
	}
	return s
}

// Exit is one reaped child.
type Exit struct {
	PID    int
	Status syscall.WaitStatus
}

var reaper struct {
	sync.Mutex
	running bool
	subs    map[chan Exit]struct{}
}

// RunReaper reaps every child of this process until ctx ends and broadcasts each exit
// to the processes started with Start. Only PID 1 (or a subreaper) should run it.
func RunReaper(ctx context.Context, sigchld <-chan struct{}) {
	beginReaper()
	reap(ctx, sigchld)
}

// StartReaper runs RunReaper in a goroutine, but marks the reaper as running before it
// returns: a program started right after it must subscribe to the reaper's exits, or
// the reaper's wait4(-1) could take its exit status before its own Wait does.
func StartReaper(ctx context.Context, sigchld <-chan struct{}) {
	beginReaper()
	go reap(ctx, sigchld)
}

func beginReaper() {
	reaper.Lock()
	reaper.running = true
	if reaper.subs == nil {
		reaper.subs = map[chan Exit]struct{}{}
	}
	reaper.Unlock()
}

func reap(ctx context.Context, sigchld <-chan struct{}) {
	defer func() {
		// Processes still waiting would wait forever: close their channels so that
		// their Wait falls back to waiting for the child itself, which works now that
		// nobody else reaps.
		reaper.Lock()
		reaper.running = false
		for ch := range reaper.subs {
			close(ch)
		}
		reaper.subs = nil
		reaper.Unlock()
	}()
	for {
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if err == syscall.EINTR {
				continue
			}
			if pid <= 0 || err != nil {
				break
			}
			reaper.Lock()
			for ch := range reaper.subs {
				select {
				case ch <- Exit{PID: pid, Status: ws}:
				default: // a subscriber's buffer is full: it only waits for one pid
				}
			}
			reaper.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-sigchld:
		}
	}
}

// Process is a started program.
type Process struct {
	cmd *exec.Cmd
	sub chan Exit
}

// Start starts cmd. Use the returned Process's Wait instead of cmd.Wait.
func Start(cmd *exec.Cmd) (*Process, error) {
	p := &Process{cmd: cmd}
	reaper.Lock()
	if reaper.running {
		p.sub = make(chan Exit, 64)
		reaper.subs[p.sub] = struct{}{}
	}
	reaper.Unlock()
	if err := cmd.Start(); err != nil {
		p.unsubscribe()
		return nil, err
	}
	return p, nil
}

// PID is the process ID.
func (p *Process) PID() int { return p.cmd.Process.Pid }

func (p *Process) unsubscribe() {
	if p.sub == nil {
		return
	}
	reaper.Lock()
	delete(reaper.subs, p.sub)
	reaper.Unlock()
}

// Wait waits for the program to exit and returns an *exec.ExitError-like error when it
// did not succeed.
func (p *Process) Wait() error {
	if p.sub == nil {
		return p.cmd.Wait()
	}
	defer p.unsubscribe()
	pid := p.cmd.Process.Pid
	for e := range p.sub {
		if e.PID != pid {
			continue
		}
		// The reaper has the status; cmd.Wait now only releases the pipes and
		// goroutines (its own wait fails with ECHILD, which we ignore).
		_ = p.cmd.Wait()
		switch {
		case e.Status.Exited() && e.Status.ExitStatus() == 0:
			return nil
		case e.Status.Exited():
			return fmt.Errorf("exit status %d", e.Status.ExitStatus())
		case e.Status.Signaled():
			return fmt.Errorf("signal: %s", e.Status.Signal())
		default:
			return errors.New("ended")
		}
	}
	// The reaper stopped before this child ended (its channel was closed): nobody
	// else reaps any more, so wait for the child directly.
	return p.cmd.Wait()
}
