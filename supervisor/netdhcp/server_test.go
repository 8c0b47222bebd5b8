package netdhcp

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

var (
	knownMAC   = net.HardwareAddr{0x52, 0x54, 0x00, 0xaa, 0x00, 0x01}
	unknownMAC = net.HardwareAddr{0x52, 0x54, 0x00, 0xaa, 0x00, 0x02}
)

func testConfig() Config {
	return Config{
		Interface: "br-test",
		Prefix:    pfx("10.7.3.0/24"),
		Gateway:   netip.MustParseAddr("10.7.3.1"),
		DNS:       []netip.Addr{netip.MustParseAddr("10.7.3.1"), netip.MustParseAddr("9.9.9.9")},
		Routes:    []Route{{Dest: pfx("172.16.0.0/12"), Via: netip.MustParseAddr("10.7.3.2")}},
		LeaseTime: 10 * time.Minute,
		Leases:    []Lease{{MAC: knownMAC, IP: netip.MustParseAddr("10.7.3.10"), Hostname: "web-1"}},
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// request builds a client message without dhcpv4.New (no entropy read).
func request(mac net.HardwareAddr, t dhcpv4.MessageType, opts ...dhcpv4.Option) *dhcpv4.DHCPv4 {
	m := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootRequest,
		HWType:        iana.HWTypeEthernet,
		TransactionID: dhcpv4.TransactionID{1, 2, 3, 4},
		ClientIPAddr:  net.IPv4zero,
		YourIPAddr:    net.IPv4zero,
		ServerIPAddr:  net.IPv4zero,
		GatewayIPAddr: net.IPv4zero,
		ClientHWAddr:  mac,
		Options:       dhcpv4.Options{},
	}
	m.UpdateOption(dhcpv4.OptMessageType(t))
	for _, o := range opts {
		m.UpdateOption(o)
	}
	// Round-trip through the wire format, as the server sees it.
	out, err := dhcpv4.FromBytes(m.ToBytes())
	if err != nil {
		panic(err)
	}
	return out
}

func TestAnswer(t *testing.T) {
	s, err := New(testConfig(), quiet())
	if err != nil {
		t.Fatal(err)
	}
	offer, dst := s.answer(request(knownMAC, dhcpv4.MessageTypeDiscover))
	if offer == nil || offer.MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("discover from known MAC: got %v, want an offer", offer)
	}
	if !dst.IP.Equal(net.IPv4bcast) {
		t.Errorf("offer sent to %s, want broadcast", dst)
	}
	if got := offer.YourIPAddr.String(); got != "10.7.3.10" {
		t.Errorf("offer yiaddr = %s, want 10.7.3.10", got)
	}
	if got := offer.Router(); len(got) != 1 || got[0].String() != "10.7.3.1" {
		t.Errorf("router = %v, want 10.7.3.1", got)
	}
	if got := offer.DNS(); len(got) != 2 || got[1].String() != "9.9.9.9" {
		t.Errorf("dns = %v, want 10.7.3.1 9.9.9.9", got)
	}
	if got := net.IP(offer.SubnetMask()).String(); got != "255.255.255.0" {
		t.Errorf("subnet mask = %s", got)
	}
	if got := offer.IPAddressLeaseTime(0); got != 10*time.Minute {
		t.Errorf("lease time = %s, want 10m", got)
	}
	if got := offer.HostName(); got != "web-1" {
		t.Errorf("hostname = %q, want web-1", got)
	}
	if v := offer.Options.Get(dhcpv4.OptionInterfaceMTU); v != nil {
		t.Errorf("option 26 = %v without an MTU configured", v)
	}
	routes := offer.ClasslessStaticRoute()
	if len(routes) != 2 || routes[0].String() != "route to 172.16.0.0/12 via 10.7.3.2" || routes[1].String() != "route to 0.0.0.0/0 via 10.7.3.1" {
		t.Errorf("option 121 = %v, want 172.16.0.0/12 via 10.7.3.2 and the default route via the gateway", routes)
	}

	ack, _ := s.answer(request(knownMAC, dhcpv4.MessageTypeRequest,
		dhcpv4.OptServerIdentifier(net.ParseIP("10.7.3.1")), dhcpv4.OptRequestedIPAddress(net.ParseIP("10.7.3.10"))))
	if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck || ack.YourIPAddr.String() != "10.7.3.10" {
		t.Fatalf("request for own address: got %v, want ack of 10.7.3.10", ack)
	}

	nak, dst := s.answer(request(knownMAC, dhcpv4.MessageTypeRequest, dhcpv4.OptRequestedIPAddress(net.ParseIP("10.7.3.99"))))
	if nak == nil || nak.MessageType() != dhcpv4.MessageTypeNak || !dst.IP.Equal(net.IPv4bcast) {
		t.Fatalf("request for a wrong address: got %v to %v, want a broadcast nak", nak, dst)
	}

	if other, _ := s.answer(request(knownMAC, dhcpv4.MessageTypeRequest,
		dhcpv4.OptServerIdentifier(net.ParseIP("10.7.3.5")), dhcpv4.OptRequestedIPAddress(net.ParseIP("10.7.3.10")))); other != nil {
		t.Errorf("request to another server answered: %v", other)
	}
	for _, mt := range []dhcpv4.MessageType{dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest} {
		if r, _ := s.answer(request(unknownMAC, mt, dhcpv4.OptRequestedIPAddress(net.ParseIP("10.7.3.10")))); r != nil {
			t.Errorf("%s from unknown MAC answered: %v", mt, r)
		}
	}

	// Renewal: unicast back to the client's address.
	renew := request(knownMAC, dhcpv4.MessageTypeRequest)
	renew.ClientIPAddr = net.ParseIP("10.7.3.10").To4()
	if ack, dst := s.answer(renew); ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck || dst.IP.String() != "10.7.3.10" {
		t.Errorf("renewal: got %v to %v, want ack unicast to 10.7.3.10", ack, dst)
	}

	if err := s.SetLeases([]Lease{{MAC: unknownMAC, IP: netip.MustParseAddr("10.7.3.11")}}); err != nil {
		t.Fatal(err)
	}
	if r, _ := s.answer(request(knownMAC, dhcpv4.MessageTypeDiscover)); r != nil {
		t.Errorf("removed MAC still answered: %v", r)
	}
	if r, _ := s.answer(request(unknownMAC, dhcpv4.MessageTypeDiscover)); r == nil || r.YourIPAddr.String() != "10.7.3.11" {
		t.Errorf("added MAC: got %v, want offer of 10.7.3.11", r)
	}
}

