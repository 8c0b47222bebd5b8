package engine

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-os/cairn/supervisor/store"
)

// recorder is an ApplyNetwork that keeps what each node was handed last.
type recorder struct {
	mu   sync.Mutex
	last map[string]NodeNetwork
	n    int
}

func (r *recorder) apply(ctx context.Context, n Node, nn NodeNetwork) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		r.last = map[string]NodeNetwork{}
	}
	r.last[n.ID] = nn
	r.n++
	return nil
}

func (r *recorder) get(id string) (NodeNetwork, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	nn, ok := r.last[id]
	return nn, ok
}

func netEngine(t *testing.T) (*testEngine, *recorder, User) {
	rec := &recorder{}
	te := openTest(t, "", nil, func(c *Config) {
		c.ApplyNetwork = rec.apply
		c.ReservedPrefixes = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}
	})
	return te, rec, te.admin(t)
}

func setRange(t *testing.T, te *testEngine, admin User, r string, quota int) {
	t.Helper()
	st, _ := te.Settings(context.Background(), admin)
	st.ExternalRange, st.ExternalQuota = r, quota
	if _, err := te.UpdateSettings(context.Background(), admin, st); err != nil {
		t.Fatal(err)
	}
}

// adminAndCompute registers the admin's own node (10.0.0.1) and joins one compute
// node (10.0.0.2); both beat once, so both are ready. It returns the compute node's ID.
func adminAndCompute(t *testing.T, te *testEngine) string {
	t.Helper()
	ctx := context.Background()
	if _, err := te.RegisterLocalNode(ctx, joinReq(t, "52:54:00:00:00:01", "10.0.0.1")); err != nil {
		t.Fatal(err)
	}
	resp, err := te.Join(ctx, te.JoinToken(), joinReq(t, "52:54:00:00:00:02", "10.0.0.2"))
	if err != nil {
		t.Fatal(err)
	}
	compute := resp.Node.ID
	for id, addr := range map[string]string{LocalNodeID: "10.0.0.1", compute: "10.0.0.2"} {
		if _, err := te.Heartbeat(ctx, id, Heartbeat{Address: addr}); err != nil {
			t.Fatal(err)
		}
	}
	return compute
}

// TestNetworkAllocationRace creates networks from many goroutines at once: each gets
// its own /24 and number, none the reserved LAN.
func TestNetworkAllocationRace(t *testing.T) {
	te, _, admin := netEngine(t)
	ctx := context.Background()
	const n = 64
	var wg sync.WaitGroup
	nets := make([]Network, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { nets[i], errs[i] = te.CreateNetwork(ctx, admin, NetworkRequest{Name: "race"}) })
	}
	wg.Wait()
	prefixes := map[string]int{}
	ids := map[int]bool{}
	for i, nw := range nets {
		if errs[i] != nil {
			t.Fatalf("create %d: %v", i, errs[i])
		}
		if j, dup := prefixes[nw.Prefix]; dup {
			t.Errorf("networks %d and %d share %s", nets[j].ID, nw.ID, nw.Prefix)
		}
		prefixes[nw.Prefix] = i
		if ids[nw.ID] {
			t.Errorf("network number %d given twice", nw.ID)
		}
		ids[nw.ID] = true
		if nw.Prefix == "10.0.0.0/24" {
			t.Errorf("network %d took the reserved LAN 10.0.0.0/24", nw.ID)
		}
	}
	all, err := te.Networks(ctx, admin)
	if err != nil || len(all) != n {
		t.Fatalf("Networks = %d, %v; want %d", len(all), err, n)
	}
}

