// Package vnet is the per-node data plane of Cairn's connections: internal networks
// (a Linux bridge per network, carried between nodes over VXLAN), masquerade through the
// admin's uplink, isolation between networks, 1:1 IP mappings of external addresses,
// and external segments whose servers have addresses of the uplink's network on their
// own interfaces.
//
// The package is declarative: Node.Apply makes one network namespace match a State and
// removes what Cairn made there earlier that the State no longer has. Everything Cairn
// makes is recognisable and nothing else is touched, with one exception (proxy entries):
//
//   - links named cbr<id> (bridges) and cvx<id> (VXLAN), also carrying the alias "cairn";
//     any link with alias "cairn" is treated as Cairn's;
//   - the nftables table "inet cairn", which Apply owns entirely and replaces atomically;
//   - external addresses on the uplink, as /32 addresses labelled "<uplink>:cairn";
//     the admin answers ARP for them because they are local addresses, and the rules in
//     "inet cairn" drop whatever reaches them that no mapping forwards;
//   - routes and proxy neighbour entries tagged with rtnetlink protocol 202
//     ("proto 202" in ip(8)). Cairn also owns every IPv4 proxy neighbour entry on the
//     uplink, tagged or not: Apply removes those the State does not list.
//
// An external segment's gateway node (the admin) routes its servers instead of
// bridging them onto the uplink: the segment's bridge has the uplink's first address as
// a /32 (the servers' router and DHCP server) and proxy ARP on, each server's address
// has a route <addr>/32 dev cbr<id>, and a proxy neighbour entry on the uplink makes the
// admin answer ARP for it there. The outside may open connections to these addresses;
// they are not masqueraded, and the isolation from the other networks stays.
//
// Apply sets net.ipv4.ip_forward=1 on a node that holds a gateway and leaves it set.
// The VXLAN links take the underlay's MTU less 50 bytes (1450 on a 1500 LAN) and the
// bridge follows its smallest port, so guests need that MTU (DHCP option 26) or the LAN
// a larger one.
package vnet

import (
	"fmt"
	"net"
	"net/netip"
)

// labelSuffix follows the uplink's name in the label of external addresses.
const labelSuffix = ":cairn"

// Network is one network (a layer-2 segment) as this node sees it.
type Network struct {
	// ID is the network number and VXLAN VNI (1..16777215); links are cbr<ID> and cvx<ID>.
	ID int `json:"id"`
	// Prefix is the network's /24 inside 10.0.0.0/8; the zero Prefix on an external
	// segment.
	Prefix netip.Prefix `json:"prefix,omitzero"`
	// Gateway is true on the node that holds the network's .1 address (the admin).
	Gateway bool `json:"gateway,omitempty"`
	// External marks a segment for servers with external addresses: it has no Prefix and no gateway address of its own.
	External bool `json:"external,omitempty"`
	// Routed are, on the gateway node of an external segment, the external addresses of its servers.
	Routed []netip.Addr `json:"routed,omitempty"`
}

// PortRule lets one inbound port of a mapping through, optionally from some sources only.
type PortRule struct {
	// Proto is "tcp" or "udp".
	Proto string `json:"proto"`
	// Port is the destination port, 1..65535.
	Port uint16 `json:"port"`
	// From limits the sources; the zero Prefix lets anyone through.
	From netip.Prefix `json:"from,omitzero"`
}

// Mapping presents a server's internal address to the outside as an external address.
type Mapping struct {
	// External is the address on the uplink's network that the outside uses.
	External netip.Addr `json:"external"`
	// Internal is the server's address on one of the gateway networks.
	Internal netip.Addr `json:"internal"`
	// Ports lists the inbound ports forwarded to the server; empty forwards everything.
	Ports []PortRule `json:"ports,omitempty"`
}

// State is everything Cairn wants in one node's network namespace.
type State struct {
	// Underlay is the LAN interface that carries VXLAN; its first IPv4 address is the
	// local VTEP address. Empty means no VXLAN links (a single node).
	Underlay string `json:"underlay,omitempty"`
	// Peers are the other nodes' LAN addresses; every network floods to all of them.
	Peers []netip.Addr `json:"peers,omitempty"`
	// Networks are the networks with a bridge on this node.
	Networks []Network `json:"networks,omitempty"`
	// Uplink is, on the admin only, the interface towards the outside used for
	// masquerade, mappings and external segments.
	Uplink string `json:"uplink,omitempty"`
	// Mappings are, on the admin only, the 1:1 mappings of external addresses.
	Mappings []Mapping `json:"mappings,omitempty"`
}

// BridgeName returns the name of the bridge of network id.
func BridgeName(id int) string { return fmt.Sprintf("cbr%d", id) }

// GatewayMAC is the MAC address of network id's bridge on its gateway node: locally
// administered, 02:ca:1b followed by the network number. Only the gateway's bridge has
// it; the other nodes' bridges keep the kernel's random ones.
func GatewayMAC(id int) net.HardwareAddr {
	return net.HardwareAddr{0x02, 0xca, 0x1b, byte(id >> 16), byte(id >> 8), byte(id)}
}

// VXLANName returns the name of the VXLAN link of network id.
func VXLANName(id int) string { return fmt.Sprintf("cvx%d", id) }

// Validate reports the first thing in s that Apply cannot make.
func (s State) Validate() error {
	ids := map[int]bool{}
	prefixes := map[netip.Prefix]int{}
	routed := map[netip.Addr]int{} // external address -> its segment
	for _, n := range s.Networks {
		if n.ID < 1 || n.ID > 1<<24-1 {
			return fmt.Errorf("network %d: id must be between 1 and 16777215", n.ID)
		}
		if ids[n.ID] {
			return fmt.Errorf("network %d: listed twice", n.ID)
		}
		ids[n.ID] = true
		if err := s.checkRouted(n, routed); err != nil {
			return err
		}
		if n.External {
			if n.Prefix.IsValid() {
				return fmt.Errorf("network %d: an external segment has no prefix of its own, got %s", n.ID, n.Prefix)
			}
			continue
		}
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
		if id, ok := routed[m.External]; ok {
			return fmt.Errorf("mapping %s: the address is already a server's own external address on segment %d", m.External, id)
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

// checkRouted checks n's routed addresses and records them in seen.
func (s State) checkRouted(n Network, seen map[netip.Addr]int) error {
	if len(n.Routed) == 0 {
		return nil
	}
	if !n.Gateway || !n.External {
		return fmt.Errorf("network %d: routed addresses belong only to an external segment on its gateway node", n.ID)
	}
	if s.Uplink == "" {
		return fmt.Errorf("network %d: routed addresses given without an uplink interface: set Uplink on the admin", n.ID)
	}
	for _, a := range n.Routed {
		if !a.Is4() {
			return fmt.Errorf("network %d: routed address %s must be an IPv4 address", n.ID, a)
		}
		if other, ok := seen[a]; ok {
			return fmt.Errorf("network %d: routed address %s already routed to network %d", n.ID, a, other)
		}
		seen[a] = n.ID
	}
	return nil
}
