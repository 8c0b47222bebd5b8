package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"syscall"
	"time"
)

// ErrNotFound is returned for a service name the manager does not know.
var ErrNotFound = errors.New("no such service")

// Timings of supervision. Tests run with these real values; there is no knob.
const (
	minBackoff  = 1 * time.Second
	maxBackoff  = 30 * time.Second
	stableAfter = 30 * time.Second // a run this long resets the backoff
	stopTimeout = 10 * time.Second // StopSignal, then SIGKILL
)

// Spec describes one supervised program.
type Spec struct {
	// Name identifies the service in the API, the console and After lists.
	Name string
	// Path is the program; a name without a slash is looked up in PATH at each start.
	Path string
	// Args are the program's arguments, without the program name.
	Args []string
	// Env is added to the supervisor's own environment.
	Env []string
	// Dir is the working directory; empty means the supervisor's.
	Dir string
	// After names services that must be running (a OneShot: have succeeded) before
	// this one starts, e.g. virtlogd before libvirtd. A dependency restarting later does
	// not restart its dependents. At shutdown a service is stopped after its dependents.
	After []string
	// Prepare runs before each start (mkdir /run/libvirt …). An error counts as a
	// failed start and is retried with backoff. It must return when ctx ends, or the
	// shutdown waits for it.
	Prepare func(ctx context.Context) error
	// OneShot programs run to completion once (`rpc.nfsd 8`, `exportfs -ra`). Success
	// leaves the service "done" with LastExit "exit 0"; a failure is retried with
	// backoff. Restart runs it again.
	OneShot bool
	// Unsupported, when not empty, says why the program cannot run on this machine
	// ("no nfsd in this kernel"): it is never started, and services that need it
	// after it are unsupported too.
	Unsupported string
	// StopSignal is sent to the process group to stop it; SIGTERM when zero.
	StopSignal syscall.Signal
}

// Manager starts, supervises and stops a set of services. Programs must stay in the
// foreground: when a service's main process ends, whatever is left of its process
// group is killed before it is started again.
type Manager struct {
	logger *slog.Logger

	mu      sync.Mutex
	svcs    []*svc // in Add order
	byName  map[string]*svc
	runCtx  context.Context // set while Run runs; Add starts late services in it
	wg      sync.WaitGroup
	changed chan struct{} // closed and replaced on every state change (broadcast)
}

// svc is one service; every field below spec is guarded by Manager.mu, except log
// which has its own lock because output arrives all the time.
type svc struct {
	spec    Spec
	log     *logBuffer
	restart chan struct{} // buffered 1: a pending Restart request

	status   Status
	alive    bool // a process of this service exists (it may be stopping)
	attempts int  // starts tried so far, to let Restart wait for the next one
	stopped  bool // the supervise loop has finished (shutdown)
}

// NewManager returns a manager that logs to logger (give it a component attribute).
func NewManager(logger *slog.Logger) *Manager {
	return &Manager{
		logger:  logger,
		byName:  map[string]*svc{},
		changed: make(chan struct{}),
	}
}