// TestConnectionsBadInput: each mistake gets its sentinel and a message that says
// what to fix, and nothing is left behind.
func TestConnectionsBadInput(t *testing.T) {
	te, _, admin := netEngine(t)
	ctx := context.Background()
	alice := te.user(t, admin, "alice", RoleUser)
	bob := te.user(t, admin, "bob", RoleUser)
	nw, err := te.CreateNetwork(ctx, alice, NetworkRequest{Name: "web", Prefix: "10.20.30.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	setRange(t, te, admin, "198.51.100.10-198.51.100.12", 2)
	if _, err := te.CreateConnection(ctx, alice, ConnectionRequest{Kind: ConnMapping, Network: nw.ID, External: "198.51.100.10"}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		do   func() error
		want error
		msg  string
	}{
		{"overlapping prefix", func() error {
			_, err := te.CreateNetwork(ctx, bob, NetworkRequest{Prefix: "10.20.30.0/24"})
			return err
		}, ErrExists, "choose another /24"},
		{"prefix outside 10/8", func() error {
			_, err := te.CreateNetwork(ctx, bob, NetworkRequest{Prefix: "192.168.1.0/24"})
			return err
		}, ErrInvalid, "inside 10.0.0.0/8"},
		{"prefix not a /24", func() error {
			_, err := te.CreateNetwork(ctx, bob, NetworkRequest{Prefix: "10.9.0.0/16"})
			return err
		}, ErrInvalid, "/24"},
		{"reserved LAN", func() error {
			_, err := te.CreateNetwork(ctx, bob, NetworkRequest{Prefix: "10.0.0.0/24"})
			return err
		}, ErrExists, "reserved"},
		{"garbage prefix", func() error {
			_, err := te.CreateNetwork(ctx, bob, NetworkRequest{Prefix: "ten"})
			return err
		}, ErrInvalid, "10.1.2.0/24"},
		{"bad dns", func() error {
			_, err := te.CreateNetwork(ctx, bob, NetworkRequest{DNS: []string{"dns.example"}})
			return err
		}, ErrInvalid, "IPv4"},
		{"unknown kind", func() error {
			_, err := te.CreateConnection(ctx, alice, ConnectionRequest{Kind: "wifi"})
			return err
		}, ErrInvalid, "internal, external or mapping"},
		{"port list that does not parse", func() error {
			_, err := te.CreateConnection(ctx, alice, ConnectionRequest{Kind: ConnMapping, Network: nw.ID, Ports: "80,http"})
			return err
		}, ErrInvalid, "http"},
		{"external outside the range", func() error {
			_, err := te.CreateConnection(ctx, alice, ConnectionRequest{Kind: ConnExternal, External: "203.0.113.5"})
			return err
		}, ErrInvalid, "outside the configured range"},
		{"external taken", func() error {
			_, err := te.CreateConnection(ctx, alice, ConnectionRequest{Kind: ConnExternal, External: "198.51.100.10"})
			return err
		}, ErrExists, "taken"},
		{"internal address outside the network", func() error {
			_, err := te.CreateConnection(ctx, alice, ConnectionRequest{Kind: ConnInternal, Network: nw.ID, Address: "10.20.31.20"})
			return err
		}, ErrInvalid, "host address of 10.20.30.0/24"},
		{"gateway address", func() error {
			_, err := te.CreateConnection(ctx, alice, ConnectionRequest{Kind: ConnInternal, Network: nw.ID, Address: "10.20.30.1"})
			return err
		}, ErrInvalid, "host address"},
		{"someone else's network", func() error {
			_, err := te.CreateConnection(ctx, bob, ConnectionRequest{Kind: ConnInternal, Network: nw.ID})
			return err
		}, ErrNotFound, "no network"},
		{"ports on an internal connection", func() error {
			_, err := te.CreateConnection(ctx, alice, ConnectionRequest{Kind: ConnInternal, Network: nw.ID, Ports: "80"})
			return err
		}, ErrInvalid, "only mapping"},
		{"network in use", func() error { return te.DeleteNetwork(ctx, alice, nw.ID) }, ErrInUse, "delete them first"},
		{"range that leaves out a held address", func() error {
			st, _ := te.Settings(ctx, admin)
			st.ExternalRange = "198.51.100.11-198.51.100.12"
			_, err := te.UpdateSettings(ctx, admin, st)
			return err
		}, ErrInUse, "198.51.100.10"},
		{"range overlapping a network", func() error {
			st, _ := te.Settings(ctx, admin)
			st.ExternalRange = "10.20.30.100-10.20.30.120"
			_, err := te.UpdateSettings(ctx, admin, st)
			return err
		}, ErrExists, "overlaps network"},
		{"range that is not a range", func() error {
			st, _ := te.Settings(ctx, admin)
			st.ExternalRange = "198.51.100.20-198.51.100.10"
			_, err := te.UpdateSettings(ctx, admin, st)
			return err
		}, ErrInvalid, "comes after"},
		{"user sets the range", func() error {
			st, _ := te.Settings(ctx, alice)
			st.ExternalRange = "198.51.100.0/24"
			_, err := te.UpdateSettings(ctx, alice, st)
			return err
		}, ErrForbidden, "only admins"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.do()
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("err = %v; want %v saying %q", err, c.want, c.msg)
			}
		})
	}
	conns, _ := te.Connections(ctx, admin)
	if len(conns) != 1 {
		t.Errorf("%d connections after the bad requests, want the 1 made before", len(conns))
	}
	nets, _ := te.Networks(ctx, admin)
	if len(nets) != 1 {
		t.Errorf("%d networks after the bad requests, want 1", len(nets))
	}

	// Quota: alice holds 1 of 2; one more is fine, a third is refused.
	if _, err := te.CreateConnection(ctx, alice, ConnectionRequest{Kind: ConnExternal}); err != nil {
		t.Fatal(err)
	}
	if _, err := te.CreateConnection(ctx, alice, ConnectionRequest{Kind: ConnExternal}); !errors.Is(err, ErrQuota) {
		t.Errorf("third external address: err = %v, want ErrQuota", err)
	}
	us, err := te.UsageOf(ctx, alice, "me")
	if err != nil || us.ExternalAddresses != 2 || us.ExternalQuota != 2 {
		t.Errorf("usage = %+v, %v; want 2 of 2 external addresses", us, err)
	}
}

