package networks

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/supervisor/vnet"
	"github.com/cairn-os/cairn/ui/layout"
)

var (
	alice  = engine.User{ID: "u-alice", Name: "alice", Role: engine.RoleUser}
	bob    = engine.User{ID: "u-bob", Name: "bob", Role: engine.RoleUser}
	root   = engine.User{ID: "u-root", Name: "root", Role: engine.RoleAdmin}
	reader = engine.User{ID: "u-alice", Name: "alice", Role: engine.RoleReadonly}
)

// fakeService is the engine as these areas see it: networks, connections and
// servers in memory, owned and refused as the engine does (what another user owns is
// not found; read-only users change nothing). Every change is recorded.
type fakeService struct {
	mu       sync.Mutex
	nets     []engine.Network
	conns    []engine.Connection
	servers  []engine.Server
	settings engine.Settings
	// guestKeepsNIC makes DetachConnection detach with the engine's error for a guest
	// that does not release the NIC.
	guestKeepsNIC bool
	calls         []string
}

func newFake() *fakeService {
	return &fakeService{
		nets: []engine.Network{
			{ID: 3, Name: "lab", Owner: alice.ID, Kind: engine.NetworkInternal, Prefix: "10.1.2.0/24", Gateway: "10.1.2.1"},
			{ID: 4, Name: "bobnet", Owner: bob.ID, Kind: engine.NetworkInternal, Prefix: "10.1.3.0/24", Gateway: "10.1.3.1", DNS: []string{"1.1.1.1"}},
			{ID: 5, Name: "external", Owner: alice.ID, Kind: engine.NetworkExternal},
			{ID: 6, Name: "empty", Owner: alice.ID, Kind: engine.NetworkInternal, Prefix: "10.1.4.0/24", Gateway: "10.1.4.1"},
		},
		conns: []engine.Connection{
			{ID: "c-lan", Name: "web-public", Owner: alice.ID, Kind: engine.ConnMapping, Network: 3, MAC: "52:54:00:aa:00:01",
				Address: "10.1.2.10", External: "198.51.100.7", Ports: "80,443", Server: "s-1"},
			{ID: "c-free", Name: "spare", Owner: alice.ID, Kind: engine.ConnInternal, Network: 3, MAC: "52:54:00:aa:00:02", Address: "10.1.2.11"},
			{ID: "c-ext", Name: "public", Owner: alice.ID, Kind: engine.ConnExternal, Network: 5, MAC: "52:54:00:aa:00:04", Address: "198.51.100.8"},
			{ID: "c-bob", Name: "bobs", Owner: bob.ID, Kind: engine.ConnInternal, Network: 4, MAC: "52:54:00:aa:00:03", Address: "10.1.3.10"},
		},
		servers: []engine.Server{
			{ID: "s-1", Name: "web-1", Owner: alice.ID, State: engine.ServerRunning},
			{ID: "s-2", Name: "db-1", Owner: alice.ID, State: engine.ServerShutoff},
			{ID: "s-3", Name: "build-1", Owner: bob.ID, State: engine.ServerShutoff},
		},
		settings: engine.Settings{Placement: "disperse", ExternalRange: "198.51.100.7-198.51.100.20", ExternalQuota: 4, DNS: []string{"9.9.9.9"}},
	}
}

func (f *fakeService) call(format string, a ...any) {
	f.calls = append(f.calls, fmt.Sprintf(format, a...))
}

func (f *fakeService) called(prefix string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.ContainsFunc(f.calls, func(c string) bool { return strings.HasPrefix(c, prefix) })
}

func sees(u engine.User, owner string) bool { return u.Role == engine.RoleAdmin || owner == u.ID }

func writer(u engine.User, op string) error {
	if u.Role == engine.RoleReadonly {
		return fmt.Errorf("%s: %w: readonly users can only look; ask an admin", op, engine.ErrForbidden)
	}
	return nil
}

func (f *fakeService) network(u engine.User, id int) (int, error) {
	for i, n := range f.nets {
		if n.ID == id && sees(u, n.Owner) {
			return i, nil
		}
	}
	return -1, fmt.Errorf("%w: no network %d; list them with GET /api/v1/networks", engine.ErrNotFound, id)
}

func (f *fakeService) conn(u engine.User, id string) (int, error) {
	for i, c := range f.conns {
		if c.ID == id && sees(u, c.Owner) {
			return i, nil
		}
	}
	return -1, fmt.Errorf("%w: no connection %q; list them with GET /api/v1/connections", engine.ErrNotFound, id)
}

func (f *fakeService) Networks(_ context.Context, u engine.User) ([]engine.Network, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []engine.Network
	for _, n := range f.nets {
		if sees(u, n.Owner) {
			out = append(out, n)
		}
	}
	return out, nil
}

