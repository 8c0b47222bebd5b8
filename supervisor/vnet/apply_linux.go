package vnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"regexp"
	"runtime"
	"slices"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Alias is the netlink alias on every link Cairn makes.
const Alias = "cairn"

// VXLANPort is the UDP port of the VXLAN links (IANA's).
const VXLANPort = 4789

var ownName = regexp.MustCompile(`^c(br|vx)[0-9]+$`)

// Node applies States to one network namespace.
type Node struct {
	// NS is the namespace to change; zero or netns.None() means the namespace of the
	// calling thread at the time of Apply.
	NS netns.NsHandle
	// Logger receives what Apply changed; nil means slog.Default().
	Logger *slog.Logger
}

// Apply makes the caller's network namespace match desired; see Node.Apply.
func Apply(ctx context.Context, desired State) error {
	return (&Node{NS: netns.None()}).Apply(ctx, desired)
}

// Apply makes the node's namespace match desired: it creates and updates Cairn's links,
// addresses, VXLAN flood entries and the nftables table, and removes those that desired
// no longer has. Applying the same State twice changes nothing the second time, except
// that the nftables table is replaced by an identical one.
func (n *Node) Apply(ctx context.Context, desired State) error {
	if err := desired.Validate(); err != nil {
		return fmt.Errorf("vnet apply: %w", err)
	}
	log := n.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "vnet")
	ns := n.NS
	if ns <= 0 {
		cur, err := netns.Get()
		if err != nil {
			return fmt.Errorf("vnet apply: open current network namespace: %w", err)
		}
		defer cur.Close()
		ns = cur
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("vnet apply: netlink in namespace: %w", err)
	}
	defer h.Close()
	r := &reconciler{h: h, log: log}
	if desired.Uplink != "" && slices.ContainsFunc(desired.Networks, externalGateway) {
		// The external segments' bridges carry the uplink's address.
		if r.uplink, err = uplinkAddr(h, desired.Uplink); err != nil {
			return fmt.Errorf("vnet apply: %w", err)
		}
	}
	if err := r.links(ctx, desired); err != nil {
		return fmt.Errorf("vnet apply: %w", err)
	}
	if err := r.externalAddrs(desired); err != nil {
		return fmt.Errorf("vnet apply: %w", err)
	}
	if err := r.routes(desired); err != nil {
		return fmt.Errorf("vnet apply: %w", err)
	}
	if err := r.proxies(ns, desired); err != nil {
		return fmt.Errorf("vnet apply: %w", err)
	}
	if err := inNS(ns, func() error { return sysctls(desired, r.uplink.IsValid()) }); err != nil {
		return fmt.Errorf("vnet apply: %w", err)
	}
	if err := applyRules(ns, desired, log); err != nil {
		return fmt.Errorf("vnet apply: %w", err)
	}
	return nil
}

type reconciler struct {
	h   *netlink.Handle
	log *slog.Logger
	// uplink is the uplink's address when an external segment's gateway is here.
	uplink netip.Prefix
}

// sysctls turns on forwarding on a node with a gateway (and leaves it on), and proxy
// ARP on the bridges of external segments: their servers ARP for every address of the
// uplink's network, such as the uplink's router, and the admin answers and routes.
// A proxy reply is not delayed (proxy_delay), as there is no other router to prefer.
func sysctls(s State, haveUplink bool) error {
	if slices.ContainsFunc(s.Networks, func(n Network) bool { return n.Gateway }) {
		if err := writeSysctl("/proc/sys/net/ipv4/ip_forward", "1"); err != nil {
			return fmt.Errorf("enable ip forwarding: %w", err)
		}
	}
	for _, n := range s.Networks {
		on := externalGateway(n) && haveUplink
		v := "0"
		if on {
			v = "1"
			if err := writeSysctl("/proc/sys/net/ipv4/neigh/"+BridgeName(n.ID)+"/proxy_delay", "0"); err != nil {
				return fmt.Errorf("proxy arp delay on %s: %w", BridgeName(n.ID), err)
			}
		}
		if err := writeSysctl("/proc/sys/net/ipv4/conf/"+BridgeName(n.ID)+"/proxy_arp", v); err != nil {
			return fmt.Errorf("proxy arp on %s: %w", BridgeName(n.ID), err)
		}
	}
	return nil
}

