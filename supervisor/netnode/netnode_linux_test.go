package netnode

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-os/cairn/internal/nstest"
	"github.com/cairn-os/cairn/internal/testutil"
	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/supervisor/vnet"
)

func newApplier(t *testing.T, ns, underlay, uplink string) *Applier {
	t.Helper()
	h := nstest.Handle(t, ns)
	a := New(Config{NS: h, Underlay: underlay, Uplink: uplink, Logger: slog.New(slog.DiscardHandler)})
	// Cleanups run last in, first out: the servers stop before the handle closes.
	t.Cleanup(func() { h.Close() })
	t.Cleanup(a.Close)
	return a
}

func apply(t *testing.T, a *Applier, nn engine.NodeNetwork) {
	t.Helper()
	if err := a.Apply(context.Background(), nn); err != nil {
		t.Fatalf("apply %s: %v", nn.Version, err)
	}
	if got := a.Version(); got != nn.Version {
		t.Fatalf("Version() = %q after applying %q", got, nn.Version)
	}
}

// guest makes a namespace whose eth0 (with mac) hangs off bridge br of node, the way
// a server's tap does.
func guest(t *testing.T, node, br, tap, mac string) string {
	t.Helper()
	ns := nstest.New(t, "cnn-g")
	nstest.Veth(t, node, tap, "", ns, "eth0", "")
	nstest.IP(t, "-n", ns, "link", "set", "eth0", "address", mac)
	nstest.IP(t, "-n", node, "link", "set", tap, "master", br)
	return ns
}

// dhcp runs udhcpc in ns and checks that the lease line has every one of want.
func dhcp(t *testing.T, ns string, want ...string) {
	t.Helper()
	lease, err := nstest.DHCP(t, ns, "eth0")
	if err != nil {
		t.Fatalf("dhcp in %s: %v", ns, err)
	}
	for _, w := range want {
		if !strings.Contains(" "+lease+" ", " "+w+" ") {
			t.Errorf("lease %q lacks %s", lease, w)
		}
	}
}

func TestApplyAcrossNodes(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireProgram(t, "busybox")
	t.Parallel()
	admin, node := nstest.New(t, "cnn-a"), nstest.New(t, "cnn-b")
	nstest.Veth(t, admin, "lan0", "192.168.78.1/24", node, "lan0", "192.168.78.2/24")
	aa, an := newApplier(t, admin, "lan0", ""), newApplier(t, node, "lan0", "")

	const mac1, mac2 = "52:54:00:7e:00:01", "52:54:00:7e:00:02"
	prefix, gw := netip.MustParsePrefix("10.7.7.0/24"), netip.MustParseAddr("10.7.7.1")
	d := engine.NetworkDHCP{Network: 7, Prefix: prefix, Gateway: gw, DNS: []netip.Addr{gw}, MTU: engine.GuestMTU,
		Leases: []engine.DHCPLease{{MAC: mac1, IP: netip.MustParseAddr("10.7.7.10"), Hostname: "srv-1"}}}
	adminNN := engine.NodeNetwork{Networks: []vnet.Network{{ID: 7, Prefix: prefix, Gateway: true}},
		Peers: []netip.Addr{netip.MustParseAddr("192.168.78.2")}, DHCP: []engine.NetworkDHCP{d}, Version: "v1"}
	nodeNN := engine.NodeNetwork{Networks: []vnet.Network{{ID: 7, Prefix: prefix}},
		Peers: []netip.Addr{netip.MustParseAddr("192.168.78.1")}, Version: "v1"}
	if aa.Version() != "" {
		t.Errorf("Version() = %q before any Apply", aa.Version())
	}
	apply(t, aa, adminNN)
	apply(t, an, nodeNN)

	// A server on the compute node gets its fixed address from the admin's DHCP
	// across VXLAN, and reaches the gateway.
	g1 := guest(t, node, "cbr7", "tg1", mac1)
	dhcp(t, g1, "ip=10.7.7.10", "mask=24", "router=10.7.7.1", "mtu=1450", "dns=10.7.7.1", "hostname=srv-1")
	if !nstest.Ping(g1, "10.7.7.1") {
		t.Errorf("server on the compute node cannot ping its gateway")
	}

	// Concurrent Applies of the same network are serialised and change nothing.
	first := aa.servers[7].srv
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := aa.Apply(context.Background(), adminNN); err != nil {
				t.Errorf("concurrent apply: %v", err)
			}
		})
	}
	wg.Wait()

	// A second MAC's lease reaches the running server without a restart.
	adminNN.DHCP[0].Leases = append(adminNN.DHCP[0].Leases, engine.DHCPLease{MAC: mac2, IP: netip.MustParseAddr("10.7.7.11")})
	adminNN.Version = "v2"
	apply(t, aa, adminNN)
	if aa.servers[7].srv != first {
		t.Errorf("a lease change restarted the DHCP server")
	}
	g2 := guest(t, node, "cbr7", "tg2", mac2)
	dhcp(t, g2, "ip=10.7.7.11", "router=10.7.7.1")

	// New name servers restart it, and the clients get them.
	adminNN.DHCP[0].DNS = []netip.Addr{netip.MustParseAddr("9.9.9.9")}
	adminNN.Version = "v3"
	apply(t, aa, adminNN)
	if aa.servers[7].srv == first {
		t.Errorf("a DNS change did not restart the DHCP server")
	}
	dhcp(t, g1, "ip=10.7.7.10", "dns=9.9.9.9")

	// A malformed MAC is refused before anything changes.
	bad := adminNN
	bad.DHCP = []engine.NetworkDHCP{d}
	bad.DHCP[0].Leases = []engine.DHCPLease{{MAC: "52:54:zz", IP: netip.MustParseAddr("10.7.7.12")}}
	bad.Version = "v4"
	if err := aa.Apply(context.Background(), bad); err == nil || !strings.Contains(err.Error(), `"52:54:zz"`) {
		t.Errorf("apply with a bad MAC: err = %v, want one naming the MAC", err)
	}
	if got := aa.Version(); got != "v3" {
		t.Errorf("Version() = %q after a refused Apply, want v3", got)
	}

	// An empty NodeNetwork removes the bridges and stops DHCP.
	run := aa.servers[7]
	apply(t, aa, engine.NodeNetwork{Version: "v5"})
	apply(t, an, engine.NodeNetwork{Version: "v5"})
	if len(aa.servers) != 0 || !run.exited() {
		t.Errorf("DHCP still running after an empty Apply: %d servers, old one exited=%v", len(aa.servers), run.exited())
	}
	for _, ns := range []string{admin, node} {
		if out := nstest.IP(t, "-n", ns, "-o", "link", "show"); strings.Contains(out, "cbr7") || strings.Contains(out, "cvx7") {
			t.Errorf("links left in %s after an empty Apply:\n%s", ns, out)
		}
	}
}

