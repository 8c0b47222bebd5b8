package servers

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/cairn-os/cairn/supervisor/engine"
)

// *engine.Engine is what the console passes in; keep the interface in step with it.
var _ Service = (*engine.Engine)(nil)

// fakeEngine is the engine's service layer as the Servers area sees it: servers and
// operations in memory, owned and checked as the engine does (a server another user
// owns is not found; read-only users may not change anything).
type fakeEngine struct {
	mu      sync.Mutex
	servers []engine.Server
	images  []engine.Image
	nodes   []engine.Node
	users   []engine.User
	ops     []engine.Operation
	conns   []engine.Connection
	// guestKeepsNIC makes DetachConnection detach with the engine's error for a guest
	// that does not release the NIC.
	guestKeepsNIC bool
	// err, when set, is what the next action returns.
	err error
	// calls records the actions that reached the engine: "start s-1".
	calls []string
	// created is the last request CreateServer got.
	created engine.ServerRequest
}

var fakeNameRule = regexp.MustCompile(`^[a-z0-9][a-z0-9._@-]{1,63}$`)

func (f *fakeEngine) find(u engine.User, id string) (int, error) {
	for i, s := range f.servers {
		if s.ID == id && (u.Role == engine.RoleAdmin || s.Owner == u.ID) {
			return i, nil
		}
	}
	return -1, fmt.Errorf("server %q: %w", id, engine.ErrNotFound)
}

func writer(u engine.User, op string) error {
	if u.Role == engine.RoleReadonly {
		return fmt.Errorf("%s: %w: readonly users can only look; ask an admin", op, engine.ErrForbidden)
	}
	return nil
}

func (f *fakeEngine) Servers(_ context.Context, u engine.User) ([]engine.Server, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []engine.Server
	for _, s := range f.servers {
		if u.Role == engine.RoleAdmin || s.Owner == u.ID {
			out = append(out, s)
		}
	}
	return out, nil
}

func (f *fakeEngine) Server(_ context.Context, u engine.User, id string) (engine.Server, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, err := f.find(u, id)
	if err != nil {
		return engine.Server{}, err
	}
	return f.servers[i], nil
}

func (f *fakeEngine) CreateServer(_ context.Context, u engine.User, req engine.ServerRequest) (engine.Server, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.created = req
	op := fmt.Sprintf("create server %q", req.Name)
	if err := writer(u, op); err != nil {
		return engine.Server{}, err
	}
	if !fakeNameRule.MatchString(req.Name) {
		return engine.Server{}, fmt.Errorf("%s: %w: a name is 2 to 64 characters of a-z, 0-9, '.', '_', '@' and '-', starting with a letter or digit", op, engine.ErrInvalid)
	}
	if f.err != nil {
		return engine.Server{}, f.err
	}
	s := engine.Server{ID: "s-new", Name: req.Name, Owner: u.ID, VCPUs: req.VCPUs, MemoryMiB: req.MemoryMiB, State: engine.ServerShutoff}
	f.servers = append(f.servers, s)
	f.calls = append(f.calls, "create "+req.Name)
	return s, nil
}

// act runs an action on server id as the engine would: found, writable, then fn.
func (f *fakeEngine) act(u engine.User, id, verb string, fn func(s *engine.Server) error) (engine.Server, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, err := f.find(u, id)
	if err != nil {
		return engine.Server{}, err
	}
	if err := writer(u, verb+" server "+id); err != nil {
		return engine.Server{}, err
	}
	if f.err != nil {
		return engine.Server{}, f.err
	}
	if fn != nil {
		if err := fn(&f.servers[i]); err != nil {
			return engine.Server{}, err
		}
	}
	f.calls = append(f.calls, verb+" "+id)
	return f.servers[i], nil
}

func (f *fakeEngine) UpdateServer(_ context.Context, u engine.User, id string, upd engine.ServerUpdate) (engine.Server, error) {
	return f.act(u, id, "update", func(s *engine.Server) error {
		if upd.Autostart != nil {
			s.Autostart = *upd.Autostart
		}
		return nil
	})
}

func (f *fakeEngine) StartServer(_ context.Context, u engine.User, id string) (engine.Server, error) {
	return f.act(u, id, "start", func(s *engine.Server) error {
		if s.State != engine.ServerShutoff && s.State != engine.ServerCrashed {
			return fmt.Errorf("start server %q: %w: it is %s", id, engine.ErrInvalid, s.State)
		}
		s.State, s.Node = engine.ServerRunning, "n-1"
		return nil
	})
}