// Add adds a service. Before Run it is started when Run starts; while Run runs it is
// started at once (after its After list).
func (m *Manager) Add(s Spec) error {
	if s.Name == "" {
		return errors.New("add service: empty name")
	}
	if s.Path == "" && s.Unsupported == "" {
		return fmt.Errorf("add service %s: empty path", s.Name)
	}
	if slices.Contains(s.After, s.Name) {
		return fmt.Errorf("add service %s: it cannot run after itself", s.Name)
	}
	if s.StopSignal == 0 {
		s.StopSignal = syscall.SIGTERM
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.byName[s.Name]; ok {
		return fmt.Errorf("add service %s: already added", s.Name)
	}
	v := &svc{
		spec:    s,
		log:     newLogBuffer(logSize),
		restart: make(chan struct{}, 1),
		status:  Status{Name: s.Name, State: StateStopped},
	}
	log := m.logger.With("service", s.Name)
	v.log.onLine = func(line []byte) {
		if log.Enabled(context.Background(), slog.LevelDebug) {
			log.Debug("output", "line", string(bytes.TrimRight(line, "\r\n")))
		}
	}
	if s.Unsupported != "" {
		v.status.State = StateUnsupported
		v.status.Message = s.Unsupported
	}
	m.svcs = append(m.svcs, v)
	m.byName[s.Name] = v
	if m.runCtx != nil {
		m.goSupervise(m.runCtx, v)
	}
	m.notifyLocked()
	return nil
}

// Run starts every service, supervises them until ctx ends, then stops them all
// (dependents before their dependencies) and returns when every process is gone.
func (m *Manager) Run(ctx context.Context) error {
	m.mu.Lock()
	if m.runCtx != nil {
		m.mu.Unlock()
		return errors.New("run services: already running")
	}
	m.runCtx = ctx
	for _, v := range m.svcs {
		m.goSupervise(ctx, v)
	}
	m.mu.Unlock()

	<-ctx.Done()
	m.logger.Info("stopping services")
	// Add takes the lock and checks runCtx, so after this no new goroutine can join wg.
	m.mu.Lock()
	m.runCtx = nil
	m.mu.Unlock()
	m.wg.Wait()
	m.logger.Info("services stopped")
	return nil
}

func (m *Manager) goSupervise(ctx context.Context, v *svc) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.supervise(ctx, v)
	}()
}

// Status returns the state of every service, in Add order.
func (m *Manager) Status() []Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Status, len(m.svcs))
	for i, v := range m.svcs {
		out[i] = v.status
	}
	return out
}

// Logs returns the last max bytes (all when max <= 0) of a service's output; the
// buffer keeps the last 256 KiB.
func (m *Manager) Logs(name string, max int) ([]byte, error) {
	v, err := m.get(name)
	if err != nil {
		return nil, fmt.Errorf("logs of %s: %w", name, err)
	}
	return v.log.Last(max), nil
}

// Subscribe returns a channel that receives a service's output from now on, one line
// (ending in a newline) per value, and a function that ends the subscription. A
// subscriber that does not keep up loses lines rather than slowing the service. For
// an unknown name the channel is closed at once.
func (m *Manager) Subscribe(name string) (<-chan []byte, func()) {
	v, err := m.get(name)
	if err != nil {
		ch := make(chan []byte)
		close(ch)
		return ch, func() {}
	}
	return v.log.Subscribe()
}

// Restart stops a service's process (if it has one) and starts it again at once,
// without backoff; a finished OneShot runs again. It returns when the new process has
// been started, or with ctx's error.
func (m *Manager) Restart(ctx context.Context, name string) error {
	v, err := m.get(name)
	if err != nil {
		return fmt.Errorf("restart %s: %w", name, err)
	}
	m.mu.Lock()
	if v.spec.Unsupported != "" || v.status.State == StateUnsupported {
		m.mu.Unlock()
		return fmt.Errorf("restart %s: unsupported: %s", name, v.status.Message)
	}
	if m.runCtx == nil {
		m.mu.Unlock()
		return fmt.Errorf("restart %s: services are not running", name)
	}
	before := v.attempts
	m.mu.Unlock()

	select {
	case v.restart <- struct{}{}:
	default: // a request is already pending; it serves this one too
	}
	return m.waitFor(ctx, func() bool { return v.attempts > before || v.stopped })
}

func (m *Manager) get(name string) (*svc, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.byName[name]
	if !ok {
		return nil, ErrNotFound
	}
	return v, nil
}

// notifyLocked wakes everyone waiting in waitFor. m.mu must be held.
func (m *Manager) notifyLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// update changes a service's status under the lock and wakes the waiters.
func (m *Manager) update(v *svc, f func(st *Status)) {
	m.mu.Lock()
	f(&v.status)
	m.notifyLocked()
	m.mu.Unlock()
}

// waitFor waits until cond (called with m.mu held) is true or ctx ends.
func (m *Manager) waitFor(ctx context.Context, cond func() bool) error {
	for {
		m.mu.Lock()
		if cond() {
			m.mu.Unlock()
			return nil
		}
		ch := m.changed
		m.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}
