package netdhcp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/insomniacslk/dhcp/iana"
)

// DefaultLeaseTime is the lease time when Config.LeaseTime is zero.
const DefaultLeaseTime = time.Hour

// Lease is a server's fixed address on a network: the DHCP server gives IP (and
// Hostname, when set) to the NIC with MAC, and to no one else.
type Lease struct {
	MAC      net.HardwareAddr
	IP       netip.Addr
	Hostname string
}

// Route is a classless static route (option 121) handed to the servers: traffic for
// Dest goes through Via, which must be on the network.
type Route struct {
	Dest netip.Prefix
	Via  netip.Addr
}

// Config is one network's DHCP service: an internal network's, or an external
// segment's, whose prefix and gateway are the uplink's.
type Config struct {
	// Interface is the network's bridge; the server listens only there.
	Interface string
	// Prefix is the network's /24.
	Prefix netip.Prefix
	// Gateway is the network's router and the server's identifier: the address the
	// bridge has inside Prefix.
	Gateway netip.Addr
	// DNS are the name servers handed out.
	DNS []netip.Addr
	// Routes are classless static routes (option 121). When there are any, a default
	// route through Gateway is added to them unless they hold one: a client that gets
	// option 121 ignores the router option (RFC 3442).
	Routes []Route
	// LeaseTime is how long a lease lasts; zero means DefaultLeaseTime.
	LeaseTime time.Duration
	// Leases are the fixed MAC → address assignments; unknown MACs get no answer.
	Leases []Lease
	// MTU is the interface MTU handed out (option 26), 576..9000; 0 hands out none.
	MTU int
}

// Server is the DHCPv4 server of one network.
type Server struct {
	cfg Config
	log *slog.Logger

	mu     sync.RWMutex
	leases map[string]Lease // by MAC
}

// New checks cfg and returns a server for it; Serve runs it.
func New(cfg Config, logger *slog.Logger) (*Server, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.LeaseTime == 0 {
		cfg.LeaseTime = DefaultLeaseTime
	}
	cfg.Prefix = cfg.Prefix.Masked()
	s := &Server{cfg: cfg, log: logger.With("component", "netdhcp", "interface", cfg.Interface, "network", cfg.Prefix.String())}
	if err := s.SetLeases(cfg.Leases); err != nil {
		return nil, err
	}
	return s, nil
}

// Serve runs the DHCP server for cfg on cfg.Interface until ctx ends. Use New and
// Server.Serve instead to change the leases while it runs.
func Serve(ctx context.Context, cfg Config, logger *slog.Logger) error {
	s, err := New(cfg, logger)
	if err != nil {
		return err
	}
	return s.Serve(ctx)
}

// Serve answers DHCP on the server's interface until ctx ends, then returns nil. It
// returns an error when it cannot listen (the interface does not exist, or another
// DHCP server holds port 67 on it).
func (s *Server) Serve(ctx context.Context) error {
	conn, err := server4.NewIPv4UDPConn(s.cfg.Interface, &net.UDPAddr{Port: dhcpv4.ServerPort})
	if err != nil {
		return fmt.Errorf("netdhcp listen on %s port %d: %w: check that the bridge exists and no other DHCP server runs on it", s.cfg.Interface, dhcpv4.ServerPort, err)
	}
	return s.serveConn(ctx, conn)
}

// SetLeases replaces the fixed leases; the next message from a client is answered
// from the new set. It refuses a set that does not fit the network and then keeps the
// old one.
func (s *Server) SetLeases(leases []Lease) error {
	m, err := s.cfg.checkLeases(leases)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.leases = m
	s.mu.Unlock()
	s.log.Info("dhcp leases set", "count", len(m))
	return nil
}

// lease returns the fixed lease of mac.
func (s *Server) lease(mac net.HardwareAddr) (Lease, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	l, ok := s.leases[mac.String()]
	return l, ok
}

