package vnet

import (
	"context"
	"log/slog"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/cairn-os/cairn/internal/nstest"
	"github.com/cairn-os/cairn/internal/testutil"
)

// world is a small Cairn site made of network namespaces: admin A and node B joined by a
// veth "LAN", an outside host O on A's uplink, and servers attached to the nodes'
// bridges by veth pairs the way a guest's tap is.
type world struct {
	t       *testing.T
	A, B, O string
	servers map[string]string // server name -> namespace
	stateA  State
	stateB  State
}

// nsPrefix starts the names of the test's namespaces.
const nsPrefix = "cvn-"

var (
	net1 = Network{ID: 1, Prefix: netip.MustParsePrefix("10.1.1.0/24")}
	net2 = Network{ID: 2, Prefix: netip.MustParsePrefix("10.1.2.0/24")}
)

func apply(t *testing.T, ns string, s State) {
	t.Helper()
	h := nstest.Handle(t, ns)
	defer h.Close()
	if err := (&Node{NS: h, Logger: slog.New(slog.DiscardHandler)}).Apply(context.Background(), s); err != nil {
		t.Fatalf("apply in %s: %v", ns, err)
	}
}

// nft runs nft(8) inside ns and fails the test when it fails.
func nft(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "nft"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("nft %v in %s: %v: %s", args, ns, err, out)
	}
	return string(out)
}

// newSite makes admin A and node B joined by the LAN 192.168.77.0/24, and the outside
// host O, which the caller joins to A's uplink up0. The states name the LAN and the
// uplink; the caller adds the networks.
func newSite(t *testing.T) *world {
	testutil.RequireRoot(t)
	t.Parallel()
	testutil.RequireProgram(t, "busybox")
	w := &world{t: t, A: nstest.New(t, nsPrefix), B: nstest.New(t, nsPrefix), O: nstest.New(t, nsPrefix), servers: map[string]string{}}
	nstest.Veth(t, w.A, "lan0", "192.168.77.1/24", w.B, "lan0", "192.168.77.2/24")
	w.stateA = State{Underlay: "lan0", Peers: []netip.Addr{netip.MustParseAddr("192.168.77.2")}, Uplink: "up0"}
	w.stateB = State{Underlay: "lan0", Peers: []netip.Addr{netip.MustParseAddr("192.168.77.1")}}
	return w
}

func newWorld(t *testing.T, mappings []Mapping) *world {
	w := newSite(t)
	nstest.Veth(t, w.A, "up0", "203.0.113.1/24", w.O, "eth0", "203.0.113.2/24")
	nstest.IP(t, "-n", w.O, "addr", "add", "203.0.113.3/24", "dev", "eth0")
	gw1, gw2 := net1, net2
	gw1.Gateway, gw2.Gateway = true, true
	w.stateA.Networks, w.stateA.Mappings = []Network{gw1, gw2}, mappings
	w.stateB.Networks = []Network{net1, net2}
	apply(t, w.A, w.stateA)
	apply(t, w.B, w.stateB)
	w.server("s1", w.A, net1, "10.1.1.11")
	w.server("s2", w.B, net1, "10.1.1.12")
	w.server("s3", w.A, net2, "10.1.2.11")
	w.server("s4", w.B, net2, "10.1.2.12")
	return w
}

// server makes a namespace with eth0 at addr, its peer enslaved to the node's bridge.
func (w *world) server(name, node string, n Network, addr string) {
	w.serverVia(name, node, n.ID, addr+"/24", n.Prefix.Addr().Next().String())
}

// serverVia makes a server on network id with address cidr and default route via gw.
func (w *world) serverVia(name, node string, id int, cidr, gw string) {
	ns := nstest.New(w.t, nsPrefix)
	tap := "t" + name
	nstest.Veth(w.t, node, tap, "", ns, "eth0", cidr)
	nstest.IP(w.t, "-n", node, "link", "set", tap, "master", BridgeName(id))
	nstest.IP(w.t, "-n", ns, "route", "add", "default", "via", gw)
	w.servers[name] = ns
}

