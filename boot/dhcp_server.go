package boot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/insomniacslk/dhcp/iana"
)

// pxePort is where PXE clients send their ProxyDHCP requests (PXE spec 2.1, 2.2.3).
const pxePort = 4011

// ipxeNoProxyDHCP is option 175 (iPXE's encapsulated options) holding sub-option 176
// ("no-pxedhcp") = 1: iPXE then does not wait for proxyDHCP offers after ours.
var ipxeNoProxyDHCP = []byte{176, 1, 1}

// pxeBootFileOnly is option 43 (PXE vendor options) holding sub-option 6 (discovery
// control) = 8: skip boot server discovery and load the boot file of this offer.
var pxeBootFileOnly = []byte{6, 1, 8, 255}

// listenDHCP opens a UDP socket on port bound to iface (SO_BINDTODEVICE), able to
// receive and send broadcasts.
func listenDHCP(iface string, port int) (*net.UDPConn, error) {
	conn, err := server4.NewIPv4UDPConn(iface, &net.UDPAddr{Port: port})
	if err != nil {
		return nil, fmt.Errorf("boot dhcp listen %s port %d: %w", iface, port, err)
	}
	return conn, nil
}

// serveDHCP answers the DHCP messages arriving on conn (bound to port) until conn is
// closed. Messages are handled one at a time: each is a few map look-ups, and the
// order keeps a client's DISCOVER before its REQUEST.
func (s *Server) serveDHCP(ctx context.Context, conn *net.UDPConn, port int) error {
	buf := make([]byte, 4096)
	for {
		n, peer, err := conn.ReadFromUDP(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("boot dhcp read port %d: %w", port, err)
		}
		req, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			s.log.Debug("dhcp message unreadable", "peer", peer.String(), "err", err)
			continue
		}
		if req.OpCode != dhcpv4.OpcodeBootRequest || req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6 {
			continue
		}
		if req.GatewayIPAddr != nil && !req.GatewayIPAddr.IsUnspecified() {
			// A relay serves another subnet; our pool and boot server are for this link.
			s.log.Debug("relayed dhcp message ignored", "mac", req.ClientHWAddr.String(), "relay", req.GatewayIPAddr.String())
			continue
		}
		var resp *dhcpv4.DHCPv4
		var dst *net.UDPAddr
		if s.cfg.Mode == ModeDHCP {
			resp, dst = s.answerDHCP(req)
		} else {
			resp, dst = s.answerProxyDHCP(req, peer, port)
		}
		if resp == nil {
			continue
		}
		if _, err := conn.WriteToUDP(resp.ToBytes(), dst); err != nil {
			s.log.Warn("dhcp reply not sent", "mac", req.ClientHWAddr.String(), "to", dst.String(), "err", err)
		}
	}
}

// newReply starts the reply to req. It does not use dhcpv4.New or NewReplyFromRequest:
// those read the kernel's random source for a transaction ID that the reply then
// overwrites with req's, and in a guest without a seeded entropy pool (a TCG VM
// without virtio-rng) that read blocks for up to 2 minutes (FIELD-NOTES "PXE facts").
func newReply(req *dhcpv4.DHCPv4, t dhcpv4.MessageType) *dhcpv4.DHCPv4 {
	resp := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootReply,
		HWType:        req.HWType,
		TransactionID: req.TransactionID,
		Flags:         req.Flags,
		ClientIPAddr:  net.IPv4zero,
		YourIPAddr:    net.IPv4zero,
		ServerIPAddr:  net.IPv4zero,
		GatewayIPAddr: req.GatewayIPAddr,
		ClientHWAddr:  req.ClientHWAddr,
		Options:       dhcpv4.Options{},
	}
	resp.UpdateOption(dhcpv4.OptMessageType(t))
	// RFC 3046 (relay agent information) and RFC 6842 (client identifier): echo them.
	for _, code := range []dhcpv4.OptionCode{dhcpv4.OptionRelayAgentInformation, dhcpv4.OptionClientIdentifier} {
		if v := req.Options.Get(code); v != nil {
			resp.UpdateOption(dhcpv4.OptGeneric(code, v))
		}
	}
	return resp
}

