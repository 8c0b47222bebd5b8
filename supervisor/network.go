package supervisor

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/cairn-os/cairn/supervisor/netcfg"
	"github.com/cairn-os/cairn/supervisor/settings"
	"github.com/vishvananda/netlink"
)

// adminNetwork is how the admin node ended up connected.
type adminNetwork struct {
	uplinkLink string
	uplink     []netip.Prefix
	lanLink    string
	lan        netip.Prefix
	pxe        string
	pxeNote    string
}

// consoleURL is the address people use: the uplink's first address, else the LAN's.
func (n adminNetwork) consoleURL(port int) string {
	host := ""
	for _, p := range n.uplink {
		if p.Addr().Is4() {
			host = p.Addr().String()
			break
		}
	}
	if host == "" && n.lan.IsValid() {
		host = n.lan.Addr().String()
	}
	if host == "" {
		host = "localhost"
	}
	if port == 443 {
		return "https://" + host + "/"
	}
	return "https://" + net.JoinHostPort(host, strconv.Itoa(port)) + "/"
}

// addresses are the IPs the HTTPS certificate must name.
func (n adminNetwork) addresses() []net.IP {
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	for _, p := range append(append([]netip.Prefix(nil), n.uplink...), n.lan) {
		if p.IsValid() {
			ips = append(ips, net.IP(p.Addr().AsSlice()))
		}
	}
	return ips
}

func (n adminNetwork) pxeSummary() string {
	s := n.pxe
	if n.pxe != "off" {
		s = fmt.Sprintf("%s on %s (%s)", n.pxe, n.lanLink, n.lan)
	}
	if n.pxeNote != "" {
		s += " — " + n.pxeNote
	}
	return s
}

// setupAdminNetwork brings up the uplink (DHCP or static) and the LAN the compute
// nodes boot from. With one NIC the LAN is the uplink, and PXE never hands out
// addresses there (proxyDHCP only): a second DHCP server on someone's network is the
// surest way to break it.
func setupAdminNetwork(ctx context.Context, logger *slog.Logger, s settings.Settings) (adminNetwork, error) {
	log := logger.With("component", "network")
	nw := adminNetwork{pxe: s.PXE, lan: s.LAN.Address}
	if lo, err := netlink.LinkByName("lo"); err == nil {
		netlink.LinkSetUp(lo)
	}
	phys, err := netcfg.Physical()
	if err != nil {
		return nw, fmt.Errorf("list network interfaces: %w", err)
	}
	pick := func(want string, index int) (netlink.Link, error) {
		if want != "" {
			return netcfg.FindLink(want)
		}
		if index < len(phys) {
			return phys[index], nil
		}
		return nil, nil
	}
	uplink, err := pick(s.Uplink.Interface, 0)
	if err != nil {
		return nw, fmt.Errorf("uplink.interface: %w", err)
	}
	lan, err := pick(s.LAN.Interface, 1)
	if err != nil {
		return nw, fmt.Errorf("lan.interface: %w", err)
	}
	if uplink == nil {
		nw.pxe = "off"
		return nw, fmt.Errorf("no network interface found")
	}
	nw.uplinkLink = uplink.Attrs().Name
	if err := netcfg.Up(uplink); err != nil {
		return nw, err
	}
	if s.Uplink.DHCP {
		opts := []netcfg.DHCPOption{netcfg.WithResolvConf("/etc/resolv.conf"), netcfg.WithHostname(s.Hostname)}
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		lease, err := netcfg.DHCP(dctx, uplink, logger, opts...)
		cancel()
		if err != nil {
			log.Error("uplink dhcp", "interface", nw.uplinkLink, "err", err)
		} else {
			// Renew half-way through the lease, or the DHCP server gives the address
			// to another machine while it is still on our link.
			go netcfg.Maintain(ctx, uplink, lease, logger, opts...)
		}
	} else if s.Uplink.Address.IsValid() {
		if err := netcfg.AddressAdd(uplink, s.Uplink.Address); err != nil {
			log.Error("uplink address", "err", err)
		}
		if s.Uplink.Gateway.IsValid() {
			if err := netcfg.DefaultRoute(s.Uplink.Gateway, uplink); err != nil {
				log.Error("uplink gateway", "err", err)
			}
		}
	}
	nw.uplink = netcfg.Addresses(uplink)

	if lan == nil || lan.Attrs().Name == nw.uplinkLink {
		// One NIC: the LAN is the uplink's network.
		nw.lanLink = nw.uplinkLink
		for _, p := range nw.uplink {
			if p.Addr().Is4() {
				nw.lan = p
				break
			}
		}
		if nw.pxe == "dhcp" && s.Uplink.DHCP {
			nw.pxe, nw.pxeNote = "proxy", "one network interface: answering PXE only, the LAN's DHCP server gives addresses"
		}
		if !nw.lan.IsValid() {
			nw.pxe, nw.pxeNote = "off", "the uplink has no IPv4 address"
		}
		return nw, nil
	}
	nw.lanLink = lan.Attrs().Name
	if err := netcfg.Up(lan); err != nil {
		return nw, err
	}
	if err := netcfg.AddressAdd(lan, s.LAN.Address); err != nil {
		return nw, fmt.Errorf("lan.address %s on %s: %w", s.LAN.Address, nw.lanLink, err)
	}
	log.Info("network ready", "uplink", nw.uplinkLink, "addresses", nw.uplink, "lan", nw.lanLink, "lan_address", nw.lan, "pxe", nw.pxe)
	return nw, nil
}