// serveConn answers the messages arriving on conn until ctx ends. Messages are handled
// one at a time: each is a map look-up, and the order keeps a client's DISCOVER before
// its REQUEST.
func (s *Server) serveConn(ctx context.Context, conn *net.UDPConn) error {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	s.log.Info("dhcp server started", "gateway", s.cfg.Gateway.String())
	buf := make([]byte, 4096)
	for {
		n, peer, err := conn.ReadFromUDP(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				s.log.Info("dhcp server stopped")
				return nil
			}
			return fmt.Errorf("netdhcp read on %s: %w", s.cfg.Interface, err)
		}
		req, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			s.log.Debug("dhcp message unreadable", "peer", peer.String(), "err", err)
			continue
		}
		resp, dst := s.answer(req)
		if resp == nil {
			continue
		}
		if _, err := conn.WriteToUDP(resp.ToBytes(), dst); err != nil {
			s.log.Warn("dhcp reply not sent", "mac", req.ClientHWAddr.String(), "to", dst.String(), "err", err)
		}
	}
}

// answer is the reply to req and where it goes, or nil for no reply: DISCOVER gets an
// OFFER and REQUEST an ACK of the client's fixed address; a REQUEST for another
// address gets a NAK; unknown MACs and relayed messages get nothing.
func (s *Server) answer(req *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	if req.OpCode != dhcpv4.OpcodeBootRequest || req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6 {
		return nil, nil
	}
	mac := req.ClientHWAddr
	if req.GatewayIPAddr != nil && !req.GatewayIPAddr.IsUnspecified() {
		// Cairn's networks are one link each; a relay serves some other subnet.
		s.log.Debug("relayed dhcp message ignored", "mac", mac.String(), "relay", req.GatewayIPAddr.String())
		return nil, nil
	}
	l, known := s.lease(mac)
	if !known {
		s.log.Debug("dhcp message from unknown mac ignored", "mac", mac.String(), "type", req.MessageType().String())
		return nil, nil
	}
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		resp := s.leaseReply(req, dhcpv4.MessageTypeOffer, l)
		return resp, replyAddr(req, resp)

	case dhcpv4.MessageTypeRequest:
		if sid := req.ServerIdentifier(); sid != nil && !sid.Equal(net.IP(s.cfg.Gateway.AsSlice())) {
			s.log.Debug("dhcp client chose another server", "mac", mac.String(), "server", sid.String())
			return nil, nil
		}
		want := req.RequestedIPAddress()
		if want == nil && req.ClientIPAddr != nil && !req.ClientIPAddr.IsUnspecified() {
			want = req.ClientIPAddr // renewing or rebinding
		}
		wa, ok := netip.AddrFromSlice(want.To4())
		if !ok || wa != l.IP {
			resp := newReply(req, dhcpv4.MessageTypeNak)
			resp.UpdateOption(dhcpv4.OptServerIdentifier(net.IP(s.cfg.Gateway.AsSlice())))
			resp.UpdateOption(dhcpv4.OptMessage(fmt.Sprintf("address %s is not yours: discover again to get %s", want, l.IP)))
			s.log.Info("dhcp reply", "reply", "nak", "mac", mac.String(), "requested", fmt.Sprint(want), "has", l.IP.String())
			return resp, replyAddr(req, resp)
		}
		resp := s.leaseReply(req, dhcpv4.MessageTypeAck, l)
		return resp, replyAddr(req, resp)

	case dhcpv4.MessageTypeDecline:
		s.log.Warn("dhcp address declined, another machine uses it", "mac", mac.String(), "ip", l.IP.String())
	case dhcpv4.MessageTypeRelease:
		s.log.Debug("dhcp lease released", "mac", mac.String(), "ip", l.IP.String())
	default:
		s.log.Debug("dhcp message ignored", "mac", mac.String(), "type", req.MessageType().String())
	}
	return nil, nil
}