func isOwn(l netlink.Link) bool {
	a := l.Attrs()
	return ownName.MatchString(a.Name) || a.Alias == Alias
}

func (r *reconciler) links(ctx context.Context, s State) error {
	want := map[string]bool{}
	for _, nw := range s.Networks {
		want[BridgeName(nw.ID)] = true
		if s.Underlay != "" {
			want[VXLANName(nw.ID)] = true
		}
	}
	all, err := r.h.LinkList()
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	for _, l := range all {
		if isOwn(l) && !want[l.Attrs().Name] {
			if err := r.h.LinkDel(l); err != nil {
				return fmt.Errorf("delete link %s: %w", l.Attrs().Name, err)
			}
			r.log.Info("link removed", "link", l.Attrs().Name)
		}
	}
	var under netlink.Link
	var local net.IP
	if s.Underlay != "" {
		if under, err = r.h.LinkByName(s.Underlay); err != nil {
			return fmt.Errorf("underlay %s: %w (set Underlay to the LAN interface)", s.Underlay, err)
		}
		addrs, err := r.h.AddrList(under, netlink.FAMILY_V4)
		if err != nil {
			return fmt.Errorf("underlay %s addresses: %w", s.Underlay, err)
		}
		for _, a := range addrs {
			if a.Scope == unix.RT_SCOPE_UNIVERSE {
				local = a.IP
				break
			}
		}
		if local == nil {
			return fmt.Errorf("underlay %s has no IPv4 address: give the LAN interface an address first", s.Underlay)
		}
	}
	for _, nw := range s.Networks {
		if err := ctx.Err(); err != nil {
			return err
		}
		br, err := r.bridge(nw)
		if err != nil {
			return err
		}
		if under != nil {
			if err := r.vxlan(nw, br, under, local, s.Peers); err != nil {
				return err
			}
		}
	}
	return nil
}

func (r *reconciler) bridge(nw Network) (netlink.Link, error) {
	name := BridgeName(nw.ID)
	l, err := r.h.LinkByName(name)
	if err == nil {
		if _, ok := l.(*netlink.Bridge); !ok {
			if err := r.h.LinkDel(l); err != nil {
				return nil, fmt.Errorf("replace link %s: %w", name, err)
			}
			l = nil
		}
	} else if !errors.As(err, new(netlink.LinkNotFoundError)) {
		return nil, fmt.Errorf("look up bridge %s: %w", name, err)
	} else {
		l = nil
	}
	if l == nil {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
		if err := r.h.LinkAdd(br); err != nil {
			return nil, fmt.Errorf("create bridge %s: %w", name, err)
		}
		r.log.Info("bridge created", "link", name)
		if l, err = r.h.LinkByName(name); err != nil {
			return nil, fmt.Errorf("look up bridge %s: %w", name, err)
		}
	}
	if err := r.own(l); err != nil {
		return nil, err
	}
	if nw.Gateway {
		// The gateway keeps its MAC address across reboots of the admin, so servers'
		// ARP caches stay right and they reach the outside at once when it is back.
		if mac := GatewayMAC(nw.ID); l.Attrs().HardwareAddr.String() != mac.String() {
			if err := r.h.LinkSetHardwareAddr(l, mac); err != nil {
				return nil, fmt.Errorf("set the gateway MAC of %s: %w", name, err)
			}
		}
	}
	var want *netlink.Addr
	switch {
	case nw.Gateway && !nw.External:
		gw := nw.Prefix.Addr().Next()
		want = &netlink.Addr{IPNet: &net.IPNet{IP: gw.AsSlice(), Mask: net.CIDRMask(nw.Prefix.Bits(), 32)}}
	case nw.Gateway && r.uplink.IsValid():
		// As a /32: the uplink keeps the route to its network, the servers reach the
		// admin at the uplink's address, and DHCP names it router and server.
		want = &netlink.Addr{IPNet: &net.IPNet{IP: r.uplink.Addr().AsSlice(), Mask: net.CIDRMask(32, 32)}}
	}
	addrs, err := r.h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", name, err)
	}
	have := false
	for _, a := range addrs {
		if want != nil && a.IPNet.String() == want.IPNet.String() {
			have = true
			continue
		}
		if err := r.h.AddrDel(l, &a); err != nil {
			return nil, fmt.Errorf("remove address %s from %s: %w", a.IPNet, name, err)
		}
	}
	if want != nil && !have {
		if err := r.h.AddrAdd(l, want); err != nil {
			return nil, fmt.Errorf("add gateway %s to %s: %w", want.IPNet, name, err)
		}
		r.log.Info("gateway added", "link", name, "addr", want.IPNet.String())
	}
	return l, nil
}