// replyAddr is where a full-mode reply goes (RFC 2131 4.1): to a bound client's
// address; else broadcast, as clients without an address cannot take unicast without
// an ARP entry we could only forge with a raw socket. (Relayed requests are ignored.)
func replyAddr(req, resp *dhcpv4.DHCPv4) *net.UDPAddr {
	switch {
	case resp.MessageType() != dhcpv4.MessageTypeNak && req.ClientIPAddr != nil && !req.ClientIPAddr.IsUnspecified():
		return &net.UDPAddr{IP: req.ClientIPAddr, Port: dhcpv4.ClientPort}
	default:
		return &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
	}
}

// answerDHCP is the full DHCP server: addresses for every client, boot files for PXE
// and iPXE clients.
func (s *Server) answerDHCP(req *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	mac := req.ClientHWAddr
	now := s.now()
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		ip, err := s.pool.allocate(mac, req.RequestedIPAddress(), now)
		if err != nil {
			s.log.Error("dhcp client gets no address", "mac", mac.String(), "err", err)
			return nil, nil
		}
		resp := s.leaseReply(req, dhcpv4.MessageTypeOffer, ip)
		return resp, replyAddr(req, resp)

	case dhcpv4.MessageTypeRequest:
		if sid := req.ServerIdentifier(); sid != nil && !sid.Equal(s.cfg.ServerIP) {
			s.log.Debug("dhcp client chose another server", "mac", mac.String(), "server", sid.String())
			return nil, nil
		}
		want := req.RequestedIPAddress()
		if want == nil && !req.ClientIPAddr.IsUnspecified() {
			want = req.ClientIPAddr // renewing or rebinding
		}
		if want.To4() == nil {
			return nil, nil
		}
		ip := s.pool.claim(mac, want, now)
		if !ip.Equal(want) {
			msg := fmt.Sprintf("address %s is not yours", want)
			if ip != nil {
				msg += fmt.Sprintf(": discover again to get %s", ip)
			}
			resp := newReply(req, dhcpv4.MessageTypeNak)
			resp.UpdateOption(dhcpv4.OptServerIdentifier(s.cfg.ServerIP))
			resp.UpdateOption(dhcpv4.OptMessage(msg))
			s.log.Info("dhcp reply", "reply", "nak", "mac", mac.String(), "requested", want.String(), "has", ipString(ip))
			return resp, replyAddr(req, resp)
		}
		if err := s.pool.confirm(mac, ip, cleanHostname(req.HostName()), now, s.cfg.LeaseTime); err != nil {
			s.log.Error("dhcp lease not confirmed", "mac", mac.String(), "err", err)
			return nil, nil
		}
		s.saveLeases()
		resp := s.leaseReply(req, dhcpv4.MessageTypeAck, ip)
		return resp, replyAddr(req, resp)

	case dhcpv4.MessageTypeRelease:
		if s.pool.release(mac, req.ClientIPAddr, now) {
			s.log.Info("dhcp lease released", "mac", mac.String(), "ip", req.ClientIPAddr.String())
			s.saveLeases()
		}
	case dhcpv4.MessageTypeDecline:
		ip := req.RequestedIPAddress()
		if ip != nil && s.pool.decline(mac, ip, now) {
			s.log.Warn("dhcp address declined, another machine uses it", "mac", mac.String(), "ip", ip.String(), "held_for", declineHold)
			s.saveLeases()
		}
	default:
		s.log.Debug("dhcp message ignored", "mac", mac.String(), "type", req.MessageType().String())
	}
	return nil, nil
}

// leaseReply is an OFFER or ACK of ip with the LAN's settings and, for PXE and iPXE
// clients, the boot file.
func (s *Server) leaseReply(req *dhcpv4.DHCPv4, t dhcpv4.MessageType, ip net.IP) *dhcpv4.DHCPv4 {
	resp := newReply(req, t)
	resp.YourIPAddr = ip
	resp.UpdateOption(dhcpv4.OptServerIdentifier(s.cfg.ServerIP))
	resp.UpdateOption(dhcpv4.OptSubnetMask(s.cfg.Netmask))
	resp.UpdateOption(dhcpv4.OptIPAddressLeaseTime(s.cfg.LeaseTime))
	resp.UpdateOption(dhcpv4.OptRenewTimeValue(s.cfg.LeaseTime / 2))
	resp.UpdateOption(dhcpv4.OptRebindingTimeValue(s.cfg.LeaseTime * 7 / 8))
	if s.cfg.Router != nil {
		resp.UpdateOption(dhcpv4.OptRouter(s.cfg.Router))
	}
	if len(s.cfg.DNS) > 0 {
		resp.UpdateOption(dhcpv4.OptDNS(s.cfg.DNS...))
	}
	c := clientOf(req)
	choice, ok := chooseBootFile(c, s.BaseURL()+"/boot.ipxe")
	if ok {
		s.setBootFile(resp, choice)
		if c.IPXE {
			resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(175), ipxeNoProxyDHCP))
		}
	}
	s.logDecision(strings.ToLower(t.String()), req.ClientHWAddr, ip, c, choice.File)
	return resp
}