// leaseReply is an OFFER or ACK of l with the network's settings.
func (s *Server) leaseReply(req *dhcpv4.DHCPv4, t dhcpv4.MessageType, l Lease) *dhcpv4.DHCPv4 {
	c := s.cfg
	resp := newReply(req, t)
	resp.YourIPAddr = net.IP(l.IP.AsSlice())
	resp.UpdateOption(dhcpv4.OptServerIdentifier(net.IP(c.Gateway.AsSlice())))
	resp.UpdateOption(dhcpv4.OptSubnetMask(net.CIDRMask(c.Prefix.Bits(), 32)))
	resp.UpdateOption(dhcpv4.OptBroadcastAddress(net.IP(lastAddr(c.Prefix).AsSlice())))
	resp.UpdateOption(dhcpv4.OptIPAddressLeaseTime(c.LeaseTime))
	resp.UpdateOption(dhcpv4.OptRenewTimeValue(c.LeaseTime / 2))
	resp.UpdateOption(dhcpv4.OptRebindingTimeValue(c.LeaseTime * 7 / 8))
	resp.UpdateOption(dhcpv4.OptRouter(net.IP(c.Gateway.AsSlice())))
	if len(c.DNS) > 0 {
		dns := make([]net.IP, len(c.DNS))
		for i, a := range c.DNS {
			dns[i] = net.IP(a.AsSlice())
		}
		resp.UpdateOption(dhcpv4.OptDNS(dns...))
	}
	if c.MTU != 0 {
		resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionInterfaceMTU, binary.BigEndian.AppendUint16(nil, uint16(c.MTU))))
	}
	if routes := s.routes(); len(routes) > 0 {
		resp.UpdateOption(dhcpv4.OptClasslessStaticRoute(routes...))
	}
	if l.Hostname != "" {
		resp.UpdateOption(dhcpv4.OptHostName(l.Hostname))
	}
	s.log.Info("dhcp reply", "reply", t.String(), "mac", l.MAC.String(), "ip", l.IP.String())
	return resp
}

// routes is option 121's value: cfg.Routes, plus a default route through the gateway
// when they have none, since a client that gets option 121 ignores option 3.
func (s *Server) routes() []*dhcpv4.Route {
	if len(s.cfg.Routes) == 0 {
		return nil
	}
	var out []*dhcpv4.Route
	hasDefault := false
	for _, r := range s.cfg.Routes {
		d := r.Dest.Masked()
		hasDefault = hasDefault || d.Bits() == 0
		out = append(out, &dhcpv4.Route{
			Dest:   &net.IPNet{IP: net.IP(d.Addr().AsSlice()), Mask: net.CIDRMask(d.Bits(), 32)},
			Router: net.IP(r.Via.AsSlice()),
		})
	}
	if !hasDefault {
		out = append(out, &dhcpv4.Route{
			Dest:   &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
			Router: net.IP(s.cfg.Gateway.AsSlice()),
		})
	}
	return out
}

// newReply starts the reply to req. It does not use dhcpv4.New or NewReplyFromRequest:
// those read the kernel's random source for a transaction ID that the reply then
// overwrites with req's, and without a seeded entropy pool that read blocks for up to
// 2 minutes (FIELD-NOTES "PXE facts").
func newReply(req *dhcpv4.DHCPv4, t dhcpv4.MessageType) *dhcpv4.DHCPv4 {
	resp := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootReply,
		HWType:        req.HWType,
		TransactionID: req.TransactionID,
		Flags:         req.Flags,
		ClientIPAddr:  net.IPv4zero,
		YourIPAddr:    net.IPv4zero,
		ServerIPAddr:  net.IPv4zero,
		GatewayIPAddr: net.IPv4zero,
		ClientHWAddr:  req.ClientHWAddr,
		Options:       dhcpv4.Options{},
	}
	resp.UpdateOption(dhcpv4.OptMessageType(t))
	if v := req.Options.Get(dhcpv4.OptionClientIdentifier); v != nil {
		resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientIdentifier, v)) // RFC 6842
	}
	return resp
}

// replyAddr is where a reply goes (RFC 2131 4.1): to a bound client's address; else
// broadcast, as a client without an address cannot take unicast without an ARP entry
// we could only forge with a raw socket.
func replyAddr(req, resp *dhcpv4.DHCPv4) *net.UDPAddr {
	if resp.MessageType() != dhcpv4.MessageTypeNak && req.ClientIPAddr != nil && !req.ClientIPAddr.IsUnspecified() {
		return &net.UDPAddr{IP: req.ClientIPAddr, Port: dhcpv4.ClientPort}
	}
	return &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
}