func (f *fakeService) CreateNetwork(_ context.Context, u engine.User, req engine.NetworkRequest) (engine.Network, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	op := fmt.Sprintf("create network %q", req.Name)
	if err := writer(u, op); err != nil {
		return engine.Network{}, err
	}
	for _, n := range f.nets {
		if req.Prefix != "" && n.Prefix == req.Prefix {
			return engine.Network{}, fmt.Errorf("%s: %w: prefix %s overlaps %s, which is in use", op, engine.ErrExists, req.Prefix, n.Prefix)
		}
	}
	f.call("CreateNetwork %s %s %v", req.Name, req.Prefix, req.DNS)
	n := engine.Network{ID: 7, Name: req.Name, Owner: u.ID, Kind: engine.NetworkInternal, Prefix: "10.1.5.0/24", Gateway: "10.1.5.1", DNS: req.DNS}
	f.nets = append(f.nets, n)
	return n, nil
}

func (f *fakeService) UpdateNetwork(_ context.Context, u engine.User, id int, upd engine.NetworkUpdate) (engine.Network, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	op := fmt.Sprintf("update network %d", id)
	if err := writer(u, op); err != nil {
		return engine.Network{}, err
	}
	i, err := f.network(u, id)
	if err != nil {
		return engine.Network{}, fmt.Errorf("%s: %w", op, err)
	}
	if upd.Name != nil {
		if *upd.Name == "" {
			return engine.Network{}, fmt.Errorf("%s: %w: network name \"\": give 1 to 64 characters on one line", op, engine.ErrInvalid)
		}
		f.nets[i].Name = *upd.Name
	}
	if upd.DNS != nil {
		f.nets[i].DNS = *upd.DNS
	}
	f.call("UpdateNetwork %d %s %v", id, f.nets[i].Name, f.nets[i].DNS)
	return f.nets[i], nil
}

func (f *fakeService) DeleteNetwork(_ context.Context, u engine.User, id int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	op := fmt.Sprintf("delete network %d", id)
	if err := writer(u, op); err != nil {
		return err
	}
	i, err := f.network(u, id)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	var on []string
	for _, c := range f.conns {
		if c.Network == id {
			on = append(on, c.ID)
		}
	}
	if len(on) > 0 {
		return fmt.Errorf("%s: %w: connections %s are on it; delete them first", op, engine.ErrInUse, strings.Join(on, ", "))
	}
	f.call("DeleteNetwork %d", id)
	f.nets = slices.Delete(f.nets, i, i+1)
	return nil
}

func (f *fakeService) Connections(_ context.Context, u engine.User) ([]engine.Connection, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []engine.Connection
	for _, c := range f.conns {
		if sees(u, c.Owner) {
			out = append(out, c)
		}
	}
	return out, nil
}

func (f *fakeService) CreateConnection(_ context.Context, u engine.User, req engine.ConnectionRequest) (engine.Connection, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	op := fmt.Sprintf("create %s connection", req.Kind)
	if err := writer(u, op); err != nil {
		return engine.Connection{}, err
	}
	// As the engine: the port list first, then the network.
	if _, err := vnet.ParsePorts(req.Ports); err != nil {
		return engine.Connection{}, fmt.Errorf("%s: ports: %w: %v", op, engine.ErrInvalid, err)
	}
	if req.Kind == engine.ConnExternal && req.Network != 0 {
		return engine.Connection{}, fmt.Errorf("%s: %w: an external connection takes no network and one address (external)", op, engine.ErrInvalid)
	}
	f.call("CreateConnection %s %s %d %q %q %q %q", req.Name, req.Kind, req.Network, req.Address, req.External, req.Ports, req.Server)
	c := engine.Connection{ID: "c-new", Name: req.Name, Owner: u.ID, Kind: req.Kind, Network: req.Network, MAC: "52:54:00:aa:00:09",
		Address: "10.1.2.12", External: req.External, Ports: req.Ports, Server: req.Server}
	f.conns = append(f.conns, c)
	return c, nil
}

func (f *fakeService) UpdateConnection(_ context.Context, u engine.User, id string, upd engine.ConnectionUpdate) (engine.Connection, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	op := fmt.Sprintf("update connection %q", id)
	if err := writer(u, op); err != nil {
		return engine.Connection{}, err
	}
	i, err := f.conn(u, id)
	if err != nil {
		return engine.Connection{}, fmt.Errorf("%s: %w", op, err)
	}
	if upd.Ports != nil {
		if f.conns[i].Kind != engine.ConnMapping {
			return engine.Connection{}, fmt.Errorf("%s: %w: only mapping connections take a port list", op, engine.ErrInvalid)
		}
		if _, err := vnet.ParsePorts(*upd.Ports); err != nil {
			return engine.Connection{}, fmt.Errorf("%s: ports: %w: %v", op, engine.ErrInvalid, err)
		}
		f.conns[i].Ports = *upd.Ports
	}
	if upd.Name != nil {
		f.conns[i].Name = *upd.Name
	}
	f.call("UpdateConnection %s %s %s", id, f.conns[i].Name, f.conns[i].Ports)
	return f.conns[i], nil
}