func TestApplyExternalSegment(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireProgram(t, "busybox")
	t.Parallel()
	admin, outside := nstest.New(t, "cnn-a"), nstest.New(t, "cnn-o")
	nstest.Veth(t, admin, "up0", "198.51.100.2/24", outside, "eth0", "198.51.100.1/24")
	aa := newApplier(t, admin, "", "up0")

	const mac = "52:54:00:7e:01:01"
	srv := netip.MustParseAddr("198.51.100.50")
	apply(t, aa, engine.NodeNetwork{
		Networks: []vnet.Network{{ID: 9, External: true, Gateway: true, Routed: []netip.Addr{srv}}},
		DHCP: []engine.NetworkDHCP{{Network: 9, External: true, DNS: []netip.Addr{netip.MustParseAddr("198.51.100.1")}, MTU: 1450,
			Leases: []engine.DHCPLease{{MAC: mac, IP: srv}}}},
		Version: "e1",
	})
	// The server's network and router are the uplink's.
	g := guest(t, admin, "cbr9", "tg1", mac)
	dhcp(t, g, "ip=198.51.100.50", "mask=24", "router=198.51.100.2", "mtu=1450")
	if !nstest.Ping(g, "198.51.100.1") {
		t.Errorf("external server cannot ping the outside host")
	}
	if !nstest.Ping(outside, srv.String()) {
		t.Errorf("outside host cannot ping the external server")
	}

	// Without an uplink the admin cannot serve an external segment.
	bare := newApplier(t, admin, "", "")
	err := bare.Apply(context.Background(), engine.NodeNetwork{Networks: []vnet.Network{{ID: 9, External: true}},
		DHCP: []engine.NetworkDHCP{{Network: 9, External: true}}, Version: "e2"})
	if err == nil || !strings.Contains(err.Error(), "without an uplink") {
		t.Errorf("external DHCP without an uplink: err = %v, want one asking for the uplink", err)
	}
}

func TestDHCPFailureRestarts(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireProgram(t, "busybox")
	t.Parallel()
	admin := nstest.New(t, "cnn-a")
	aa := newApplier(t, admin, "", "")
	// A socket on port 67 without SO_REUSEPORT keeps the DHCP server from listening.
	h := nstest.Handle(t, admin)
	defer h.Close()
	var blocker *net.UDPConn
	if err := nstest.In(h, func() (err error) {
		blocker, err = net.ListenUDP("udp4", &net.UDPAddr{Port: 67})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	const mac = "52:54:00:7e:02:01"
	prefix, gw := netip.MustParsePrefix("10.7.8.0/24"), netip.MustParseAddr("10.7.8.1")
	nn := engine.NodeNetwork{Networks: []vnet.Network{{ID: 8, Prefix: prefix, Gateway: true}},
		DHCP: []engine.NetworkDHCP{{Network: 8, Prefix: prefix, Gateway: gw,
			Leases: []engine.DHCPLease{{MAC: mac, IP: netip.MustParseAddr("10.7.8.10")}}}}, Version: "f1"}
	if err := aa.Apply(context.Background(), nn); err != nil {
		t.Fatal(err)
	}
	// The failure shows as no version, so the engine applies again.
	deadline := time.Now().Add(10 * time.Second)
	for aa.Version() != "" && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := aa.Version(); got != "" {
		t.Fatalf("Version() = %q with a failed DHCP server, want \"\"", got)
	}
	blocker.Close()
	apply(t, aa, nn)
	g := guest(t, admin, "cbr8", "tg1", mac)
	dhcp(t, g, "ip=10.7.8.10", "router=10.7.8.1")
	if got := aa.Version(); got != "f1" {
		t.Errorf("Version() = %q after the restart, want f1", got)
	}
}