// check reports what in c is missing or out of range.
func (c Config) check() error {
	if c.Interface == "" {
		return fmt.Errorf("netdhcp config: %w: no interface: give the network's bridge", ErrInvalid)
	}
	if !c.Prefix.IsValid() || !c.Prefix.Addr().Is4() || c.Prefix.Bits() > 30 {
		return fmt.Errorf("netdhcp config for %s: network range %s: %w: give an IPv4 prefix of /30 or larger", c.Interface, c.Prefix, ErrInvalid)
	}
	if !c.Gateway.Is4() || !c.Prefix.Contains(c.Gateway) {
		return fmt.Errorf("netdhcp config for %s: gateway %s: %w: it must be an address inside %s", c.Interface, c.Gateway, ErrInvalid, c.Prefix.Masked())
	}
	for _, a := range c.DNS {
		if !a.Is4() {
			return fmt.Errorf("netdhcp config for %s: dns server %s: %w: give IPv4 addresses", c.Interface, a, ErrInvalid)
		}
	}
	for _, r := range c.Routes {
		if !r.Dest.IsValid() || !r.Dest.Addr().Is4() {
			return fmt.Errorf("netdhcp config for %s: route to %s: %w: give an IPv4 destination prefix", c.Interface, r.Dest, ErrInvalid)
		}
		if !r.Via.Is4() || !c.Prefix.Contains(r.Via) {
			return fmt.Errorf("netdhcp config for %s: route to %s via %s: %w: the router must be inside %s", c.Interface, r.Dest, r.Via, ErrInvalid, c.Prefix.Masked())
		}
	}
	if c.MTU != 0 && (c.MTU < 576 || c.MTU > 9000) {
		return fmt.Errorf("netdhcp config for %s: mtu %d: %w: give 576 to 9000, or 0 to send none", c.Interface, c.MTU, ErrInvalid)
	}
	if c.LeaseTime < 0 || (c.LeaseTime > 0 && c.LeaseTime < time.Minute) {
		return fmt.Errorf("netdhcp config for %s: lease time %s: %w: give at least one minute, or zero for %s", c.Interface, c.LeaseTime, ErrInvalid, DefaultLeaseTime)
	}
	return nil
}

// checkLeases indexes leases by MAC, refusing malformed MACs, addresses outside the
// network (or its network, broadcast or gateway address) and duplicates.
func (c Config) checkLeases(leases []Lease) (map[string]Lease, error) {
	p := c.Prefix.Masked()
	m := make(map[string]Lease, len(leases))
	byIP := make(map[netip.Addr]string, len(leases))
	for _, l := range leases {
		if len(l.MAC) != 6 {
			return nil, fmt.Errorf("netdhcp lease %q → %s: %w: the MAC must be 6 bytes, such as 52:54:00:12:34:56", l.MAC.String(), l.IP, ErrInvalid)
		}
		l.IP = l.IP.Unmap()
		if !l.IP.Is4() || !p.Contains(l.IP) || l.IP == p.Addr() || l.IP == lastAddr(p) || l.IP == c.Gateway {
			return nil, fmt.Errorf("netdhcp lease %s → %s: %w: the address must be a host address inside %s other than the gateway %s", l.MAC, l.IP, ErrInvalid, p, c.Gateway)
		}
		if !validHostname(l.Hostname) {
			return nil, fmt.Errorf("netdhcp lease %s: hostname %q: %w: use letters, digits, '-' and '.', at most 63 characters a label", l.MAC, l.Hostname, ErrInvalid)
		}
		key := l.MAC.String()
		if _, dup := m[key]; dup {
			return nil, fmt.Errorf("netdhcp lease %s: %w: the MAC has two leases; give each NIC one address", key, ErrInvalid)
		}
		if other, dup := byIP[l.IP]; dup {
			return nil, fmt.Errorf("netdhcp lease %s → %s: %w: %s has that address already", key, l.IP, ErrOverlap, other)
		}
		byIP[l.IP] = key
		l.MAC = append(net.HardwareAddr(nil), l.MAC...)
		m[key] = l
	}
	return m, nil
}

// validHostname reports whether h (empty for none) can go into option 12: DNS labels
// of letters, digits and hyphens.
func validHostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	if h == "" {
		return true
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}