// own sets the alias and brings l up, only when needed so that a repeated Apply is quiet.
func (r *reconciler) own(l netlink.Link) error {
	a := l.Attrs()
	if a.Alias != Alias {
		if err := r.h.LinkSetAlias(l, Alias); err != nil {
			return fmt.Errorf("set alias of %s: %w", a.Name, err)
		}
	}
	if a.Flags&net.FlagUp == 0 {
		if err := r.h.LinkSetUp(l); err != nil {
			return fmt.Errorf("bring up %s: %w", a.Name, err)
		}
	}
	return nil
}

func (r *reconciler) vxlan(nw Network, br, under netlink.Link, local net.IP, peers []netip.Addr) error {
	name := VXLANName(nw.ID)
	l, err := r.h.LinkByName(name)
	if err == nil {
		v, ok := l.(*netlink.Vxlan)
		if !ok || v.VxlanId != nw.ID || !v.SrcAddr.Equal(local) || v.VtepDevIndex != under.Attrs().Index || v.Port != VXLANPort {
			if err := r.h.LinkDel(l); err != nil {
				return fmt.Errorf("replace link %s: %w", name, err)
			}
			r.log.Info("vxlan replaced", "link", name)
			l = nil
		}
	} else if !errors.As(err, new(netlink.LinkNotFoundError)) {
		return fmt.Errorf("look up vxlan %s: %w", name, err)
	} else {
		l = nil
	}
	if l == nil {
		v := &netlink.Vxlan{
			LinkAttrs:    netlink.LinkAttrs{Name: name},
			VxlanId:      nw.ID,
			VtepDevIndex: under.Attrs().Index,
			SrcAddr:      local,
			Port:         VXLANPort,
			Learning:     true,
		}
		if err := r.h.LinkAdd(v); err != nil {
			return fmt.Errorf("create vxlan %s on %s: %w", name, under.Attrs().Name, err)
		}
		r.log.Info("vxlan created", "link", name, "vni", nw.ID)
		if l, err = r.h.LinkByName(name); err != nil {
			return fmt.Errorf("look up vxlan %s: %w", name, err)
		}
	}
	if l.Attrs().MasterIndex != br.Attrs().Index {
		if err := r.h.LinkSetMaster(l, br); err != nil {
			return fmt.Errorf("attach %s to %s: %w", name, br.Attrs().Name, err)
		}
	}
	if err := r.own(l); err != nil {
		return err
	}
	return r.flood(l, peers)
}

