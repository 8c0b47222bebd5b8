package netdhcp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/cairn-os/cairn/internal/nstest"
	"github.com/cairn-os/cairn/internal/testutil"
)

// link is a test network made only of namespaces: a bridge with the gateway address in
// namespace srv, and a veth whose other end (cliIf, with a chosen MAC) is in namespace
// cli, the way a guest's tap would hang off the bridge. Nothing in the test process's
// own namespace changes.
type link struct {
	srv, cli string
	bridge   string
	cliIf    string
}

func newLink(t *testing.T, gateway string, mac net.HardwareAddr) *link {
	t.Helper()
	l := &link{srv: nstest.New(t, "cairn-dhs-"), cli: nstest.New(t, "cairn-dhc-"), bridge: "br0", cliIf: "eth0"}
	nstest.IP(t, "-n", l.srv, "link", "add", l.bridge, "type", "bridge")
	nstest.IP(t, "-n", l.srv, "addr", "add", gateway, "dev", l.bridge)
	nstest.IP(t, "-n", l.srv, "link", "set", l.bridge, "up")
	nstest.Veth(t, l.srv, "vsrv", "", l.cli, l.cliIf, "")
	nstest.IP(t, "-n", l.srv, "link", "set", "vsrv", "master", l.bridge)
	nstest.IP(t, "-n", l.cli, "link", "set", l.cliIf, "address", mac.String())
	return l
}

// serveIn runs s inside the link's server namespace until the test ends.
func serveIn(t *testing.T, l *link, s *Server) {
	h := nstest.Handle(t, l.srv)
	t.Cleanup(func() { h.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServeIn(ctx, h) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
}

// briefClient gives up after about three seconds, so that a MAC the server does not know
// costs the test little; it asks for the static routes (option 121) as well.
var briefClient = nstest.DHCPClient{Tries: 3, Seconds: 1, Request: []string{"staticroutes"}}

// udhcpc runs busybox's DHCP client once on the link's client side and returns the
// settings it was given, or nil when no server answered.
func udhcpc(t *testing.T, l *link) map[string]string {
	t.Helper()
	got, err := briefClient.Lease(t, l.cli, l.cliIf)
	if errors.Is(err, nstest.ErrNoLease) {
		t.Logf("udhcpc got no lease: %v", err)
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestHostRealClient(t *testing.T) {
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0xc4, 0x1e, 0x07}
	l := newLink(t, "10.7.3.1/24", mac)
	cfg := Config{
		Interface: l.bridge,
		Prefix:    pfx("10.7.3.0/24"),
		Gateway:   netip.MustParseAddr("10.7.3.1"),
		DNS:       []netip.Addr{netip.MustParseAddr("10.7.3.1"), netip.MustParseAddr("9.9.9.9")},
		Routes:    []Route{{Dest: pfx("172.16.0.0/12"), Via: netip.MustParseAddr("10.7.3.2")}},
		LeaseTime: 30 * time.Minute,
		Leases:    []Lease{{MAC: mac, IP: netip.MustParseAddr("10.7.3.10"), Hostname: "web-1"}},
		MTU:       1450,
	}
	s, err := New(cfg, quiet())
	if err != nil {
		t.Fatal(err)
	}
	serveIn(t, l, s)

	got := udhcpc(t, l)
	if got == nil {
		t.Fatal("known MAC got no lease")
	}
	want := map[string]string{
		"ip":       "10.7.3.10",
		"subnet":   "255.255.255.0",
		"router":   "10.7.3.1",
		"dns":      "10.7.3.1 9.9.9.9",
		"hostname": "web-1",
		"lease":    "1800",
		// busybox prints option 121 as destination/bits router pairs.
		"staticroutes": "172.16.0.0/12 10.7.3.2 0.0.0.0/0 10.7.3.1",
		"mtu":          "1450",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("client got %s=%q, want %q", k, got[k], v)
		}
	}

	// The same NIC with a new fixed address, without restarting the server.
	if err := s.SetLeases([]Lease{{MAC: mac, IP: netip.MustParseAddr("10.7.3.42")}}); err != nil {
		t.Fatal(err)
	}
	if got := udhcpc(t, l); got == nil || got["ip"] != "10.7.3.42" || got["hostname"] != "" {
		t.Errorf("after SetLeases the client got %v, want ip=10.7.3.42 and no hostname", got)
	}

	// Leases without this MAC: the client hears nothing.
	if err := s.SetLeases([]Lease{{MAC: net.HardwareAddr{0x52, 0x54, 0, 0, 0, 9}, IP: netip.MustParseAddr("10.7.3.11")}}); err != nil {
		t.Fatal(err)
	}
	if got := udhcpc(t, l); got != nil {
		t.Errorf("unknown MAC got a lease: %v", got)
	}
}

func TestHostServeMissingInterface(t *testing.T) {
	testutil.RequireRoot(t)
	cfg := testConfig()
	cfg.Interface = testutil.Name("nobr")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := Serve(ctx, cfg, quiet()); err == nil || !strings.Contains(err.Error(), "bridge exists") {
		t.Errorf("Serve on a missing interface: err = %v, want one that says to check the bridge", err)
	}
}

func TestHostServeInMissingInterface(t *testing.T) {
	l := newLink(t, "10.7.3.1/24", net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1})
	h := nstest.Handle(t, l.srv)
	defer h.Close()
	cfg := testConfig()
	cfg.Interface = "nobr0" // exists in no namespace here
	s, err := New(cfg, quiet())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.ServeIn(ctx, h); err == nil || !strings.Contains(err.Error(), "bridge exists") {
		t.Errorf("ServeIn on a missing interface: err = %v, want one that says to check the bridge", err)
	}
}
