package vnet

import (
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ownProto is the rtnetlink protocol number on the routes and proxy entries Cairn
// makes ("proto 202" in ip(8)), so that they are recognised on any link.
const ownProto = 202

// UplinkAddress returns the first IPv4 address of interface name in namespace ns
// (zero or netns.None(): the caller's) with its prefix length, such as
// 198.51.100.2/24. The external addresses Cairn maps or routes are not counted.
func UplinkAddress(ns netns.NsHandle, name string) (netip.Prefix, error) {
	h, err := handleAt(ns)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("uplink %s: netlink in namespace: %w", name, err)
	}
	defer h.Close()
	return uplinkAddr(h, name)
}

func handleAt(ns netns.NsHandle) (*netlink.Handle, error) {
	if ns <= 0 {
		return netlink.NewHandle(unix.NETLINK_ROUTE)
	}
	return netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
}

func uplinkAddr(h *netlink.Handle, name string) (netip.Prefix, error) {
	l, err := h.LinkByName(name)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("uplink %s: %w (set Uplink to the admin's outside interface)", name, err)
	}
	addrs, err := h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("uplink %s addresses: %w", name, err)
	}
	for _, a := range addrs {
		if a.Scope != unix.RT_SCOPE_UNIVERSE || a.Label == name+labelSuffix {
			continue
		}
		ip, ok := netip.AddrFromSlice(a.IP.To4())
		ones, _ := a.Mask.Size()
		if ok {
			return netip.PrefixFrom(ip, ones), nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("uplink %s has no IPv4 address: give the outside interface its address first, external addresses come from its network", name)
}

// externalGateway reports whether n is an external segment whose routing this node does.
func externalGateway(n Network) bool { return n.Gateway && n.External }

// routes keeps one route <addr>/32 dev cbr<ID> per routed address of the external
// segments, and removes the other routes tagged with ownProto. The routes of a
// segment also vanish with its bridge.
func (r *reconciler) routes(s State) error {
	type key struct {
		dst  netip.Addr
		link int
	}
	want := map[key]bool{}
	var order []key
	for _, n := range s.Networks {
		if !externalGateway(n) || len(n.Routed) == 0 {
			continue
		}
		br, err := r.h.LinkByName(BridgeName(n.ID))
		if err != nil {
			return fmt.Errorf("look up bridge %s: %w", BridgeName(n.ID), err)
		}
		for _, a := range n.Routed {
			if a == r.uplink.Addr() {
				return fmt.Errorf("network %d: routed address %s is the uplink's own address", n.ID, a)
			}
			k := key{a, br.Attrs().Index}
			want[k] = true
			order = append(order, k)
		}
	}
	have, err := r.h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: ownProto, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	for _, rt := range have {
		var k key
		if rt.Dst != nil {
			if ones, _ := rt.Dst.Mask.Size(); ones == 32 {
				k.dst, _ = netip.AddrFromSlice(rt.Dst.IP.To4())
			}
		}
		k.link = rt.LinkIndex
		if want[k] {
			delete(want, k)
			continue
		}
		if err := r.h.RouteDel(&rt); err != nil {
			return fmt.Errorf("remove route %s: %w", rt.Dst, err)
		}
		r.log.Info("route removed", "dst", rt.Dst.String())
	}
	for _, k := range order {
		if !want[k] {
			continue
		}
		rt := &netlink.Route{
			LinkIndex: k.link,
			Dst:       &net.IPNet{IP: k.dst.AsSlice(), Mask: net.CIDRMask(32, 32)},
			Scope:     netlink.SCOPE_LINK,
			Protocol:  ownProto,
			Table:     unix.RT_TABLE_MAIN,
		}
		// Replace, not add: the address may still have a route to another segment
		// (a server that moved) that is not ours, or the kernel's.
		if err := r.h.RouteReplace(rt); err != nil {
			return fmt.Errorf("add route %s/32: %w", k.dst, err)
		}
		r.log.Info("route added", "dst", k.dst.String(), "link", k.link)
	}
	return nil
}

// proxyEntry is one IPv4 proxy neighbour entry (ip neigh ... proxy).
type proxyEntry struct {
	link  int
	addr  netip.Addr
	proto uint8
}

// proxies keeps one proxy neighbour entry on the uplink per routed address, so that
// the admin answers ARP for the servers' external addresses there. Cairn owns every
// IPv4 proxy entry on the uplink, and those tagged with ownProto on any link: the
// others on the uplink are removed, which also covers entries made before a restart.
func (r *reconciler) proxies(ns netns.NsHandle, s State) error {
	want := map[netip.Addr]bool{}
	var order []netip.Addr
	for _, n := range s.Networks {
		if externalGateway(n) {
			for _, a := range n.Routed {
				want[a] = true
				order = append(order, a)
			}
		}
	}
	up := 0
	if s.Uplink != "" {
		l, err := r.h.LinkByName(s.Uplink)
		if err != nil {
			return fmt.Errorf("uplink %s: %w (set Uplink to the admin's outside interface)", s.Uplink, err)
		}
		up = l.Attrs().Index
	}
	sock, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink socket in namespace: %w", err)
	}
	sh := &nl.SocketHandle{Socket: sock}
	defer sh.Close()
	have, err := proxyList(sh)
	if err != nil {
		return fmt.Errorf("list proxy neighbour entries: %w", err)
	}
	for _, e := range have {
		onUplink := up != 0 && e.link == up
		if !onUplink && e.proto != ownProto {
			continue
		}
		if onUplink && want[e.addr] {
			if e.proto == ownProto {
				delete(want, e.addr)
			}
			continue // else added again below, which tags it
		}
		if err := proxyChange(sh, unix.RTM_DELNEIGH, 0, e); err != nil {
			return fmt.Errorf("remove proxy entry %s on link %d: %w", e.addr, e.link, err)
		}
		r.log.Info("proxy entry removed", "addr", e.addr.String(), "link", e.link)
	}
	for _, a := range order {
		if !want[a] {
			continue
		}
		delete(want, a)
		if err := proxyChange(sh, unix.RTM_NEWNEIGH, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, proxyEntry{link: up, addr: a, proto: ownProto}); err != nil {
			return fmt.Errorf("add proxy entry %s on %s: %w", a, s.Uplink, err)
		}
		r.log.Info("proxy entry added", "addr", a.String(), "link", s.Uplink)
	}
	return nil
}