func TestConfigRefused(t *testing.T) {
	for name, mod := range map[string]func(*Config){
		"no interface":       func(c *Config) { c.Interface = "" },
		"gateway outside":    func(c *Config) { c.Gateway = netip.MustParseAddr("10.7.4.1") },
		"ipv6 dns":           func(c *Config) { c.DNS = []netip.Addr{netip.MustParseAddr("fd00::1")} },
		"route via offlink":  func(c *Config) { c.Routes[0].Via = netip.MustParseAddr("10.9.9.9") },
		"lease outside":      func(c *Config) { c.Leases[0].IP = netip.MustParseAddr("10.7.4.10") },
		"lease on gateway":   func(c *Config) { c.Leases[0].IP = c.Gateway },
		"lease on broadcast": func(c *Config) { c.Leases[0].IP = netip.MustParseAddr("10.7.3.255") },
		"short mac":          func(c *Config) { c.Leases[0].MAC = knownMAC[:4] },
		"duplicate mac": func(c *Config) {
			c.Leases = append(c.Leases, Lease{MAC: knownMAC, IP: netip.MustParseAddr("10.7.3.20")})
		},
		"duplicate address":   func(c *Config) { c.Leases = append(c.Leases, Lease{MAC: unknownMAC, IP: c.Leases[0].IP}) },
		"bad hostname":        func(c *Config) { c.Leases[0].Hostname = "web 1;rm" },
		"negative lease time": func(c *Config) { c.LeaseTime = -time.Second },
		"mtu too small":       func(c *Config) { c.MTU = 575 },
		"mtu too large":       func(c *Config) { c.MTU = 9001 },
	} {
		c := testConfig()
		mod(&c)
		if _, err := New(c, quiet()); !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrOverlap) {
			t.Errorf("%s: New err = %v, want ErrInvalid or ErrOverlap", name, err)
		}
	}
	s, err := New(testConfig(), quiet())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetLeases([]Lease{{MAC: unknownMAC, IP: netip.MustParseAddr("10.8.0.10")}}); err == nil {
		t.Error("SetLeases accepted an address outside the network")
	}
	if r, _ := s.answer(request(knownMAC, dhcpv4.MessageTypeDiscover)); r == nil {
		t.Error("a refused SetLeases dropped the old leases")
	}
}

func TestAnswerMTU(t *testing.T) {
	cfg := testConfig()
	cfg.MTU = 1450
	s, err := New(cfg, quiet())
	if err != nil {
		t.Fatal(err)
	}
	offer, _ := s.answer(request(knownMAC, dhcpv4.MessageTypeDiscover))
	if offer == nil {
		t.Fatal("no offer")
	}
	if got := offer.Options.Get(dhcpv4.OptionInterfaceMTU); len(got) != 2 || int(got[0])<<8|int(got[1]) != 1450 {
		t.Errorf("option 26 = %v, want 1450 as two bytes", got)
	}
}