func TestNetworksAcrossNodes(t *testing.T) {
	w := newWorld(t, nil)
	for _, tc := range []struct {
		from, to string
		want     bool
	}{
		{"s1", "10.1.1.12", true},  // net 1, node A -> node B over VXLAN
		{"s2", "10.1.1.11", true},  // and back
		{"s4", "10.1.2.11", true},  // net 2, node B -> node A
		{"s1", "10.1.1.1", true},   // gateway on the admin
		{"s2", "10.1.1.1", true},   // gateway across the LAN
		{"s3", "10.1.1.12", false}, // net 2 -> net 1 through the admin's gateways
		{"s4", "10.1.1.11", false},
		{"s1", "10.1.2.11", false},
		{"s2", "10.1.2.12", false},
	} {
		if got := nstest.Ping(w.servers[tc.from], tc.to); got != tc.want {
			t.Errorf("ping %s -> %s = %v, want %v", tc.from, tc.to, got, tc.want)
		}
	}

	// A repeated Apply keeps the links (same index) and the reachability.
	before := nstest.IP(t, "-n", w.B, "-o", "link", "show", "cvx1")
	apply(t, w.A, w.stateA)
	apply(t, w.B, w.stateB)
	if after := nstest.IP(t, "-n", w.B, "-o", "link", "show", "cvx1"); strings.Fields(after)[0] != strings.Fields(before)[0] {
		t.Errorf("second Apply re-created cvx1: %q then %q", before, after)
	}
	if !nstest.Ping(w.servers["s1"], "10.1.1.12") {
		t.Errorf("s1 no longer reaches s2 after a repeated Apply")
	}
}

func TestMasquerade(t *testing.T) {
	w := newWorld(t, nil)
	nstest.Serve(t, w.O, "203.0.113.2:8080", "")
	for _, s := range []string{"s1", "s2", "s4"} {
		got, err := nstest.Get(w.servers[s], "", "http://203.0.113.2:8080/")
		if err != nil {
			t.Errorf("%s -> outside: %v", s, err)
		} else if got != "203.0.113.1" {
			t.Errorf("outside saw %s from %s, want the admin's uplink address 203.0.113.1", got, s)
		}
	}
	if !nstest.Ping(w.servers["s2"], "203.0.113.2") {
		t.Errorf("s2 cannot ping the outside")
	}
	// The outside cannot route into the networks even with a route via the admin.
	nstest.IP(t, "-n", w.O, "route", "add", "10.0.0.0/8", "via", "203.0.113.1")
	nstest.Serve(t, w.servers["s1"], "10.1.1.11:8080", "")
	if got, err := nstest.Get(w.O, "", "http://10.1.1.11:8080/"); err == nil {
		t.Errorf("outside reached an unmapped server directly (it saw %s)", got)
	}
}

func TestMapping(t *testing.T) {
	ports, err := ParsePorts("8080,203.0.113.3/32:8081")
	if err != nil {
		t.Fatal(err)
	}
	ext := netip.MustParseAddr("203.0.113.10")
	// s2 is on node B: mapped traffic crosses the LAN as well.
	w := newWorld(t, []Mapping{{External: ext, Internal: netip.MustParseAddr("10.1.1.12"), Ports: ports}})
	s2 := w.servers["s2"]
	for _, p := range []string{"8080", "8081", "8082"} {
		nstest.Serve(t, s2, "10.1.1.12:"+p, "")
	}
	// A service of the admin itself must not answer on the external address either.
	nstest.Serve(t, w.A, ":8082", "admin ")
	for _, tc := range []struct {
		src, port string
		want      bool
	}{
		{"203.0.113.2", "8080", true},
		{"203.0.113.3", "8080", true},
		{"203.0.113.2", "8081", false}, // source not allowed
		{"203.0.113.3", "8081", true},
		{"203.0.113.2", "8082", false}, // port not listed
		{"203.0.113.3", "8082", false},
	} {
		got, err := nstest.Get(w.O, tc.src, "http://203.0.113.10:"+tc.port+"/")
		if (err == nil) != tc.want {
			t.Errorf("%s -> 203.0.113.10:%s: got %q, %v; want reachable=%v", tc.src, tc.port, got, err, tc.want)
		} else if tc.want && got != tc.src {
			t.Errorf("%s -> 203.0.113.10:%s: server saw %s, want the real source", tc.src, tc.port, got)
		}
	}
	// Outbound from the mapped server leaves from the external address; others masquerade.
	nstest.Serve(t, w.O, "203.0.113.2:9090", "")
	if got, err := nstest.Get(s2, "", "http://203.0.113.2:9090/"); err != nil || got != ext.String() {
		t.Errorf("outside saw mapped server as %q, %v; want %s", got, err, ext)
	}
	if got, err := nstest.Get(w.servers["s1"], "", "http://203.0.113.2:9090/"); err != nil || got != "203.0.113.1" {
		t.Errorf("outside saw unmapped server as %q, %v; want 203.0.113.1", got, err)
	}

	// Dropping the port list maps every port.
	w.stateA.Mappings[0].Ports = nil
	apply(t, w.A, w.stateA)
	if got, err := nstest.Get(w.O, "203.0.113.2", "http://203.0.113.10:8082/"); err != nil || got != "203.0.113.2" {
		t.Errorf("all-ports mapping: 8082 gave %q, %v; want the server's answer 203.0.113.2", got, err)
	}
	// Removing the mapping removes the external address.
	w.stateA.Mappings = nil
	apply(t, w.A, w.stateA)
	if out := nstest.IP(t, "-n", w.A, "addr", "show", "dev", "up0"); strings.Contains(out, "203.0.113.10") {
		t.Errorf("external address still on the uplink after the mapping went:\n%s", out)
	}
}

