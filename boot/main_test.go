package boot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/iana"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

// The host tests run real clients inside a network namespace. Clients that need
// options no stock program sends (77 "iPXE", 93) are this test binary, re-executed
// there with helperEnv naming the scenario; it prints a helperResult as JSON.
const helperEnv = "CAIRN_BOOT_HELPER"

func TestMain(m *testing.M) {
	if scenario := os.Getenv(helperEnv); scenario != "" {
		res := runHelper(scenario)
		json.NewEncoder(os.Stdout).Encode(res)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type helperReply struct {
	Type     string
	YourIP   string
	ServerIP string // siaddr
	ServerID string // option 54
	File     string // BOOTP file field
	Opt67    string
	Opt66    string
	Opt60    string
	Opt43    []byte
	Opt175   []byte
}

type helperRA struct {
	HopLimit int
	Lifetime int
	From     string
}

type helperResult struct {
	Err     string
	Replies []helperReply
	RA      *helperRA
}

func replyOf(m *dhcpv4.DHCPv4) helperReply {
	return helperReply{
		Type:     m.MessageType().String(),
		YourIP:   m.YourIPAddr.String(),
		ServerIP: m.ServerIPAddr.String(),
		ServerID: ipString(m.ServerIdentifier()),
		File:     m.BootFileName,
		Opt67:    m.BootFileNameOption(),
		Opt66:    m.TFTPServerName(),
		Opt60:    m.ClassIdentifier(),
		Opt43:    m.Options.Get(dhcpv4.OptionVendorSpecificInformation),
		Opt175:   m.Options.Get(dhcpv4.GenericOptionCode(175)),
	}
}

// helperMods builds the client's options from CAIRN_HELPER_VENDOR (option 60),
// CAIRN_HELPER_USERCLASS (option 77, iPXE's bare form) and CAIRN_HELPER_ARCH (93).
func helperMods() []dhcpv4.Modifier {
	var mods []dhcpv4.Modifier
	if v := os.Getenv("CAIRN_HELPER_VENDOR"); v != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptClassIdentifier(v)))
	}
	if v := os.Getenv("CAIRN_HELPER_USERCLASS"); v != "" {
		mods = append(mods, dhcpv4.WithUserClass(v, false))
	}
	if v := os.Getenv("CAIRN_HELPER_ARCH"); v != "" {
		a, _ := strconv.Atoi(v)
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptClientArch(iana.Arch(a))))
	}
	return mods
}

func runHelper(scenario string) (res helperResult) {
	fail := func(err error) helperResult { res.Err = err.Error(); return res }
	mac, _ := net.ParseMAC(os.Getenv("CAIRN_HELPER_MAC"))
	timeout := 2 * time.Second
	if v, err := strconv.Atoi(os.Getenv("CAIRN_HELPER_TIMEOUT_MS")); err == nil {
		timeout = time.Duration(v) * time.Millisecond
	}
	ctx := context.Background()
	switch scenario {
	case "dhcp":
		c, err := nclient4.New(os.Getenv("CAIRN_HELPER_IFACE"), nclient4.WithHWAddr(mac),
			nclient4.WithTimeout(timeout), nclient4.WithRetry(2))
		if err != nil {
			return fail(err)
		}
		defer c.Close()
		switch step := os.Getenv("CAIRN_HELPER_STEP"); step {
		case "offer":
			offer, err := c.DiscoverOffer(ctx, helperMods()...)
			if err != nil {
				return fail(err)
			}
			res.Replies = append(res.Replies, replyOf(offer))
		case "lease":
			lease, err := c.Request(ctx, helperMods()...)
			var nak *nclient4.ErrNak
			if errors.As(err, &nak) {
				res.Replies = append(res.Replies, replyOf(nak.Offer), replyOf(nak.Nak))
				return res
			}
			if err != nil {
				return fail(err)
			}
			res.Replies = append(res.Replies, replyOf(lease.Offer), replyOf(lease.ACK))
		case "reboot": // INIT-REBOOT: ask for a remembered address without DISCOVER
			req, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(mac),
				dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
				dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(os.Getenv("CAIRN_HELPER_REQIP"))))},
				helperMods()...)...)
			if err != nil {
				return fail(err)
			}
			resp, err := c.SendAndRead(ctx, c.RemoteAddr(), req, nclient4.IsMessageType(dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak))
			if err != nil {
				return fail(err)
			}
			res.Replies = append(res.Replies, replyOf(resp))
		default:
			return fail(fmt.Errorf("unknown step %q", step))
		}
	case "pxe4011": // a PXE client's ProxyDHCP REQUEST, unicast to the server's port 4011
		ciaddr := net.ParseIP(os.Getenv("CAIRN_HELPER_CIADDR"))
		req, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(mac),
			dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(ciaddr)}, helperMods()...)...)
		if err != nil {
			return fail(err)
		}
		conn, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.ParseIP(os.Getenv("CAIRN_HELPER_SERVER")), Port: pxePort})
		if err != nil {
			return fail(err)
		}
		defer conn.Close()
		if _, err := conn.Write(req.ToBytes()); err != nil {
			return fail(err)
		}
		conn.SetReadDeadline(time.Now().Add(timeout))
		buf := make([]byte, 1500)
		n, err := conn.Read(buf)
		if err != nil {
			return fail(err)
		}
		resp, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			return fail(err)
		}
		res.Replies = append(res.Replies, replyOf(resp))
	case "rs":
		ra, err := solicitRouter(os.Getenv("CAIRN_HELPER_IFACE"), 8*time.Second)
		if err != nil {
			return fail(err)
		}
		res.RA = ra
	default:
		return fail(fmt.Errorf("unknown scenario %q", scenario))
	}
	return res
}

// solicitRouter sends router solicitations on ifname, as iPXE does, until a router
// advertisement arrives. It retries because the link-local address may still be
// tentative (duplicate address detection) right after the link came up.
func solicitRouter(ifname string, within time.Duration) (*helperRA, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, err
	}
	c, err := icmp.ListenPacket("ip6:ipv6-icmp", "::")
	if err != nil {
		return nil, err
	}
	defer c.Close()
	pc := c.IPv6PacketConn()
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeRouterAdvertisement)
	pc.SetICMPFilter(&f)
	pc.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagInterface, true)
	rs := []byte{133, 0, 0, 0, 0, 0, 0, 0}
	deadline := time.Now().Add(within)
	var lastErr error
	buf := make([]byte, 1500)
	for time.Now().Before(deadline) {
		_, err := pc.WriteTo(rs, &ipv6.ControlMessage{HopLimit: 255, IfIndex: ifi.Index},
			&net.IPAddr{IP: net.ParseIP("ff02::2"), Zone: ifname})
		if err != nil {
			lastErr = err
			time.Sleep(200 * time.Millisecond)
			continue
		}
		pc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		for {
			n, cm, src, err := pc.ReadFrom(buf)
			if err != nil {
				lastErr = err
				break
			}
			if n >= 16 && buf[0] == 134 && cm != nil && cm.IfIndex == ifi.Index {
				return &helperRA{HopLimit: cm.HopLimit, Lifetime: int(buf[6])<<8 | int(buf[7]), From: src.String()}, nil
			}
		}
	}
	return nil, fmt.Errorf("no router advertisement within %s: %v", within, lastErr)
}
