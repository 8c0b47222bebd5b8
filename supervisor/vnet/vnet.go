// Package vnet is the per-node data plane of Cairn's connections: internal networks
// (a Linux bridge per network, carried between nodes over VXLAN), masquerade through the
// admin's uplink, isolation between networks, and 1:1 IP mappings of external addresses.
//
// The package is declarative: Node.Apply makes one network namespace match a State and
// removes what Cairn made there earlier that the State no longer has. Everything Cairn
// makes is recognisable and nothing else is touched:
//
//   - links named cbr<id> (bridges) and cvx<id> (VXLAN), also carrying the alias "cairn";
//     any link with alias "cairn" is treated as Cairn's;
//   - the nftables table "inet cairn", which Apply owns entirely and replaces atomically;
//   - external addresses on the uplink, as /32 addresses labelled "<uplink>:cairn";
//     the admin answers ARP for them because they are local addresses, and the rules in
//     "inet cairn" drop whatever reaches them that no mapping forwards.
//
// Apply sets net.ipv4.ip_forward=1 on a node that holds a gateway and leaves it set.
// The VXLAN links take the underlay's MTU less 50 bytes (1450 on a 1500 LAN) and the
// bridge follows its smallest port, so guests need that MTU (DHCP option 26) or the LAN
// a larger one.
package vnet

import (
	"fmt"
	"net/netip"
)

// labelSuffix follows the uplink's name in the label of external addresses.
const labelSuffix = ":cairn"

// Network is one internal network as this node sees it.
type Network struct {
	// ID is the network number and VXLAN VNI (1..16777215); links are cbr<ID> and cvx<ID>.
	ID int
	// Prefix is the network's /24 inside 10.0.0.0/8.
	Prefix netip.Prefix
	// Gateway is true on the node that holds the network's .1 address (the admin).
	Gateway bool
}

// PortRule lets one inbound port of a mapping through, optionally from some sources only.
type PortRule struct {
	// Proto is "tcp" or "udp".
	Proto string
	// Port is the destination port, 1..65535.
	Port uint16
	// From limits the sources; the zero Prefix lets anyone through.
	From netip.Prefix
}

// Mapping presents a server's internal address to the outside as an external address.
type Mapping struct {
	// External is the address on the uplink's network that the outside uses.
	External netip.Addr
	// Internal is the server's address on one of the gateway networks.
	Internal netip.Addr
	// Ports lists the inbound ports forwarded to the server; empty forwards everything.
	Ports []PortRule
}

// State is everything Cairn wants in one node's network namespace.
type State struct {
	// Underlay is the LAN interface that carries VXLAN; its first IPv4 address is the
	// local VTEP address. Empty means no VXLAN links (a single node).
	Underlay string
	// Peers are the other nodes' LAN addresses; every network floods to all of them.
	Peers []netip.Addr
	// Networks are the internal networks with a bridge on this node.
	Networks []Network
	// Uplink is, on the admin only, the interface towards the outside used for
	// masquerade and mappings.
	Uplink string
	// Mappings are, on the admin only, the 1:1 mappings of external addresses.
	Mappings []Mapping
}

// BridgeName returns the name of the bridge of network id.
func BridgeName(id int) string { return fmt.Sprintf("cbr%d", id) }

// VXLANName returns the name of the VXLAN link of network id.
func VXLANName(id int) string { return fmt.Sprintf("cvx%d", id) }

// Validate reports the first thing in s that Apply cannot make.
func (s State) Validate() error {
	ids := map[int]bool{}
	prefixes := map[netip.Prefix]int{}
	for _, n := range s.Networks {
		if n.ID < 1 || n.ID > 1<<24-1 {
			return fmt.Errorf("network %d: id must be between 1 and 16777215", n.ID)
		}
		if ids[n.ID] {
			return fmt.Errorf("network %d: listed twice", n.ID)
		}
		ids[n.ID] = true
		if !n.Prefix.IsValid() || !n.Prefix.Addr().Is4() || n.Prefix.Bits() != 24 || n.Prefix.Masked() != n.Prefix {
			return fmt.Errorf("network %d: prefix %q must be an IPv4 /24 such as 10.1.2.0/24", n.ID, n.Prefix)
		}
		if other, ok := prefixes[n.Prefix]; ok {
			return fmt.Errorf("network %d: prefix %s already used by network %d", n.ID, n.Prefix, other)
		}
		prefixes[n.Prefix] = n.ID
	}
	for _, p := range s.Peers {
		if !p.Is4() {
			return fmt.Errorf("peer %s: must be an IPv4 address", p)
		}
	}
	if len(s.Peers) > 0 && s.Underlay == "" {
		return fmt.Errorf("peers given without an underlay interface: set Underlay to the LAN interface")
	}
	if len(s.Mappings) > 0 && s.Uplink == "" {
		return fmt.Errorf("mappings given without an uplink interface: set Uplink on the admin")
	}
	if s.Uplink != "" && len(s.Uplink)+len(labelSuffix) > 15 {
		return fmt.Errorf("uplink %q: name longer than %d characters cannot carry the address label %q", s.Uplink, 15-len(labelSuffix), labelSuffix)
	}
	ext := map[netip.Addr]bool{}
	in := map[netip.Addr]bool{}
	for _, m := range s.Mappings {
		if !m.External.Is4() || !m.Internal.Is4() {
			return fmt.Errorf("mapping %s -> %s: both addresses must be IPv4", m.External, m.Internal)
		}
		if ext[m.External] {
			return fmt.Errorf("mapping %s: external address mapped twice", m.External)
		}
		if in[m.Internal] {
			return fmt.Errorf("mapping %s -> %s: internal address already mapped", m.External, m.Internal)
		}
		ext[m.External], in[m.Internal] = true, true
		found := false
		for _, n := range s.Networks {
			if n.Gateway && n.Prefix.Contains(m.Internal) {
				found = true
			}
		}
		if !found {
			return fmt.Errorf("mapping %s -> %s: internal address is in no gateway network of this node", m.External, m.Internal)
		}
		for _, r := range m.Ports {
			if r.Proto != "tcp" && r.Proto != "udp" {
				return fmt.Errorf("mapping %s: protocol %q must be tcp or udp", m.External, r.Proto)
			}
			if r.Port == 0 {
				return fmt.Errorf("mapping %s: port 0 is not a port", m.External)
			}
			if r.From.IsValid() && !r.From.Addr().Is4() {
				return fmt.Errorf("mapping %s: source %s must be IPv4", m.External, r.From)
			}
		}
	}
	return nil
}