func TestApplyEmptyRemovesEverything(t *testing.T) {
	testutil.RequireProgram(t, "nft")
	ext := netip.MustParseAddr("203.0.113.10")
	w := newWorld(t, []Mapping{{External: ext, Internal: netip.MustParseAddr("10.1.1.11")}})
	// Things that are not Cairn's must survive.
	nstest.IP(t, "-n", w.A, "link", "add", "keep0", "type", "veth", "peer", "name", "keep1")
	nstest.IP(t, "-n", w.A, "link", "add", "cbrx", "type", "bridge")
	nstest.IP(t, "-n", w.A, "addr", "add", "203.0.113.20/32", "dev", "up0")
	nft(t, w.A, "add", "table", "inet", "other")
	if out := nft(t, w.A, "list", "tables"); !strings.Contains(out, "inet cairn") {
		t.Fatalf("table inet cairn missing after Apply:\n%s", out)
	}

	snapshot := func(ns string) string {
		return nstest.IP(t, "-n", ns, "-o", "link", "show") + nstest.IP(t, "-n", ns, "-o", "addr", "show") + nft(t, ns, "list", "ruleset")
	}
	for _, ns := range []string{w.A, w.B} {
		apply(t, ns, State{})
		links := nstest.IP(t, "-n", ns, "-o", "-d", "link", "show")
		for _, l := range strings.Split(strings.TrimSpace(links), "\n") {
			f := strings.Fields(l)
			name := strings.TrimSuffix(strings.SplitN(f[1], "@", 2)[0], ":")
			if strings.HasPrefix(name, "cbr") && name != "cbrx" || strings.HasPrefix(name, "cvx") || strings.Contains(l, "alias cairn") {
				t.Errorf("link left in %s after empty Apply: %s", ns, l)
			}
		}
		if out := nft(t, ns, "list", "tables"); strings.Contains(out, "cairn") {
			t.Errorf("nftables table left in %s after empty Apply:\n%s", ns, out)
		}
		before := snapshot(ns)
		apply(t, ns, State{})
		if after := snapshot(ns); after != before {
			t.Errorf("second empty Apply changed %s:\n%s\n---\n%s", ns, before, after)
		}
	}
	addrs := nstest.IP(t, "-n", w.A, "addr", "show", "dev", "up0")
	if strings.Contains(addrs, ext.String()) {
		t.Errorf("external address left on the uplink:\n%s", addrs)
	}
	if !strings.Contains(addrs, "203.0.113.20") {
		t.Errorf("empty Apply removed an address that is not Cairn's:\n%s", addrs)
	}
	nstest.IP(t, "-n", w.A, "link", "show", "keep0")
	nstest.IP(t, "-n", w.A, "link", "show", "cbrx")
	nstest.IP(t, "-n", w.A, "link", "show", "ts1") // a guest's tap survives its bridge
	if out := nft(t, w.A, "list", "tables"); !strings.Contains(out, "inet other") {
		t.Errorf("empty Apply removed a table that is not Cairn's:\n%s", out)
	}
}

const (
	extOutside = "198.51.100.1"
	extUplink  = "198.51.100.2"
	extX1      = "198.51.100.100" // external server on compute node B
	extX2      = "198.51.100.101" // external server on the admin A
)

var netExt = Network{ID: 3, External: true}

// newExternalWorld is a site whose uplink network 198.51.100.0/24 also holds the
// external addresses of servers: x1 on node B and x2 on the admin A share external
// segment 3; s2 on node B is on internal network 1. The outside host O is
// 198.51.100.1, the admin's uplink 198.51.100.2.
func newExternalWorld(t *testing.T) *world {
	w := newSite(t)
	nstest.Veth(t, w.A, "up0", extUplink+"/24", w.O, "eth0", extOutside+"/24")
	gw1, ext := net1, netExt
	gw1.Gateway, ext.Gateway = true, true
	ext.Routed = []netip.Addr{netip.MustParseAddr(extX1), netip.MustParseAddr(extX2)}
	w.stateA.Networks = []Network{gw1, ext}
	w.stateB.Networks = []Network{net1, netExt}
	apply(t, w.A, w.stateA)
	apply(t, w.B, w.stateB)
	w.serverVia("x1", w.B, netExt.ID, extX1+"/24", extUplink)
	w.serverVia("x2", w.A, netExt.ID, extX2+"/24", extUplink)
	w.server("s2", w.B, net1, "10.1.1.12")
	return w
}