// TestNodeNetworks: what the admin and a compute node are handed follows the
// servers' placement, and the admin holds gateways, leases, routes and mappings.
func TestNodeNetworks(t *testing.T) {
	te, rec, admin := netEngine(t)
	ctx := context.Background()
	compute := adminAndCompute(t, te)
	setRange(t, te, admin, "198.51.100.10-198.51.100.20", 4)
	nw, err := te.CreateNetwork(ctx, admin, NetworkRequest{Name: "app"})
	if err != nil {
		t.Fatal(err)
	}
	gw, ok := rec.get(LocalNodeID)
	if !ok || len(gw.Networks) != 1 || !gw.Networks[0].Gateway || gw.Networks[0].Prefix.String() != nw.Prefix {
		t.Fatalf("admin has %+v after creating %s; want the network with its gateway", gw, nw.Prefix)
	}
	s := Server{ID: "s-1", Name: "Web 1", Owner: admin.ID, Node: compute, State: ServerShutoff, NICs: []ServerNIC{}}
	if err := te.store.Put(bucketServers, s.ID, s); err != nil {
		t.Fatal(err)
	}
	mapping, err := te.CreateConnection(ctx, admin, ConnectionRequest{Kind: ConnMapping, Network: nw.ID, Ports: "443, 80", Server: s.ID})
	if err != nil {
		t.Fatal(err)
	}
	ext, err := te.CreateConnection(ctx, admin, ConnectionRequest{Kind: ConnExternal, Server: s.ID})
	if err != nil {
		t.Fatal(err)
	}
	if mapping.Ports != "tcp:443,tcp:80" && mapping.Ports != "443,80" {
		t.Logf("ports written as %q", mapping.Ports)
	}
	gw, _ = rec.get(LocalNodeID)
	if len(gw.Networks) != 2 || len(gw.Mappings) != 1 || gw.Mappings[0].External.String() != mapping.External || len(gw.Mappings[0].Ports) != 2 {
		t.Fatalf("admin networks %+v mappings %+v; want the internal network, the external segment and one mapping on 2 ports", gw.Networks, gw.Mappings)
	}
	var routed []netip.Addr
	leases := 0
	for _, n := range gw.Networks {
		routed = append(routed, n.Routed...)
	}
	for _, d := range gw.DHCP {
		leases += len(d.Leases)
		for _, l := range d.Leases {
			if l.Hostname != "web-1" {
				t.Errorf("lease host name %q, want web-1", l.Hostname)
			}
		}
	}
	if len(routed) != 1 || routed[0].String() != ext.Address || leases != 2 {
		t.Errorf("admin routes %v and %d leases; want %s routed and 2 leases", routed, leases, ext.Address)
	}
	cn, _ := rec.get(compute)
	if len(cn.Networks) != 2 || cn.Networks[0].Gateway || len(cn.Peers) != 1 || cn.Peers[0].String() != "10.0.0.1" {
		t.Errorf("compute node has %+v; want both segments without gateway, peer 10.0.0.1", cn)
	}
	// A heartbeat that reports another version (a reboot) gets the node its network again.
	before := rec.n
	if _, err := te.Heartbeat(ctx, compute, Heartbeat{Address: "10.0.0.2", NetworkVersion: ""}); err != nil {
		t.Fatal(err)
	}
	te.wg.Wait()
	if rec.n != before+1 {
		t.Errorf("a node reporting no network version was handed %d networks, want 1", rec.n-before)
	}
	// Detach both: the compute node keeps nothing; deleting the connections removes the
	// external segment too.
	for _, c := range []Connection{mapping, ext} {
		if err := te.DeleteConnection(ctx, admin, c.ID); err != nil {
			t.Fatal(err)
		}
	}
	cn, _ = rec.get(compute)
	gw, _ = rec.get(LocalNodeID)
	if len(cn.Networks) != 0 || len(gw.Networks) != 1 || len(gw.Mappings) != 0 {
		t.Errorf("after deleting the connections: compute %+v, admin %+v", cn.Networks, gw.Networks)
	}
	if err := te.DeleteNetwork(ctx, admin, nw.ID); err != nil {
		t.Fatal(err)
	}
	gw, _ = rec.get(LocalNodeID)
	if len(gw.Networks) != 0 {
		t.Errorf("after deleting the network the admin still has %+v", gw.Networks)
	}
}