func (f *fakeEngine) ShutdownServer(_ context.Context, u engine.User, id string, timeout time.Duration) (engine.Operation, error) {
	s, err := f.act(u, id, "shutdown", nil)
	if err != nil {
		return engine.Operation{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	op := engine.Operation{ID: fmt.Sprintf("op-%d", len(f.ops)+1), Owner: u.ID, Kind: "shutdown", Target: s.ID,
		State: engine.OpRunning, Message: "waiting for the guest to power off", CreatedAt: time.Now()}
	f.ops = append(f.ops, op)
	return op, nil
}

func (f *fakeEngine) StopServer(_ context.Context, u engine.User, id string) (engine.Server, error) {
	return f.act(u, id, "stop", func(s *engine.Server) error {
		s.State = engine.ServerShutoff
		return nil
	})
}

func (f *fakeEngine) RebootServer(_ context.Context, u engine.User, id string) (engine.Server, error) {
	return f.act(u, id, "reboot", nil)
}

func (f *fakeEngine) SuspendServer(_ context.Context, u engine.User, id string) (engine.Server, error) {
	return f.act(u, id, "suspend", func(s *engine.Server) error {
		s.State = engine.ServerPaused
		return nil
	})
}

func (f *fakeEngine) ResumeServer(_ context.Context, u engine.User, id string) (engine.Server, error) {
	return f.act(u, id, "resume", func(s *engine.Server) error {
		s.State = engine.ServerRunning
		return nil
	})
}

func (f *fakeEngine) MigrateServer(_ context.Context, u engine.User, id, target string) (engine.Operation, error) {
	s, err := f.act(u, id, "migrate", nil)
	if err != nil {
		return engine.Operation{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	op := engine.Operation{ID: fmt.Sprintf("op-%d", len(f.ops)+1), Owner: u.ID, Kind: "migrate", Target: s.ID,
		State: engine.OpRunning, Message: "migrating to " + target, CreatedAt: time.Now()}
	f.ops = append(f.ops, op)
	return op, nil
}

func (f *fakeEngine) DeleteServer(_ context.Context, u engine.User, id string, deleteDisks bool) ([]string, error) {
	s, err := f.act(u, id, "delete", func(s *engine.Server) error {
		if s.State != engine.ServerShutoff {
			return fmt.Errorf("delete server %q: %w: it is %s; shut it down or force it off first", id, engine.ErrInUse, s.State)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.servers = slices.DeleteFunc(f.servers, func(o engine.Server) bool { return o.ID == s.ID })
	var kept []string
	if deleteDisks {
		for _, d := range s.Disks {
			kept = append(kept, fmt.Sprintf("%s: delete image %q: in use: it is a master with children", d.Image, d.Image))
		}
	}
	return kept, nil
}

func (f *fakeEngine) AttachDisk(_ context.Context, u engine.User, id string, req engine.ServerDiskRequest) (engine.Server, error) {
	return f.act(u, id, "attach", func(s *engine.Server) error {
		s.Disks = append(s.Disks, engine.ServerDisk{Image: req.Image, Bus: req.Bus})
		return nil
	})
}

func (f *fakeEngine) DetachDisk(_ context.Context, u engine.User, id string, index int) (engine.Server, error) {
	return f.act(u, id, "detach", func(s *engine.Server) error {
		if index < 0 || index >= len(s.Disks) {
			return fmt.Errorf("detach a disk from server %q: %w: it has disks 0 to %d", id, engine.ErrInvalid, len(s.Disks)-1)
		}
		s.Disks = slices.Delete(s.Disks, index, index+1)
		return nil
	})
}

func (f *fakeEngine) SetCDROM(_ context.Context, u engine.User, id, image string) (engine.Server, error) {
	return f.act(u, id, "cdrom", func(s *engine.Server) error {
		s.CDROM = image
		return nil
	})
}

func (f *fakeEngine) Images(context.Context, engine.User) ([]engine.Image, error) {
	return f.images, nil
}

func (f *fakeEngine) Nodes(context.Context, engine.User) ([]engine.Node, error) {
	return f.nodes, nil
}

func (f *fakeEngine) Users(_ context.Context, u engine.User) ([]engine.User, error) {
	if u.Role != engine.RoleAdmin {
		return nil, fmt.Errorf("list users: %w: only admins may", engine.ErrForbidden)
	}
	return f.users, nil
}

func (f *fakeEngine) Operation(_ context.Context, u engine.User, id string) (engine.Operation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, op := range f.ops {
		if op.ID == id && (u.Role == engine.RoleAdmin || op.Owner == u.ID) {
			return op, nil
		}
	}
	return engine.Operation{}, fmt.Errorf("operation %q: %w", id, engine.ErrNotFound)
}

func (f *fakeEngine) Operations(_ context.Context, u engine.User) ([]engine.Operation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []engine.Operation
	for _, op := range f.ops {
		if u.Role == engine.RoleAdmin || op.Owner == u.ID {
			out = append(out, op)
		}
	}
	return out, nil
}

func (f *fakeEngine) Connections(_ context.Context, u engine.User) ([]engine.Connection, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []engine.Connection
	for _, c := range f.conns {
		if u.Role == engine.RoleAdmin || c.Owner == u.ID {
			out = append(out, c)
		}
	}
	return out, nil
}

// conn finds connection id as u sees it; the caller holds f.mu.
func (f *fakeEngine) conn(u engine.User, id string) (int, error) {
	for i, c := range f.conns {
		if c.ID == id && (u.Role == engine.RoleAdmin || c.Owner == u.ID) {
			return i, nil
		}
	}
	return -1, fmt.Errorf("%w: no connection %q", engine.ErrNotFound, id)
}

func (f *fakeEngine) AttachConnection(_ context.Context, u engine.User, id, serverID string) (engine.Connection, error) {
	var c engine.Connection
	_, err := f.act(u, serverID, "attach-connection", func(s *engine.Server) error {
		i, err := f.conn(u, id)
		if err != nil {
			return err
		}
		if f.conns[i].Server != "" {
			return fmt.Errorf("attach connection %q: %w: connection %s is attached to server %s; detach it first", id, engine.ErrInUse, id, f.conns[i].Server)
		}
		f.conns[i].Server = s.ID
		c = f.conns[i]
		s.NICs = append(s.NICs, engine.ServerNIC{MAC: c.MAC, Model: "virtio", Connection: c.ID, Kind: c.Kind, Network: c.Network, Address: c.Address, External: c.External})
		return nil
	})
	return c, err
}

func (f *fakeEngine) DetachConnection(_ context.Context, u engine.User, id string) (engine.Connection, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := writer(u, "detach connection "+id); err != nil {
		return engine.Connection{}, err
	}
	i, err := f.conn(u, id)
	if err != nil {
		return engine.Connection{}, err
	}
	for j := range f.servers {
		f.servers[j].NICs = slices.DeleteFunc(f.servers[j].NICs, func(n engine.ServerNIC) bool { return n.Connection == id })
	}
	server := f.conns[i].Server
	f.conns[i].Server = ""
	f.calls = append(f.calls, "detach-connection "+id)
	if f.guestKeepsNIC {
		return f.conns[i], fmt.Errorf("detach connection %q: %w: detached from the configuration, but the guest of server %s did not release the NIC; it goes when the server powers off", id, engine.ErrInUse, server)
	}
	return f.conns[i], nil
}

// CancelOperation makes fakeEngine an operations.Service too, for the browser test.
func (f *fakeEngine) CancelOperation(_ context.Context, u engine.User, id string) (engine.Operation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, op := range f.ops {
		if op.ID == id && (u.Role == engine.RoleAdmin || op.Owner == u.ID) {
			if op.State != engine.OpRunning {
				return engine.Operation{}, fmt.Errorf("cancel operation %s: %w: it has already ended (%s)", id, engine.ErrInvalid, op.State)
			}
			f.ops[i].State, f.ops[i].Error, f.ops[i].EndedAt = engine.OpCanceled, "canceled", time.Now()
			return f.ops[i], nil
		}
	}
	return engine.Operation{}, fmt.Errorf("operation %q: %w", id, engine.ErrNotFound)
}

// setServer changes server id in place.
func (f *fakeEngine) setServer(id string, fn func(s *engine.Server)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.servers {
		if f.servers[i].ID == id {
			fn(&f.servers[i])
		}
	}
}

// endOp ends operation id in state with message.
func (f *fakeEngine) endOp(id string, state engine.OperationState, msg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.ops {
		if f.ops[i].ID == id {
			f.ops[i].State, f.ops[i].Error, f.ops[i].EndedAt = state, msg, time.Now()
		}
	}
}

func (f *fakeEngine) called() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

var (
	alice  = engine.User{ID: "u-alice", Name: "alice", Role: engine.RoleUser}
	bob    = engine.User{ID: "u-bob", Name: "bob", Role: engine.RoleUser}
	root   = engine.User{ID: "u-root", Name: "root", Role: engine.RoleAdmin}
	reader = engine.User{ID: "u-alice", Name: "alice", Role: engine.RoleReadonly}
)

// newFake is an engine with alice's running web-1 (two disks, an ISO in the
// drive), her shut-off db-1, bob's build-1, and two ready nodes.
func newFake() *fakeEngine {
	t0 := time.Date(2025, 11, 22, 11, 0, 0, 0, time.UTC)
	return &fakeEngine{
		servers: []engine.Server{
			{ID: "s-1", UUID: "3d2c1b0a-9f8e-4d7c-8b6a-5f4e3d2c1b0a", Name: "web-1", Owner: alice.ID, VCPUs: 2, MemoryMiB: 2048,
				Disks: []engine.ServerDisk{{Image: "i-web", Bus: "virtio"}, {Image: "i-data", Bus: "scsi"}}, CDROM: "i-iso",
				NICs: []engine.ServerNIC{{MAC: "52:54:00:12:34:56", Model: "virtio"},
					{MAC: "52:54:00:aa:00:01", Model: "virtio", Connection: "c-lan", Kind: engine.ConnMapping, Network: 3, Address: "10.1.2.10", External: "198.51.100.7"}},
				Boot: []string{"disk"}, Node: "n-1", State: engine.ServerRunning,
				Autostart: true, CreatedAt: t0, StateAt: t0},
			{ID: "s-2", Name: "db-1", Owner: alice.ID, VCPUs: 1, MemoryMiB: 512, Boot: []string{"disk"}, State: engine.ServerShutoff,
				Disks: []engine.ServerDisk{{Image: "i-db", Bus: "virtio"}}, CreatedAt: t0, StateAt: t0},
			{ID: "s-3", Name: "build-1", Owner: bob.ID, VCPUs: 4, MemoryMiB: 4096, Node: "n-2", State: engine.ServerPaused, CreatedAt: t0, StateAt: t0},
		},
		images: []engine.Image{
			{ID: "i-web", Name: "web-1-disk0", Owner: alice.ID, Format: "qcow2", State: engine.ImageReady, VirtualSize: 20 << 30, UsedBy: []string{"s-1"}},
			{ID: "i-data", Name: "data", Owner: alice.ID, Format: "raw", State: engine.ImageReady, VirtualSize: 100 << 30, UsedBy: []string{"s-1"}},
			{ID: "i-db", Name: "db", Owner: alice.ID, Format: "qcow2", State: engine.ImageReady, UsedBy: []string{"s-2"}},
			{ID: "i-free", Name: "scratch", Owner: alice.ID, Format: "qcow2", State: engine.ImageReady, VirtualSize: 8 << 30},
			{ID: "i-master", Name: "debian-12", Owner: alice.ID, Format: "qcow2", State: engine.ImageReady, Master: true, VirtualSize: 4 << 30},
			{ID: "i-iso", Name: "debian-12-netinst", Owner: alice.ID, Format: "iso", State: engine.ImageReady, VirtualSize: 650 << 20},
		},
		nodes: []engine.Node{
			{ID: "n-1", Name: "rack1-node1", State: engine.NodeReady},
			{ID: "n-2", Name: "rack1-node2", State: engine.NodeReady},
			{ID: "n-3", Name: "rack1-node3", State: engine.NodeDown},
		},
		users: []engine.User{alice, bob, root},
		conns: []engine.Connection{
			{ID: "c-lan", Name: "web-public", Owner: alice.ID, Kind: engine.ConnMapping, Network: 3, MAC: "52:54:00:aa:00:01",
				Address: "10.1.2.10", External: "198.51.100.7", Ports: "80,443", Server: "s-1"},
			{ID: "c-free", Name: "spare", Owner: alice.ID, Kind: engine.ConnInternal, Network: 3, MAC: "52:54:00:aa:00:02", Address: "10.1.2.11"},
			{ID: "c-bob", Name: "bobs", Owner: bob.ID, Kind: engine.ConnInternal, Network: 4, MAC: "52:54:00:aa:00:03", Address: "10.1.3.10"},
		},
	}
}