// proxyAndRoutes lists the proxy entries and Cairn's routes of ns, for comparisons.
func proxyAndRoutes(t *testing.T, ns string) string {
	return nstest.IP(t, "-n", ns, "neigh", "show", "proxy") + nstest.IP(t, "-n", ns, "route", "show", "proto", "202")
}

func TestExternalAddresses(t *testing.T) {
	w := newExternalWorld(t)
	x1 := w.servers["x1"]
	// Another proxy entry on the uplink is Cairn's to remove; one on the LAN is not.
	nstest.IP(t, "-n", w.A, "neigh", "add", "proxy", "198.51.100.99", "dev", "up0")
	nstest.IP(t, "-n", w.A, "neigh", "add", "proxy", "192.168.77.99", "dev", "lan0")
	apply(t, w.A, w.stateA)
	if out := nstest.IP(t, "-n", w.A, "neigh", "show", "proxy"); strings.Contains(out, "198.51.100.99") || !strings.Contains(out, "192.168.77.99") {
		t.Errorf("proxy entries after Apply: want 198.51.100.99 on the uplink gone and 192.168.77.99 on the LAN kept:\n%s", out)
	}
	if out := nstest.IP(t, "-n", w.A, "-4", "addr", "show", "dev", "cbr3"); !strings.Contains(out, extUplink+"/32") {
		t.Errorf("admin's external bridge lacks the uplink address as /32:\n%s", out)
	}
	if out := nstest.IP(t, "-n", w.B, "-4", "addr", "show", "dev", "cbr3"); strings.Contains(out, "inet ") {
		t.Errorf("compute node's external bridge has an address:\n%s", out)
	}

	// The outside reaches both servers at their own addresses, and they see its own.
	for _, a := range []string{extX1, extX2} {
		if !nstest.Ping(w.O, a) {
			t.Errorf("outside cannot ping external server %s", a)
		}
	}
	nstest.Serve(t, x1, extX1+":8080", "")
	if got, err := nstest.Get(w.O, "", "http://"+extX1+":8080/"); err != nil || got != extOutside {
		t.Errorf("outside -> %s: got %q, %v; want the answer %s", extX1, got, err, extOutside)
	}
	// Outbound keeps the servers' addresses (no masquerade). The outside host is on the
	// servers' own network, so they reach it by proxy ARP through the admin.
	nstest.Serve(t, w.O, extOutside+":9090", "")
	for name, want := range map[string]string{"x1": extX1, "x2": extX2} {
		if got, err := nstest.Get(w.servers[name], "", "http://"+extOutside+":9090/"); err != nil || got != want {
			t.Errorf("%s -> outside: outside saw %q, %v; want %s", name, got, err, want)
		}
	}
	brMAC := strings.Fields(nstest.IP(t, "-n", w.A, "-br", "link", "show", "dev", "cbr3"))[2]
	if out := nstest.IP(t, "-n", x1, "neigh", "show", extOutside); !strings.Contains(out, brMAC) {
		t.Errorf("x1's neighbour %s is not the admin's bridge %s (proxy ARP): %s", extOutside, brMAC, out)
	}
	if !nstest.Ping(x1, extUplink) {
		t.Errorf("x1 cannot ping its router, the admin's uplink address")
	}

	// Isolation from the internal networks stays, both ways.
	if !nstest.Ping(w.servers["s2"], "10.1.1.1") {
		t.Fatalf("s2 cannot ping its gateway: the isolation checks below would mean nothing")
	}
	if nstest.Ping(x1, "10.1.1.12") {
		t.Errorf("external server x1 reaches internal server s2")
	}
	if nstest.Ping(w.servers["s2"], extX1) {
		t.Errorf("internal server s2 reaches external server x1")
	}

	// A repeated Apply changes nothing; dropping x2's address removes its route and
	// proxy entry, and the outside no longer reaches it.
	before := proxyAndRoutes(t, w.A)
	apply(t, w.A, w.stateA)
	if after := proxyAndRoutes(t, w.A); after != before {
		t.Errorf("repeated Apply changed routes or proxy entries:\n%s---\n%s", before, after)
	}
	w.stateA.Networks[1].Routed = w.stateA.Networks[1].Routed[:1]
	apply(t, w.A, w.stateA)
	if out := proxyAndRoutes(t, w.A); strings.Contains(out, extX2) || !strings.Contains(out, extX1) {
		t.Errorf("after dropping %s, routes and proxy entries are:\n%s", extX2, out)
	}
	if nstest.Ping(w.O, extX2) {
		t.Errorf("outside still reaches %s after its address was dropped", extX2)
	}

	// An empty State (not even the uplink named) removes every tagged entry.
	for _, ns := range []string{w.A, w.B} {
		apply(t, ns, State{})
		if out := nstest.IP(t, "-n", ns, "route", "show", "proto", "202"); strings.TrimSpace(out) != "" {
			t.Errorf("routes left in %s after empty Apply:\n%s", ns, out)
		}
		if out := nstest.IP(t, "-n", ns, "-o", "link", "show"); strings.Contains(out, "cbr") || strings.Contains(out, "cvx") {
			t.Errorf("links left in %s after empty Apply:\n%s", ns, out)
		}
		if out := nft(t, ns, "list", "tables"); strings.Contains(out, "inet "+TableName) {
			t.Errorf("table %s left in %s after empty Apply:\n%s", TableName, ns, out)
		}
	}
	if out := nstest.IP(t, "-n", w.A, "neigh", "show", "proxy"); strings.Contains(out, "198.51.100.") || !strings.Contains(out, "192.168.77.99") {
		t.Errorf("proxy entries after empty Apply: want none of Cairn's and 192.168.77.99 kept:\n%s", out)
	}
}

