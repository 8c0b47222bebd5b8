package hosttests

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-os/cairn/internal/nstest"
	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/supervisor/netnode"
	"github.com/cairn-os/cairn/supervisor/virt"
	"github.com/cairn-os/cairn/supervisor/vnet"
)

// netLab is a small data centre made of network namespaces: an outside host on the
// uplink, the admin, and two compute nodes on a LAN switch. The engine (in this
// process, through its HTTPS API) hands each node its part through netnode, exactly
// as the supervisor does; servers are namespaces attached to a node's bridge the way
// a guest's tap is, and take their addresses from the admin's DHCP.
type netLab struct {
	*lab
	// t is the test's, set before the lab's engine starts pushing networks.
	t              *testing.T
	outside, admin string
	nodes          map[string]string // engine node ID → namespace
	ids            []string          // the compute nodes' IDs

	mu       sync.Mutex
	appliers map[string]*netnode.Applier
}

const (
	outsideAddr = "198.51.100.1"
	// strangerAddr is a second outside address that mapping source filters leave out.
	strangerAddr = "198.51.100.200"
	uplinkAddr   = "198.51.100.2"
)

func newNetLab(t *testing.T) *netLab {
	nl := &netLab{t: t, nodes: map[string]string{}, appliers: map[string]*netnode.Applier{}}
	nl.outside = nstest.New(t, "cno-")
	nl.admin = nstest.New(t, "cna-")
	sw := nstest.New(t, "cns-")
	nstest.Veth(t, nl.admin, "up0", uplinkAddr+"/24", nl.outside, "eth0", outsideAddr+"/24")
	nstest.IP(t, "-n", nl.outside, "addr", "add", strangerAddr+"/24", "dev", "eth0")
	nstest.IP(t, "-n", sw, "link", "add", "lan", "type", "bridge")
	nstest.IP(t, "-n", sw, "link", "set", "lan", "up")
	nodeNS := []string{nl.admin, nstest.New(t, "cn1-"), nstest.New(t, "cn2-")}
	for i, ns := range nodeNS {
		port := fmt.Sprintf("p%d", i)
		nstest.Veth(t, sw, port, "", ns, "lan0", fmt.Sprintf("10.99.0.%d/24", i+1))
		nstest.IP(t, "-n", sw, "link", "set", port, "master", "lan")
	}
	nl.nodes[engine.LocalNodeID] = nl.admin
	nl.lab = newLab(t, "", func(c *engine.Config) {
		c.ApplyNetwork = nl.apply
		c.ReservedPrefixes = []netip.Prefix{netip.MustParsePrefix("10.99.0.0/24")}
		// The namespace nodes have no libvirtd; only the host (the admin's own
		// compute role) has.
		host := c.Hypervisor
		c.Hypervisor = func(ctx context.Context, n engine.Node) (*virt.Conn, error) {
			if n.ID != engine.LocalNodeID {
				return nil, fmt.Errorf("node %s is a namespace without libvirtd", n.ID)
			}
			return host(ctx, n)
		}
	})
	t.Cleanup(nl.closeAppliers)
	ctx := context.Background()
	for i, ns := range nodeNS[1:] {
		resp, err := nl.e.Join(ctx, nl.e.JoinToken(), engine.JoinRequest{Name: ns, MAC: fmt.Sprintf("52:54:00:99:00:%02x", i+2),
			Address: fmt.Sprintf("10.99.0.%d", i+2), CPUs: 4, MemoryBytes: 8 << 30, CSR: csrPEM(t), Version: "test"})
		if err != nil {
			t.Fatal(err)
		}
		nl.nodes[resp.Node.ID] = ns
		nl.ids = append(nl.ids, resp.Node.ID)
	}
	nl.beatAll()
	return nl
}

// applier is the node's netnode.Applier, made on first use like a node's supervisor.
func (nl *netLab) applier(id string) *netnode.Applier {
	nl.mu.Lock()
	defer nl.mu.Unlock()
	a := nl.appliers[id]
	if a == nil {
		ns := nl.nodes[id]
		cfg := netnode.Config{NS: nstest.Handle(nl.t, ns), Underlay: "lan0", Logger: slog.New(slog.NewTextHandler(testLog{nl.t}, nil))}
		if id == engine.LocalNodeID {
			cfg.Uplink = "up0"
		}
		a = netnode.New(cfg)
		nl.appliers[id] = a
	}
	return a
}

func (nl *netLab) apply(ctx context.Context, n engine.Node, nn engine.NodeNetwork) error {
	if _, ok := nl.nodes[n.ID]; !ok {
		return fmt.Errorf("node %s is not in the lab", n.ID)
	}
	return nl.applier(n.ID).Apply(ctx, nn)
}