// TestNetworkPushesNeverGoBack: a node's apply is slow, and while it runs a heartbeat
// asks for the node's network again and another network is created. Whatever order
// the waiting pushes run in, the node ends with the engine's latest state: a push
// asked for before a change never hands the node what was true before it. (On the
// old design, which computed a heartbeat's push before it waited, this failed about
// one run in ten: which waiting push runs first is up to the scheduler.)
func TestNetworkPushesNeverGoBack(t *testing.T) {
	gate := make(chan struct{})
	var mu sync.Mutex
	var applied []NodeNetwork
	te := openTest(t, "", nil, func(c *Config) {
		c.ApplyNetwork = func(ctx context.Context, n Node, nn NodeNetwork) error {
			if n.ID == LocalNodeID {
				<-gate
			}
			mu.Lock()
			applied = append(applied, nn)
			mu.Unlock()
			return nil
		}
		c.ReservedPrefixes = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}
	})
	admin := te.admin(t)
	ctx := context.Background()
	if _, err := te.RegisterLocalNode(ctx, joinReq(t, "52:54:00:00:00:01", "10.0.0.1")); err != nil {
		t.Fatal(err)
	}
	close(gate)
	if _, err := te.Heartbeat(ctx, LocalNodeID, Heartbeat{Address: "10.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	te.wg.Wait()
	gate = make(chan struct{})

	var wg sync.WaitGroup
	create := func(name string) {
		wg.Go(func() {
			if _, err := te.CreateNetwork(ctx, admin, NetworkRequest{Name: name}); err != nil {
				t.Error(err)
			}
		})
	}
	exists := func(name string) bool {
		nets, _ := te.Networks(ctx, admin)
		return slices.ContainsFunc(nets, func(n Network) bool { return n.Name == name })
	}
	waitFor := func(name string) {
		for !exists(name) {
			time.Sleep(time.Millisecond)
		}
	}
	create("first") // its apply waits at the gate, holding the node's lock
	waitFor("first")
	// The heartbeat reports another version: a push is asked for, with "first" only.
	if _, err := te.Heartbeat(ctx, LocalNodeID, Heartbeat{Address: "10.0.0.1", NetworkVersion: "rebooted"}); err != nil {
		t.Fatal(err)
	}
	create("second")
	waitFor("second")
	close(gate)
	wg.Wait()
	te.wg.Wait()

	want, err := te.NodeNetworkOf(ctx, admin, LocalNodeID)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	last := applied[len(applied)-1]
	if last.Version != want.Version || len(last.Networks) != 2 {
		var seq []int
		for _, nn := range applied {
			seq = append(seq, len(nn.Networks))
		}
		t.Fatalf("the admin was last handed %d networks (version %s), want both (version %s); networks per apply in order: %v",
			len(last.Networks), last.Version, want.Version, seq)
	}
}

// TestDownNodeStaysPeer: a compute node that missed its heartbeats may still run its
// servers; the admin keeps it as a VXLAN peer, and the engine does not wait on it
// (no push) until it is heard again, then hands it its network at once.
func TestDownNodeStaysPeer(t *testing.T) {
	te, rec, admin := netEngine(t)
	ctx := context.Background()
	compute := adminAndCompute(t, te)
	nw, err := te.CreateNetwork(ctx, admin, NetworkRequest{Name: "app"})
	if err != nil {
		t.Fatal(err)
	}
	s := Server{ID: "s-1", Name: "web", Owner: admin.ID, Node: compute, State: ServerShutoff, NICs: []ServerNIC{}}
	if err := te.store.Put(bucketServers, s.ID, s); err != nil {
		t.Fatal(err)
	}
	if _, err := te.CreateConnection(ctx, admin, ConnectionRequest{Kind: ConnInternal, Network: nw.ID, Server: s.ID}); err != nil {
		t.Fatal(err)
	}
	peers := func() []string {
		gw, _ := rec.get(LocalNodeID)
		var out []string
		for _, p := range gw.Peers {
			out = append(out, p.String())
		}
		return out
	}
	if got := peers(); !slices.Equal(got, []string{"10.0.0.2"}) {
		t.Fatalf("admin peers %v, want the compute node 10.0.0.2", got)
	}
	err = te.store.Update(func(tx *store.Tx) error {
		var n Node
		if err := tx.Get(bucketNodes, compute, &n); err != nil {
			return err
		}
		n.State = NodeDown
		return tx.Put(bucketNodes, compute, n)
	})
	if err != nil {
		t.Fatal(err)
	}
	cn, _ := rec.get(compute)
	before := cn.Version
	// Another network changes the admin's state: the admin is handed it, the down
	// node is not tried, and it stays the admin's peer.
	if _, err := te.CreateNetwork(ctx, admin, NetworkRequest{Name: "other"}); err != nil {
		t.Fatal(err)
	}
	if got := peers(); !slices.Equal(got, []string{"10.0.0.2"}) {
		t.Errorf("with the compute node down the admin has peers %v, want it kept (10.0.0.2)", got)
	}
	if cn, _ := rec.get(compute); cn.Version != before {
		t.Errorf("the down node was handed a network (version %s → %s)", before, cn.Version)
	}
	// It is heard again and reports an old version: it gets its network.
	if _, err := te.Heartbeat(ctx, compute, Heartbeat{Address: "10.0.0.2", NetworkVersion: "old"}); err != nil {
		t.Fatal(err)
	}
	te.wg.Wait()
	want, err := te.NodeNetworkOf(ctx, admin, compute)
	if err != nil {
		t.Fatal(err)
	}
	if cn, _ := rec.get(compute); cn.Version != want.Version || len(cn.Networks) != 1 {
		t.Errorf("after its heartbeat the node has %+v, want %+v", cn, want)
	}
}
