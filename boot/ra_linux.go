package boot

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// iPXE waits about 16 s for IPv6 router advertisements before it configures the
// interface. A LAN without an IPv6 router never sends one, so we answer its router
// solicitations with a minimal advertisement: router lifetime 0 (we are not a default
// router), no prefixes, managed and other flags clear (no DHCPv6). Hosts take nothing
// from it but the knowledge that there is nothing to configure.

var allRouters = net.ParseIP("ff02::2")
var allNodes = net.ParseIP("ff02::1")

// raListener is a raw ICMPv6 socket bound to the LAN interface that receives router
// solicitations.
type raListener struct {
	pc  *ipv6.PacketConn
	ifi *net.Interface
}

// listenRouterSolicitations opens the socket: bound to ifname, member of ff02::2,
// filtering everything but router solicitations, sending with hop limit 255 (RFC 4861
// makes receivers drop neighbour discovery with any other).
func listenRouterSolicitations(ifname string) (*raListener, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("router solicitations on %s: %w", ifname, err)
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) { serr = unix.BindToDevice(int(fd), ifname) }); err != nil {
			return err
		}
		return serr
	}}
	c, err := lc.ListenPacket(context.Background(), "ip6:ipv6-icmp", "::")
	if err != nil {
		return nil, fmt.Errorf("router solicitations on %s: %w", ifname, err)
	}
	pc := ipv6.NewPacketConn(c)
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeRouterSolicitation)
	for _, step := range []struct {
		what string
		do   func() error
	}{
		{"filter", func() error { return pc.SetICMPFilter(&f) }},
		{"join ff02::2", func() error { return pc.JoinGroup(ifi, &net.IPAddr{IP: allRouters}) }},
		{"hop limit", func() error { return pc.SetHopLimit(255) }},
		{"multicast hop limit", func() error { return pc.SetMulticastHopLimit(255) }},
		{"control messages", func() error { return pc.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagInterface, true) }},
	} {
		if err := step.do(); err != nil {
			c.Close()
			return nil, fmt.Errorf("router solicitations on %s: %s: %w", ifname, step.what, err)
		}
	}
	return &raListener{pc: pc, ifi: ifi}, nil
}

// Close closes the socket.
func (l *raListener) Close() error { return l.pc.Close() }

// serveRouterSolicitations answers each valid router solicitation on l until l is
// closed: unicast to the soliciting address, or to all nodes when it came from ::.
func (s *Server) serveRouterSolicitations(ctx context.Context, l *raListener) error {
	ra := routerAdvertisement(l.ifi.HardwareAddr)
	buf := make([]byte, 1500)
	for {
		n, cm, src, err := l.pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("router solicitations read: %w", err)
		}
		if cm == nil || cm.HopLimit != 255 || (cm.IfIndex != 0 && cm.IfIndex != l.ifi.Index) {
			continue // RFC 4861 6.1.1: not from the link
		}
		m, err := icmp.ParseMessage(ipv6.ICMPTypeRouterSolicitation.Protocol(), buf[:n])
		if err != nil || m.Type != ipv6.ICMPTypeRouterSolicitation || m.Code != 0 {
			continue
		}
		from, ok := src.(*net.IPAddr)
		if !ok {
			continue
		}
		dst := &net.IPAddr{IP: allNodes, Zone: l.ifi.Name}
		if !from.IP.IsUnspecified() {
			dst = &net.IPAddr{IP: from.IP, Zone: l.ifi.Name}
		}
		if _, err := l.pc.WriteTo(ra, &ipv6.ControlMessage{HopLimit: 255, IfIndex: l.ifi.Index}, dst); err != nil {
			if errors.Is(err, unix.EADDRNOTAVAIL) {
				// Our link-local address is still tentative (duplicate address
				// detection, about a second after the link came up); the
				// client solicits again.
				s.log.Debug("router advertisement not sent yet", "to", dst.String(), "err", err)
			} else {
				s.log.Warn("router advertisement not sent", "to", dst.String(), "err", err)
			}
			continue
		}
		s.log.Debug("router advertisement sent", "to", dst.String())
	}
}

// routerAdvertisement returns an ICMPv6 router advertisement (RFC 4861 4.2) with
// router lifetime 0, no flags, unspecified hop limit and timers, and the source
// link-layer address option when mac is Ethernet. The checksum is left zero: the
// kernel computes it for ICMPv6 raw sockets (RFC 3542 3.1).
func routerAdvertisement(mac net.HardwareAddr) []byte {
	b := []byte{
		134, 0, 0, 0, // type, code, checksum
		0,    // cur hop limit: unspecified
		0,    // flags: no M, no O
		0, 0, // router lifetime: not a default router
		0, 0, 0, 0, // reachable time: unspecified
		0, 0, 0, 0, // retrans timer: unspecified
	}
	if len(mac) == 6 {
		b = append(b, 1, 1) // source link-layer address, 8 bytes
		b = append(b, mac...)
	}
	return b
}