func (f *fakeService) DeleteConnection(_ context.Context, u engine.User, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := writer(u, "delete connection"); err != nil {
		return err
	}
	i, err := f.conn(u, id)
	if err != nil {
		return err
	}
	f.call("DeleteConnection %s", id)
	f.conns = slices.Delete(f.conns, i, i+1)
	return nil
}

func (f *fakeService) AttachConnection(_ context.Context, u engine.User, id, server string) (engine.Connection, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	op := fmt.Sprintf("attach connection %q", id)
	if err := writer(u, op); err != nil {
		return engine.Connection{}, err
	}
	i, err := f.conn(u, id)
	if err != nil {
		return engine.Connection{}, fmt.Errorf("%s: %w", op, err)
	}
	if f.conns[i].Server != "" {
		return engine.Connection{}, fmt.Errorf("%s to server %q: %w: connection %s is attached to server %s; detach it first", op, server, engine.ErrInUse, id, f.conns[i].Server)
	}
	f.call("AttachConnection %s %s", id, server)
	f.conns[i].Server = server
	return f.conns[i], nil
}

func (f *fakeService) DetachConnection(_ context.Context, u engine.User, id string) (engine.Connection, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	op := fmt.Sprintf("detach connection %q", id)
	if err := writer(u, op); err != nil {
		return engine.Connection{}, err
	}
	i, err := f.conn(u, id)
	if err != nil {
		return engine.Connection{}, fmt.Errorf("%s: %w", op, err)
	}
	if f.conns[i].Server == "" {
		return engine.Connection{}, fmt.Errorf("%s: %w: it is not attached to a server", op, engine.ErrInvalid)
	}
	f.call("DetachConnection %s", id)
	server := f.conns[i].Server
	f.conns[i].Server = ""
	if f.guestKeepsNIC {
		return f.conns[i], fmt.Errorf("%s: %w: detached from the configuration, but the guest of server %s did not release the NIC; it goes when the server powers off", op, engine.ErrInUse, server)
	}
	return f.conns[i], nil
}

func (f *fakeService) Servers(_ context.Context, u engine.User) ([]engine.Server, error) {
	var out []engine.Server
	for _, s := range f.servers {
		if sees(u, s.Owner) {
			out = append(out, s)
		}
	}
	return out, nil
}

func (f *fakeService) Settings(context.Context, engine.User) (engine.Settings, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.settings, nil
}

func (f *fakeService) UpdateSettings(_ context.Context, u engine.User, st engine.Settings) (engine.Settings, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if u.Role != engine.RoleAdmin {
		return engine.Settings{}, fmt.Errorf("update engine settings: %w: only admins can do this", engine.ErrForbidden)
	}
	if st.ExternalRange != "" && !strings.Contains(st.ExternalRange, "-") && !strings.Contains(st.ExternalRange, "/") {
		return engine.Settings{}, fmt.Errorf("update engine settings: %w: external range %q: write it as FIRST-LAST or a prefix such as 198.51.100.0/28", engine.ErrInvalid, st.ExternalRange)
	}
	f.call("UpdateSettings %s %s %d %v", st.Placement, st.ExternalRange, st.ExternalQuota, st.DNS)
	f.settings = st
	return st, nil
}

func (f *fakeService) UsageOf(_ context.Context, u engine.User, who string) (engine.Usage, error) {
	if who != "me" {
		return engine.Usage{}, engine.ErrForbidden
	}
	return engine.Usage{User: u.ID, Connections: 3, ExternalAddresses: 2, ExternalQuota: 4}, nil
}

func (f *fakeService) Users(_ context.Context, u engine.User) ([]engine.User, error) {
	if u.Role != engine.RoleAdmin {
		return nil, fmt.Errorf("list users: %w: only admins can do this", engine.ErrForbidden)
	}
	return []engine.User{alice, bob, root}, nil
}

// do sends a request as u through the areas' routes (the console's mux in front has
// checked the session and the CSRF token); form is the posted body.
func do(t *testing.T, svc Service, u engine.User, method, target, form string) *httptest.ResponseRecorder {
	t.Helper()
	h := New(svc, slog.New(slog.NewTextHandler(io.Discard, nil)))
	mux := http.NewServeMux()
	for _, rt := range h.Routes() {
		mux.HandleFunc(rt.Pattern, rt.Handler)
	}
	r := httptest.NewRequest(method, target, strings.NewReader(form))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r = r.WithContext(layout.WithViewer(r.Context(), layout.Viewer{User: u, Session: engine.Session{CSRF: "tok"}}))
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, r)
	return rec
}

func mustContain(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s lacks %q", what, w)
		}
	}
}

func mustNotContain(t *testing.T, what, got string, unwanted ...string) {
	t.Helper()
	for _, w := range unwanted {
		if strings.Contains(got, w) {
			t.Errorf("%s has %q", what, w)
		}
	}
}