// reboot forgets what a node applied, as a reboot does: its applier (and DHCP
// servers) go and every link and rule Cairn made there is removed behind the engine's
// back.
func (nl *netLab) reboot(id string) {
	nl.mu.Lock()
	if a := nl.appliers[id]; a != nil {
		a.Close()
		delete(nl.appliers, id)
	}
	nl.mu.Unlock()
	h := nstest.Handle(nl.t, nl.nodes[id])
	defer h.Close()
	uplink := ""
	if id == engine.LocalNodeID {
		uplink = "up0"
	}
	if err := (&vnet.Node{NS: h, Logger: slog.New(slog.DiscardHandler)}).Apply(context.Background(), vnet.State{Uplink: uplink}); err != nil {
		nl.t.Fatalf("wipe node %s: %v", id, err)
	}
}

func (nl *netLab) closeAppliers() {
	nl.mu.Lock()
	defer nl.mu.Unlock()
	for _, a := range nl.appliers {
		a.Close()
	}
}

// beatAll sends each node's heartbeat with the network version it has.
func (nl *netLab) beatAll() {
	ctx := context.Background()
	for id := range nl.nodes {
		addr := "10.99.0.1"
		for i, c := range nl.ids {
			if c == id {
				addr = fmt.Sprintf("10.99.0.%d", i+2)
			}
		}
		version := ""
		nl.mu.Lock()
		if a := nl.appliers[id]; a != nil {
			version = a.Version()
		}
		nl.mu.Unlock()
		if _, err := nl.e.Heartbeat(ctx, id, engine.Heartbeat{Address: addr, CPUs: 4, MemoryBytes: 8 << 30, MemoryFreeBytes: 6 << 30, NetworkVersion: version}); err != nil {
			nl.t.Fatal(err)
		}
	}
}

// server creates a server locked to node with the given connections and attaches a
// namespace to the node's bridge for each connection, as a guest's tap would be; the
// namespace's interface takes its address by DHCP. It returns the namespace.
func (nl *netLab) server(user, password, name, node string, conns ...engine.Connection) string {
	t := nl.t
	var s engine.Server
	ids := make([]string, len(conns))
	for i, c := range conns {
		ids[i] = c.ID
	}
	if code, msg := nl.doAs(user, password, "POST", "/servers", engine.ServerRequest{Name: name, VCPUs: 1, MemoryMiB: 64,
		LockNode: node, Connections: ids}, &s); code != 201 {
		t.Fatalf("create server %s: %d %s", name, code, msg)
	}
	ns := nstest.New(t, "csv-")
	for i, c := range conns {
		tap := fmt.Sprintf("t%s%d", strings.TrimPrefix(s.ID, "s-")[:6], i)
		iface := fmt.Sprintf("eth%d", i)
		nstest.Veth(t, nl.nodes[node], tap, "", ns, iface, "")
		nstest.IP(t, "-n", ns, "link", "set", iface, "address", c.MAC)
		nstest.IP(t, "-n", nl.nodes[node], "link", "set", tap, "master", vnet.BridgeName(c.Network))
		tapBridge[nl.nodes[node]+"/"+tap] = vnet.BridgeName(c.Network)
		lease, err := nstest.DHCP(t, ns, iface)
		if err != nil {
			t.Fatalf("server %s (%s): %v", name, c.Kind, err)
		}
		if !strings.Contains(lease, "ip="+c.Address+" ") || !strings.Contains(lease, "mtu=1450") {
			t.Fatalf("server %s got lease %q; want its connection's address %s and MTU 1450", name, lease, c.Address)
		}
		t.Logf("server %s on %s: %s", name, node, lease)
	}
	return ns
}

func (nl *netLab) connection(user, password string, req engine.ConnectionRequest) engine.Connection {
	var c engine.Connection
	if code, msg := nl.doAs(user, password, "POST", "/connections", req, &c); code != 201 {
		nl.t.Fatalf("create %s connection: %d %s", req.Kind, code, msg)
	}
	return c
}