// flood keeps one all-zero FDB entry per peer (head-end replication of broadcast and
// unknown unicast) and removes the entries of peers that are gone.
func (r *reconciler) flood(l netlink.Link, peers []netip.Addr) error {
	zero := net.HardwareAddr{0, 0, 0, 0, 0, 0}
	want := map[netip.Addr]bool{}
	for _, p := range peers {
		want[p] = true
	}
	neighs, err := r.h.NeighList(l.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		return fmt.Errorf("list fdb of %s: %w", l.Attrs().Name, err)
	}
	for _, n := range neighs {
		if n.HardwareAddr.String() != zero.String() || n.IP == nil {
			continue
		}
		a, ok := netip.AddrFromSlice(n.IP)
		if ok && want[a.Unmap()] {
			delete(want, a.Unmap())
			continue
		}
		if err := r.h.NeighDel(&n); err != nil {
			return fmt.Errorf("remove flood entry %s from %s: %w", n.IP, l.Attrs().Name, err)
		}
	}
	for _, p := range peers {
		if !want[p] {
			continue
		}
		n := &netlink.Neigh{
			LinkIndex:    l.Attrs().Index,
			Family:       unix.AF_BRIDGE,
			State:        netlink.NUD_PERMANENT | netlink.NUD_NOARP,
			Flags:        netlink.NTF_SELF,
			IP:           p.AsSlice(),
			HardwareAddr: zero,
		}
		if err := r.h.NeighAppend(n); err != nil {
			return fmt.Errorf("add flood entry %s to %s: %w", p, l.Attrs().Name, err)
		}
	}
	return nil
}

// externalAddrs keeps the mapped external addresses as /32s labelled "<uplink>:cairn"
// on the uplink, and removes such labelled addresses from every other link.
func (r *reconciler) externalAddrs(s State) error {
	want := map[netip.Addr]bool{}
	for _, m := range s.Mappings {
		want[m.External] = true
	}
	all, err := r.h.LinkList()
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	var up netlink.Link
	for _, l := range all {
		name := l.Attrs().Name
		if name == s.Uplink {
			up = l
		}
		addrs, err := r.h.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			return fmt.Errorf("list addresses of %s: %w", name, err)
		}
		for _, a := range addrs {
			if a.Label != name+labelSuffix {
				continue
			}
			ip, _ := netip.AddrFromSlice(a.IP)
			if ones, _ := a.Mask.Size(); name == s.Uplink && ones == 32 && want[ip.Unmap()] {
				delete(want, ip.Unmap())
				continue
			}
			if err := r.h.AddrDel(l, &a); err != nil {
				return fmt.Errorf("remove external address %s from %s: %w", a.IPNet, name, err)
			}
			r.log.Info("external address removed", "link", name, "addr", a.IPNet.String())
		}
	}
	if s.Uplink == "" {
		return nil
	}
	if up == nil {
		return fmt.Errorf("uplink %s not found: set Uplink to the admin's outside interface", s.Uplink)
	}
	for _, m := range s.Mappings {
		if !want[m.External] {
			continue
		}
		a := &netlink.Addr{IPNet: &net.IPNet{IP: m.External.AsSlice(), Mask: net.CIDRMask(32, 32)}, Label: s.Uplink + labelSuffix}
		if err := r.h.AddrAdd(up, a); err != nil {
			return fmt.Errorf("add external address %s to %s: %w", m.External, s.Uplink, err)
		}
		r.log.Info("external address added", "link", s.Uplink, "addr", m.External.String())
	}
	return nil
}

// inNS runs f on an OS thread that is in ns (for /proc/sys, which follows the thread).
func inNS(ns netns.NsHandle, f func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	ferr := f()
	if err := netns.Set(orig); err != nil {
		// The thread stays in the wrong namespace: keep it locked so it dies with us.
		return fmt.Errorf("return to namespace: %w", err)
	}
	runtime.UnlockOSThread()
	return ferr
}

func writeSysctl(path, v string) error {
	if b, err := os.ReadFile(path); err == nil && string(b) == v+"\n" {
		return nil
	}
	return os.WriteFile(path, []byte(v), 0o644)
}
