// Package netcfg configures the supervisor's own network interfaces over netlink:
// it finds an interface by name or MAC address, brings it up, sets static addresses
// and the default route, and runs a DHCPv4 client for the uplink. Every function works
// in the network namespace of the calling OS thread.
package netcfg

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
)

// FindLink returns the interface named nameOrMAC, or the one with that MAC address
// (any case, colons or hyphens). When several have the MAC, as a bridge and its first
// port do, a physical interface wins. The error lists the interfaces there are.
func FindLink(nameOrMAC string) (netlink.Link, error) {
	if hw, err := net.ParseMAC(nameOrMAC); err == nil && len(hw) == 6 {
		links, err := netlink.LinkList()
		if err != nil {
			return nil, fmt.Errorf("find interface %s: list interfaces: %w", hw, err)
		}
		var best netlink.Link
		for _, l := range links {
			if bytes.Equal(l.Attrs().HardwareAddr, hw) && (best == nil || rank(l) < rank(best)) {
				best = l
			}
		}
		if best == nil {
			return nil, fmt.Errorf("find interface %s: no interface has this MAC address; the interfaces are %s", hw, available(links))
		}
		return best, nil
	}
	l, err := netlink.LinkByName(nameOrMAC)
	if err != nil {
		var notFound netlink.LinkNotFoundError
		if errors.As(err, &notFound) {
			links, _ := netlink.LinkList()
			return nil, fmt.Errorf("find interface %q: no interface has this name; the interfaces are %s (a MAC address works too)", nameOrMAC, available(links))
		}
		return nil, fmt.Errorf("find interface %q: %w", nameOrMAC, err)
	}
	return l, nil
}

// rank orders the interfaces that share a MAC address: physical first, then veth,
// then the rest (bridges, VLANs, bonds).
func rank(l netlink.Link) int {
	switch l.Type() {
	case "device":
		return 0
	case "veth":
		return 1
	}
	return 2
}

func available(links []netlink.Link) string {
	var s []string
	for _, l := range links {
		a := l.Attrs()
		if a.EncapType == "loopback" {
			continue
		}
		if len(a.HardwareAddr) > 0 {
			s = append(s, fmt.Sprintf("%s (%s)", a.Name, a.HardwareAddr))
		} else {
			s = append(s, a.Name)
		}
	}
	if len(s) == 0 {
		return "none (is the network card's driver loaded?)"
	}
	return strings.Join(s, ", ")
}

// Up brings the interface up.
func Up(link netlink.Link) error {
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("bring up %s: %w", link.Attrs().Name, err)
	}
	return nil
}

// AddressAdd puts the address on the interface; an address that is there already is
// not an error.
func AddressAdd(link netlink.Link, p netip.Prefix) error {
	if err := netlink.AddrReplace(link, toAddr(p)); err != nil {
		return fmt.Errorf("add address %s to %s: %w", p, link.Attrs().Name, err)
	}
	return nil
}

// AddressDel removes the address from the interface; an address that is not there is
// not an error.
func AddressDel(link netlink.Link, p netip.Prefix) error {
	if !slices.Contains(Addresses(link), p) {
		return nil
	}
	if err := netlink.AddrDel(link, toAddr(p)); err != nil {
		return fmt.Errorf("remove address %s from %s: %w", p, link.Attrs().Name, err)
	}
	return nil
}

func toAddr(p netip.Prefix) *netlink.Addr {
	a := p.Addr().Unmap()
	return &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(p.Bits(), a.BitLen())}}
}

// DefaultRoute sets the default route of gw's address family to go through gw on the
// interface, replacing the one there was.
func DefaultRoute(gw netip.Addr, link netlink.Link) error {
	gw = gw.Unmap()
	dst := &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
	family := netlink.FAMILY_V4
	if gw.Is6() {
		dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
		family = netlink.FAMILY_V6
	}
	route := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: dst, Gw: gw.AsSlice(), Family: family}
	if err := netlink.RouteReplace(route); err != nil {
		return fmt.Errorf("set default route via %s on %s: %w", gw, link.Attrs().Name, err)
	}
	return nil
}

// Physical returns the Ethernet interfaces that are network cards, sorted by name:
// not the loopback, bridges, VLANs or other virtual links. extra names link types to
// take as well ("veth" in tests).
func Physical(extra ...string) ([]netlink.Link, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	var out []netlink.Link
	for _, l := range links {
		a := l.Attrs()
		if a.EncapType != "ether" || len(a.HardwareAddr) != 6 {
			continue
		}
		if l.Type() == "device" || slices.Contains(extra, l.Type()) {
			out = append(out, l)
		}
	}
	slices.SortFunc(out, func(a, b netlink.Link) int { return strings.Compare(a.Attrs().Name, b.Attrs().Name) })
	return out, nil
}

// Addresses returns the interface's addresses with their prefix lengths; none when
// they cannot be read.
func Addresses(link netlink.Link) []netip.Prefix {
	addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil
	}
	var out []netip.Prefix
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ones, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
	}
	return out
}