// TestConnectionsReachability drives networks and connections through the API and
// checks, with real traffic, who reaches whom.
func TestConnectionsReachability(t *testing.T) {
	nl := newNetLab(t)
	cn1, cn2 := nl.ids[0], nl.ids[1]
	for _, u := range []string{"alice", "bob"} {
		nl.must(201, "POST", "/users", map[string]string{"name": u, "password": userPassword, "role": "user"}, nil)
	}
	var st engine.Settings
	nl.must(200, "GET", "/engine/settings", nil, &st)
	st.ExternalRange, st.ExternalQuota, st.DNS = "198.51.100.100-198.51.100.110", 3, []string{"198.51.100.53"}
	nl.must(200, "PUT", "/engine/settings", st, nil)

	var netA, netB engine.Network
	if code, msg := nl.doAs("alice", userPassword, "POST", "/networks", engine.NetworkRequest{Name: "alice-app"}, &netA); code != 201 {
		t.Fatalf("create network: %d %s", code, msg)
	}
	if code, msg := nl.doAs("bob", userPassword, "POST", "/networks", engine.NetworkRequest{Name: "bob-app"}, &netB); code != 201 {
		t.Fatalf("create network: %d %s", code, msg)
	}
	a1 := nl.connection("alice", userPassword, engine.ConnectionRequest{Kind: engine.ConnInternal, Network: netA.ID})
	a2 := nl.connection("alice", userPassword, engine.ConnectionRequest{Kind: engine.ConnInternal, Network: netA.ID})
	web := nl.connection("alice", userPassword, engine.ConnectionRequest{Kind: engine.ConnMapping, Network: netA.ID,
		Ports: "80," + outsideAddr + "/32:8080"})
	b1 := nl.connection("bob", userPassword, engine.ConnectionRequest{Kind: engine.ConnInternal, Network: netB.ID})
	bx := nl.connection("bob", userPassword, engine.ConnectionRequest{Kind: engine.ConnExternal})

	s1 := nl.server("alice", userPassword, "a1", cn1, a1)
	s2 := nl.server("alice", userPassword, "a2", cn2, a2)
	s3 := nl.server("alice", userPassword, "web", cn1, web)
	s4 := nl.server("bob", userPassword, "b1", cn2, b1)
	s5 := nl.server("bob", userPassword, "bx", cn1, bx)
	nl.settle()
	for _, ns := range []string{s1, s2, s3, s4, s5} {
		nstest.Serve(t, ns, ":80", "")
	}
	nstest.Serve(t, s3, ":8080", "")
	nstest.Serve(t, s3, ":22", "")
	nstest.Serve(t, nl.outside, ":80", "")

	// The server's record shows its addresses.
	var srv engine.Server
	if code, msg := nl.doAs("alice", userPassword, "GET", "/servers/web", nil, &srv); code != 200 {
		t.Fatalf("GET /servers/web as alice: %d %s", code, msg)
	}
	if len(srv.NICs) != 1 || srv.NICs[0].Address != web.Address || srv.NICs[0].External != web.External {
		t.Errorf("server web NICs %+v; want address %s external %s", srv.NICs, web.Address, web.External)
	}

	check := func(t *testing.T, what string, ok bool, want bool) {
		t.Helper()
		if ok != want {
			t.Errorf("%s: reached = %v, want %v", what, ok, want)
		}
	}
	answer := func(ns, src, url string) string {
		body, err := nstest.Get(ns, src, url)
		if err != nil {
			return "refused: " + err.Error()
		}
		return body
	}
	matrix := func(t *testing.T) {
		t.Helper()
		check(t, "a1 → a2, same network across two nodes (ping)", nstest.Ping(s1, a2.Address), true)
		if got := answer(s2, "", "http://"+a1.Address+"/"); got != a2.Address {
			t.Errorf("a2 → a1 over HTTP: answer %q, want a1 to see %s", got, a2.Address)
		}
		check(t, "a1 → b1, another user's network (ping)", nstest.Ping(s1, b1.Address), false)
		check(t, "b1 → a2, another user's network (ping)", nstest.Ping(s4, a2.Address), false)
		if got := answer(s1, "", "http://"+outsideAddr+"/"); got != uplinkAddr {
			t.Errorf("a1 → outside: outside saw %q, want the admin's uplink %s (masquerade)", got, uplinkAddr)
		}
		check(t, "outside → bx, external IP (ping)", nstest.Ping(nl.outside, bx.Address), true)
		if got := answer(nl.outside, "", "http://"+bx.Address+"/"); got != outsideAddr {
			t.Errorf("outside → bx over HTTP: answer %q, want bx to see %s", got, outsideAddr)
		}
		if got := answer(s5, "", "http://"+outsideAddr+"/"); got != bx.Address {
			t.Errorf("bx → outside: outside saw %q, want bx's own address %s", got, bx.Address)
		}
		if got := answer(nl.outside, "", "http://"+web.External+"/"); got != outsideAddr {
			t.Errorf("outside → mapping port 80: %q, want an answer", got)
		}
		if got := answer(nl.outside, outsideAddr, "http://"+web.External+":8080/"); got != outsideAddr {
			t.Errorf("outside → mapping port 8080 from an allowed source: %q, want an answer", got)
		}
		if got := answer(nl.outside, strangerAddr, "http://"+web.External+":8080/"); !strings.HasPrefix(got, "refused") {
			t.Errorf("outside → mapping port 8080 from a source the filter leaves out: %q, want no answer", got)
		}
		if got := answer(nl.outside, "", "http://"+web.External+":22/"); !strings.HasPrefix(got, "refused") {
			t.Errorf("outside → mapping port 22 (not listed): %q, want no answer", got)
		}
		if got := answer(s3, "", "http://"+outsideAddr+"/"); got != web.External {
			t.Errorf("web → outside: outside saw %q, want the mapped address %s", got, web.External)
		}
	}
	matrix(t)

	// A compute node reboots: its bridges and VXLAN links are gone; it reports no
	// network version in its heartbeat and gets everything again from the engine. The
	// servers' taps are re-attached as libvirt does when it starts them there.
	t.Run("node reboot", func(t *testing.T) {
		nl.reboot(cn2)
		check(t, "a1 → a2 with node 2 wiped", nstest.Ping(s1, a2.Address), false)
		nl.beatAll()
		nl.settle()
		reattach(t, nl.nodes[cn2])
		matrix(t)
	})
	// The admin reboots: a new engine from the same state, a wiped admin namespace.
	t.Run("admin reboot", func(t *testing.T) {
		nl.close()
		nl.reboot(engine.LocalNodeID)
		check(t, "a1 → outside with the admin down", nstest.Ping(s1, outsideAddr), false)
		nl.open()
		nl.beatAll()
		nl.settle()
		matrix(t)
	})

	// Delete everything: no link, address, route or rule of Cairn's is left anywhere.
	for _, c := range []engine.Connection{a1, a2, web} {
		nl.mustAs("alice", "DELETE", "/connections/"+c.ID, 204)
	}
	for _, c := range []engine.Connection{b1, bx} {
		nl.mustAs("bob", "DELETE", "/connections/"+c.ID, 204)
	}
	nl.mustAs("alice", "DELETE", fmt.Sprintf("/networks/%d", netA.ID), 204)
	nl.mustAs("bob", "DELETE", fmt.Sprintf("/networks/%d", netB.ID), 204)
	for id, ns := range nl.nodes {
		if left := cairnLeftovers(t, ns); left != "" {
			t.Errorf("node %s still has: %s", id, left)
		}
	}
}

