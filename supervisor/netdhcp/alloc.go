// Package netdhcp gives Cairn's internal networks their addresses: it picks a free /24
// inside 10.0.0.0/8 for each network and an address for each server in it, and it runs
// the DHCPv4 server that hands every known server its fixed address, gateway, DNS
// servers, routes and MTU on the network's bridge (also on external segments, with
// the uplink's network and address).
//
// The allocation functions are pure: the engine calls them inside one store
// transaction with the prefixes and addresses already taken, and that transaction is
// what keeps two concurrent creates from getting the same /24.
package netdhcp

import (
	"errors"
	"fmt"
	"net/netip"
)

// Errors the allocation functions and the server's configuration wrap, so callers can
// map them to a status (400 for ErrInvalid, 409 for ErrOverlap and ErrExhausted).
var (
	// ErrInvalid means a prefix, address or lease is malformed or out of range.
	ErrInvalid = errors.New("invalid")
	// ErrOverlap means a prefix collides with a network in use or a reserved range.
	ErrOverlap = errors.New("overlaps")
	// ErrExhausted means no /24 or host address is left.
	ErrExhausted = errors.New("no address left")
)

// Space is the range internal networks are allocated from.
var Space = netip.MustParsePrefix("10.0.0.0/8")

// Bits is the size of every internal network: a /24.
const Bits = 24

// Host numbers inside a /24: .1 is the gateway on the admin, servers get .10 to .254
// (.2 to .9 are kept for Cairn's own use, .0 and .255 are network and broadcast).
const (
	// GatewayHost is the host number of the network's gateway on the admin.
	GatewayHost = 1
	// FirstHost is the lowest host number a server gets.
	FirstHost = 10
	// LastHost is the highest host number a server gets.
	LastHost = 254
)

// DefaultLAN is the LAN of the appliance unless settings say otherwise
// (docs/architecture.md): it overlaps 10.0.0.0/8, so callers pass the LAN they really
// use as a reserved prefix.
var DefaultLAN = netip.MustParsePrefix("10.0.0.0/16")

// NextPrefix returns the first /24 inside 10.0.0.0/8 that overlaps neither a prefix in
// used (the networks that exist) nor one in reserved (the appliance's LAN, the uplink,
// anything else the networks must stay clear of; invalid prefixes there are ignored).
func NextPrefix(used []netip.Prefix, reserved ...netip.Prefix) (netip.Prefix, error) {
	taken := make([]netip.Prefix, 0, len(used)+len(reserved))
	for _, p := range append(append([]netip.Prefix(nil), used...), reserved...) {
		if p.IsValid() && p.Addr().Is4() {
			taken = append(taken, p.Masked())
		}
	}
	// Candidates are the /24s in order; when one overlaps a taken prefix, jump past the
	// end of that prefix instead of stepping one /24 at a time through it.
	cand := netip.PrefixFrom(Space.Addr(), Bits)
	for Space.Contains(cand.Addr()) {
		var hit netip.Prefix
		for _, q := range taken {
			if q.Overlaps(cand) && (!hit.IsValid() || q.Bits() < hit.Bits()) {
				hit = q
			}
		}
		if !hit.IsValid() {
			return cand, nil
		}
		end := lastAddr(hit)
		if hit.Bits() > Bits {
			end = lastAddr(cand)
		}
		next := end.Next()
		if !next.IsValid() {
			break
		}
		cand = netip.PrefixFrom(next, Bits)
	}
	return netip.Prefix{}, fmt.Errorf("allocate network in %s: every /24 is taken: %w; delete an unused network", Space, ErrExhausted)
}

// CheckPrefix reports whether p can be a new internal network: a /24 inside
// 10.0.0.0/8, given as its network address, overlapping nothing in used or reserved.
func CheckPrefix(p netip.Prefix, used []netip.Prefix, reserved ...netip.Prefix) error {
	if !p.IsValid() || !p.Addr().Is4() {
		return fmt.Errorf("network range %s: %w: give an IPv4 /24 inside %s, such as 10.1.2.0/24", p, ErrInvalid, Space)
	}
	if p.Bits() != Bits {
		return fmt.Errorf("network range %s: %w: internal networks are /%d, such as %s", p, ErrInvalid, Bits, netip.PrefixFrom(p.Addr(), Bits).Masked())
	}
	if p.Masked() != p {
		return fmt.Errorf("network range %s: %w: host bits are set, write it as %s", p, ErrInvalid, p.Masked())
	}
	if !Space.Contains(p.Addr()) {
		return fmt.Errorf("network range %s: %w: internal networks must be inside %s", p, ErrInvalid, Space)
	}
	for _, q := range reserved {
		if q.IsValid() && q.Overlaps(p) {
			return fmt.Errorf("network range %s: %w reserved range %s (the appliance's LAN or uplink): choose another /24", p, ErrOverlap, q.Masked())
		}
	}
	for _, q := range used {
		if q.IsValid() && q.Overlaps(p) {
			return fmt.Errorf("network range %s: %w network %s: choose another /24 or leave it empty to get a free one", p, ErrOverlap, q.Masked())
		}
	}
	return nil
}

// HostAddr returns host number i of the /24 p: 1 is the gateway, 10 to 254 are servers.
func HostAddr(p netip.Prefix, i int) (netip.Addr, error) {
	if err := checkNet(p); err != nil {
		return netip.Addr{}, err
	}
	if i < GatewayHost || i > LastHost {
		return netip.Addr{}, fmt.Errorf("host %d of %s: %w: host numbers go from %d to %d", i, p, ErrInvalid, GatewayHost, LastHost)
	}
	b := p.Masked().Addr().As4()
	b[3] = byte(i)
	return netip.AddrFrom4(b), nil
}

// NextHost returns the lowest server address (.10 to .254) of the /24 p that is not in
// used.
func NextHost(p netip.Prefix, used []netip.Addr) (netip.Addr, error) {
	if err := checkNet(p); err != nil {
		return netip.Addr{}, err
	}
	taken := make(map[netip.Addr]bool, len(used))
	for _, a := range used {
		taken[a.Unmap()] = true
	}
	for i := FirstHost; i <= LastHost; i++ {
		a, _ := HostAddr(p, i)
		if !taken[a] {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("allocate address in %s: all %d server addresses are taken: %w; remove a server from the network or use another network", p, LastHost-FirstHost+1, ErrExhausted)
}

// checkNet reports whether p is an IPv4 /24, the shape of every internal network.
func checkNet(p netip.Prefix) error {
	if !p.IsValid() || !p.Addr().Is4() || p.Bits() != Bits {
		return fmt.Errorf("network range %s: %w: want an IPv4 /%d", p, ErrInvalid, Bits)
	}
	return nil
}

// lastAddr is the highest address inside p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= ^uint32(0) >> p.Bits()
	if p.Bits() == 0 {
		v = ^uint32(0)
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
