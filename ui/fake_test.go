package ui

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/supervisor/service"
)

// fakeEngine is the engine's service layer as the console sees it, in memory.
type fakeEngine struct {
	// The areas these tests do not visit are left unimplemented: calling one panics.
	Service

	mu        sync.Mutex
	passwords map[string]string // name → password
	sessions  map[string]engine.Session
	next      int
	info      engine.Info
	nodes     []engine.Node
	services  []engine.ServiceStatus
}

var _ Service = (*fakeEngine)(nil)

func newFakeEngine() *fakeEngine {
	now := time.Now()
	gib := uint64(1 << 30)
	return &fakeEngine{
		passwords: map[string]string{"alice": "correct horse"},
		sessions:  map[string]engine.Session{},
		info: engine.Info{
			Name: "lab", Version: "0.1.0", URL: "https://10.0.0.1",
			CAFingerprint: "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
			StartedAt:     now.Add(-3*time.Hour - 12*time.Minute),
			NodesTotal:    3, NodesReady: 1, CPUsTotal: 20,
			MemoryBytesTotal: 96 * gib, MemoryFreeBytes: 61 * gib,
		},
		nodes: []engine.Node{
			{
				ID: "admin", Name: "admin", MAC: "52:54:00:00:00:01", Address: "10.0.0.1",
				Roles: []string{engine.NodeRoleAdmin, engine.NodeRoleCompute}, State: engine.NodeReady,
				CPUs: 4, MemoryBytes: 16 * gib, MemoryFreeBytes: 9 * gib, Load1: 0.42, KVM: true,
				Libvirt: "libvirt 9.0.0, QEMU 7.2.0", Version: "0.1.0",
				Disks:    []engine.Disk{{Name: "vda", SizeBytes: 64 * gib, Model: "QEMU HARDDISK"}},
				NICs:     []engine.NIC{{Name: "eth0", MAC: "52:54:00:00:00:01", Addresses: []string{"10.0.0.1/16"}}},
				JoinedAt: now.Add(-3 * time.Hour), LastSeen: now.Add(-3 * time.Second),
			},
			{
				ID: "n-525400000002", Name: "rack1-node2", MAC: "52:54:00:00:00:02", Address: "10.0.100.2",
				Roles: []string{engine.NodeRoleCompute}, State: engine.NodeMaintenance,
				CPUs: 8, MemoryBytes: 32 * gib, MemoryFreeBytes: 30 * gib,
				JoinedAt: now.Add(-2 * time.Hour), LastSeen: now.Add(-4 * time.Second),
			},
			{
				ID: "n-525400000003", Name: "rack1-node3", MAC: "52:54:00:00:00:03", Address: "10.0.100.3",
				Roles: []string{engine.NodeRoleCompute}, State: engine.NodeDown,
				CPUs: 8, MemoryBytes: 48 * gib, MemoryFreeBytes: 22 * gib,
				JoinedAt: now.Add(-2 * time.Hour), LastSeen: now.Add(-95 * time.Second),
			},
		},
		services: []engine.ServiceStatus{
			{Name: "virtlogd", State: service.StateRunning, PID: 312, StartedAt: now.Add(-3 * time.Hour)},
			{Name: "libvirtd", State: service.StateBackoff, PID: 0, Restarts: 3, LastExit: "exit status 1"},
		},
	}
}

func (f *fakeEngine) Authenticate(_ context.Context, name, password string) (engine.User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p, ok := f.passwords[name]; !ok || p != password {
		return engine.User{}, fmt.Errorf("authenticate %s: %w", name, engine.ErrUnauthorized)
	}
	return engine.User{ID: "u-" + name, Name: name, Role: engine.RoleAdmin}, nil
}

func (f *fakeEngine) CreateSession(_ context.Context, u engine.User) (engine.Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next++
	s := engine.Session{
		ID: fmt.Sprintf("sess-%d", f.next), UserID: u.ID, CSRF: fmt.Sprintf("csrf-%d", f.next),
		CreatedAt: time.Now(), ExpiresAt: time.Now().Add(12 * time.Hour),
	}
	f.sessions[s.ID] = s
	return s, nil
}

func (f *fakeEngine) SessionUser(_ context.Context, id string) (engine.User, engine.Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.sessions[id]
	if !ok {
		return engine.User{}, engine.Session{}, fmt.Errorf("session: %w", engine.ErrNotFound)
	}
	name := s.UserID[len("u-"):]
	return engine.User{ID: s.UserID, Name: name, Role: engine.RoleAdmin}, s, nil
}

func (f *fakeEngine) DeleteSession(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.sessions[id]; !ok {
		return fmt.Errorf("delete session: %w", engine.ErrNotFound)
	}
	delete(f.sessions, id)
	return nil
}

func (f *fakeEngine) hasSession(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.sessions[id]
	return ok
}

func (f *fakeEngine) Info(context.Context, engine.User) (engine.Info, error) { return f.info, nil }

func (f *fakeEngine) Nodes(context.Context, engine.User) ([]engine.Node, error) {
	return f.nodes, nil
}

func (f *fakeEngine) Node(_ context.Context, _ engine.User, id string) (engine.Node, error) {
	for _, n := range f.nodes {
		if n.ID == id {
			return n, nil
		}
	}
	return engine.Node{}, fmt.Errorf("node %s: %w", id, engine.ErrNotFound)
}

func (f *fakeEngine) Services(context.Context, engine.User) ([]engine.ServiceStatus, error) {
	return f.services, nil
}