func (nl *netLab) mustAs(user, method, path string, want int) {
	nl.t.Helper()
	if code, msg := nl.doAs(user, userPassword, method, path, nil, nil); code != want {
		nl.t.Fatalf("%s %s as %s: %d %s, want %d", method, path, user, code, msg, want)
	}
}

// settle beats until every node has applied the version the engine wants for it.
func (nl *netLab) settle() {
	nl.t.Helper()
	ctx := context.Background()
	admin, err := nl.e.Authenticate(ctx, engine.AdminName, adminPassword)
	if err != nil {
		nl.t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		nl.beatAll()
		behind := ""
		for id := range nl.nodes {
			want, err := nl.e.NodeNetworkOf(ctx, admin, id)
			if err != nil {
				nl.t.Fatal(err)
			}
			nl.mu.Lock()
			a := nl.appliers[id]
			nl.mu.Unlock()
			if a == nil || a.Version() != want.Version {
				behind += " " + id
			}
		}
		if behind == "" {
			return
		}
		if time.Now().After(deadline) {
			nl.t.Fatalf("nodes%s never got the network the engine wants for them", behind)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// reattach puts the server taps (t*) back on their bridges after a node's bridges
// were made again; the bridge is named after the network in the tap's old master.
func reattach(t *testing.T, ns string) {
	out := nstest.IP(t, "-n", ns, "-o", "link", "show", "type", "veth")
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || !strings.HasPrefix(f[1], "t") {
			continue
		}
		tap := strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0]
		br := tapBridge[ns+"/"+tap]
		if br != "" {
			nstest.IP(t, "-n", ns, "link", "set", tap, "master", br)
		}
	}
}

// tapBridge remembers each tap's bridge (namespace/tap → bridge) for reattach.
var tapBridge = map[string]string{}

// cairnLeftovers lists what Cairn made that is still in namespace ns.
func cairnLeftovers(t *testing.T, ns string) string {
	var left []string
	for _, l := range strings.Split(nstest.IP(t, "-n", ns, "-o", "link", "show"), "\n") {
		if f := strings.Fields(l); len(f) > 1 && (strings.HasPrefix(f[1], "cbr") || strings.HasPrefix(f[1], "cvx")) {
			left = append(left, "link "+strings.TrimSuffix(f[1], ":"))
		}
	}
	if out := nstest.IP(t, "-n", ns, "-4", "addr", "show", "label", "*:cairn"); strings.TrimSpace(out) != "" {
		left = append(left, "labelled addresses")
	}
	if out := nstest.IP(t, "-n", ns, "neigh", "show", "proxy"); strings.TrimSpace(out) != "" {
		left = append(left, "proxy entries "+strings.TrimSpace(out))
	}
	if out, _ := exec.Command("ip", "netns", "exec", ns, "nft", "list", "tables").CombinedOutput(); strings.Contains(string(out), "cairn") {
		left = append(left, "nftables table inet cairn")
	}
	return strings.Join(left, ", ")
}

func csrPEM(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}