// answerProxyDHCP is the proxyDHCP server: boot information for PXE clients, never an
// address. On port 67 it answers DISCOVER with an OFFER (broadcast); on port 4011 it
// answers the client's REQUEST with an ACK sent back to the client's address.
func (s *Server) answerProxyDHCP(req *dhcpv4.DHCPv4, peer *net.UDPAddr, port int) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	c := clientOf(req)
	if !c.PXE && !c.IPXE {
		return nil, nil
	}
	var t dhcpv4.MessageType
	var dst *net.UDPAddr
	switch mt := req.MessageType(); {
	case port != pxePort && mt == dhcpv4.MessageTypeDiscover:
		t, dst = dhcpv4.MessageTypeOffer, &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
	case port == pxePort && (mt == dhcpv4.MessageTypeRequest || mt == dhcpv4.MessageTypeInform):
		t, dst = dhcpv4.MessageTypeAck, peer
		if peer.IP == nil || peer.IP.IsUnspecified() {
			dst = &net.UDPAddr{IP: net.IPv4bcast, Port: peer.Port}
		}
	default:
		return nil, nil
	}
	choice, ok := chooseBootFile(c, s.BaseURL()+"/boot.ipxe")
	if !ok {
		s.logDecision("none", req.ClientHWAddr, nil, c, "")
		return nil, nil
	}
	resp := newReply(req, t)
	resp.ClientIPAddr = req.ClientIPAddr
	resp.UpdateOption(dhcpv4.OptServerIdentifier(s.cfg.ServerIP))
	resp.UpdateOption(dhcpv4.OptClassIdentifier("PXEClient"))
	resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, pxeBootFileOnly))
	if v := req.Options.Get(dhcpv4.OptionClientMachineIdentifier); v != nil {
		// UEFI PXE ignores a proxy offer whose GUID (option 97) is not its own.
		resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, v))
	}
	s.setBootFile(resp, choice)
	s.logDecision("proxy "+strings.ToLower(t.String()), req.ClientHWAddr, nil, c, choice.File)
	return resp, dst
}

// setBootFile puts the boot file into resp: the BOOTP file field and option 67 (iPXE
// reads the field, some firmware the option), and for TFTP the server as siaddr and
// option 66.
func (s *Server) setBootFile(resp *dhcpv4.DHCPv4, choice bootChoice) {
	resp.ServerIPAddr = s.cfg.ServerIP
	if len(choice.File) < 128 {
		resp.BootFileName = choice.File
	}
	resp.UpdateOption(dhcpv4.OptBootFileName(choice.File))
	if choice.TFTP {
		resp.UpdateOption(dhcpv4.OptTFTPServerName(s.cfg.ServerIP.String()))
	}
}

// logDecision logs what a client was told: reply type, MAC, address, architecture,
// user class and boot file.
func (s *Server) logDecision(reply string, mac net.HardwareAddr, ip net.IP, c client, file string) {
	attrs := []any{"reply", reply, "mac", mac.String(), "ip", ipString(ip), "pxe", c.PXE, "ipxe", c.IPXE}
	if c.HasArch {
		attrs = append(attrs, "arch", uint16(c.Arch))
	}
	attrs = append(attrs, "user_class", c.UserClass, "file", file)
	s.log.Log(context.Background(), slog.LevelInfo, "dhcp reply", attrs...)
}

// cleanHostname keeps a client's hostname (option 12) only when it is a plausible
// DNS label sequence, so that odd bytes never reach logs or the lease file.
func cleanHostname(h string) string {
	if len(h) == 0 || len(h) > 63 {
		return ""
	}
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return ""
		}
	}
	return h
}