// proxyList dumps the IPv4 proxy entries with their protocol, which the netlink
// package's Neigh does not carry.
func proxyList(sh *nl.SocketHandle) ([]proxyEntry, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETNEIGH, unix.NLM_F_DUMP)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: sh}
	req.AddData(&netlink.Ndmsg{Family: unix.AF_INET, Flags: netlink.NTF_PROXY})
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWNEIGH)
	if err != nil {
		return nil, err
	}
	var out []proxyEntry
	for _, m := range msgs {
		if len(m) < unix.SizeofNdMsg {
			continue
		}
		// struct ndmsg: family, 3 bytes padding, ifindex, state (2), flags, type.
		family, flags := m[0], m[10]
		if family != unix.AF_INET || flags&netlink.NTF_PROXY == 0 {
			continue
		}
		e := proxyEntry{link: int(int32(nl.NativeEndian().Uint32(m[4:8])))}
		attrs, err := nl.ParseRouteAttr(m[unix.SizeofNdMsg:])
		if err != nil {
			return nil, err
		}
		for _, a := range attrs {
			switch a.Attr.Type {
			case netlink.NDA_DST:
				e.addr, _ = netip.AddrFromSlice(a.Value)
			case netlink.NDA_PROTOCOL:
				if len(a.Value) > 0 {
					e.proto = a.Value[0]
				}
			}
		}
		if e.addr.Is4() {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b proxyEntry) int { return a.addr.Compare(b.addr) })
	return out, nil
}

// proxyChange adds or deletes the proxy entry e.
func proxyChange(sh *nl.SocketHandle, typ, flags int, e proxyEntry) error {
	req := nl.NewNetlinkRequest(typ, flags|unix.NLM_F_ACK)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: sh}
	req.AddData(&netlink.Ndmsg{Family: unix.AF_INET, Index: uint32(e.link), Flags: netlink.NTF_PROXY})
	req.AddData(nl.NewRtAttr(netlink.NDA_DST, e.addr.AsSlice()))
	if e.proto != 0 {
		req.AddData(nl.NewRtAttr(netlink.NDA_PROTOCOL, nl.Uint8Attr(e.proto)))
	}
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}