func TestUplinkAddress(t *testing.T) {
	testutil.RequireRoot(t)
	t.Parallel()
	a, b := nstest.New(t, nsPrefix), nstest.New(t, nsPrefix)
	nstest.Veth(t, a, "up0", extUplink+"/24", b, "eth0", "")
	h := nstest.Handle(t, a)
	defer h.Close()
	if got, err := UplinkAddress(h, "up0"); err != nil || got != netip.MustParsePrefix(extUplink+"/24") {
		t.Errorf("UplinkAddress(up0) = %v, %v; want %s/24", got, err, extUplink)
	}
	nstest.IP(t, "-n", a, "addr", "flush", "dev", "up0")
	if _, err := UplinkAddress(h, "up0"); err == nil || !strings.Contains(err.Error(), "no IPv4 address") {
		t.Errorf("UplinkAddress without an address: err = %v, want one saying it has no IPv4 address", err)
	}
	if _, err := UplinkAddress(h, "nosuch0"); err == nil {
		t.Errorf("UplinkAddress of a missing link: no error")
	}
}

// TestManyMappings applies 1,000 mappings in one go and changes one of them: the table
// goes to the kernel as one netlink batch, which must not outgrow the socket.
func TestManyMappings(t *testing.T) {
	testutil.RequireRoot(t)
	t.Parallel()
	ns, outside := nstest.New(t, nsPrefix), nstest.New(t, nsPrefix)
	nstest.Veth(t, ns, "up0", "198.18.0.1/15", outside, "eth0", "198.18.0.2/15")
	s := State{Uplink: "up0"}
	for i := range 4 {
		s.Networks = append(s.Networks, Network{ID: 10 + i, Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 77, byte(i), 0}), 24), Gateway: true})
	}
	for i := range 1000 {
		s.Mappings = append(s.Mappings, Mapping{
			External: netip.AddrFrom4([4]byte{198, 18, byte(1 + i/250), byte(1 + i%250)}),
			Internal: netip.AddrFrom4([4]byte{10, 77, byte(i / 250), byte(2 + i%250)}),
			Ports:    []PortRule{{Proto: "tcp", Port: 80}, {Proto: "tcp", Port: 443, From: netip.MustParsePrefix("192.0.2.0/24")}},
		})
	}
	apply(t, ns, s)
	s.Mappings[500].Ports = []PortRule{{Proto: "udp", Port: 53}}
	apply(t, ns, s)
	out := nft(t, ns, "list", "table", "inet", TableName)
	if n := strings.Count(out, "dnat ip to "); n != 1999 {
		t.Errorf("the table has %d DNAT rules, want 1999 (2 per mapping, one changed to 1)", n)
	}
	if !strings.Contains(out, "udp dport 53") {
		t.Error("the changed mapping's udp port 53 is not in the table")
	}
	apply(t, ns, State{})
}
