package engine

import (
	"net/netip"
	"time"

	"github.com/cairn-os/cairn/supervisor/vnet"
)

// NetworkKind is what a network carries.
type NetworkKind string

// The kinds of network.
const (
	// NetworkInternal is a private /24 inside 10.0.0.0/8 with its gateway on the admin.
	NetworkInternal NetworkKind = "internal"
	// NetworkExternal is a user's segment for servers with addresses from the uplink's
	// range; the engine makes one per user with external-IP connections and removes it
	// with the last of them.
	NetworkExternal NetworkKind = "external"
)

// Network is one layer-2 segment: a bridge cbr<ID> on every node that runs one of its
// servers, carried between nodes over VXLAN with VNI ID.
type Network struct {
	ID    int         `json:"id"`
	Name  string      `json:"name"`
	Owner string      `json:"owner"`
	Kind  NetworkKind `json:"kind"`
	// Prefix is the /24 of an internal network ("10.1.2.0/24"); empty for external.
	Prefix string `json:"prefix,omitempty"`
	// Gateway is the admin's address on an internal network (.1 of Prefix).
	Gateway string `json:"gateway,omitempty"`
	// DNS are the name servers DHCP hands out; the engine's settings when empty.
	DNS       []string  `json:"dns,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// NetworkRequest creates an internal network. Prefix is optional: the engine picks the
// next free /24 inside 10.0.0.0/8 when it is empty.
type NetworkRequest struct {
	Name   string   `json:"name"`
	Prefix string   `json:"prefix,omitempty"`
	DNS    []string `json:"dns,omitempty"`
}

// NetworkUpdate renames a network or changes its name servers.
type NetworkUpdate struct {
	Name *string   `json:"name,omitempty"`
	DNS  *[]string `json:"dns,omitempty"`
}

// ConnectionKind is how a connection reaches the world.
type ConnectionKind string

// The kinds of connection.
const (
	// ConnInternal gives the server an address on an internal network.
	ConnInternal ConnectionKind = "internal"
	// ConnExternal gives the server an address from the uplink's range on its own
	// interface.
	ConnExternal ConnectionKind = "external"
	// ConnMapping gives the server an internal address presented to the outside
	// through an external address (1:1 NAT).
	ConnMapping ConnectionKind = "mapping"
)

// Connection is one network interface of a server: a MAC with a fixed address. It can
// exist without a server (its addresses stay reserved) and be attached to one, also
// while the server runs.
type Connection struct {
	ID    string         `json:"id"`
	Name  string         `json:"name"`
	Owner string         `json:"owner"`
	Kind  ConnectionKind `json:"kind"`
	// Network is the network the NIC is on: the internal network of internal and
	// mapping connections, the owner's external segment of external ones.
	Network int    `json:"network"`
	MAC     string `json:"mac"`
	// Address is the server's address on its interface: internal for internal and
	// mapping connections, external for external ones.
	Address string `json:"address"`
	// External is the mapped external address of a mapping connection.
	External string `json:"external,omitempty"`
	// Ports limits a mapping to a port list ("80,443,192.168.0.0/16:445"); empty
	// forwards all ports.
	Ports string `json:"ports,omitempty"`
	// Server is the server the connection is attached to; empty when detached.
	Server    string    `json:"server,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// ConnectionRequest creates a connection. Network names the internal network of an
// internal or mapping connection. Address and External are optional: the engine picks
// the next free ones. Server attaches the new connection at once.
type ConnectionRequest struct {
	Name     string         `json:"name"`
	Kind     ConnectionKind `json:"kind"`
	Network  int            `json:"network,omitempty"`
	Address  string         `json:"address,omitempty"`
	External string         `json:"external,omitempty"`
	Ports    string         `json:"ports,omitempty"`
	Server   string         `json:"server,omitempty"`
}

// ConnectionUpdate renames a connection or changes a mapping's port list.
type ConnectionUpdate struct {
	Name  *string `json:"name,omitempty"`
	Ports *string `json:"ports,omitempty"`
}

// NodeNetwork is everything of Cairn's connections that one node must have. The
// engine computes it from its state and hands it to Config.ApplyNetwork; nodes report
// the Version they applied in their heartbeats, and the engine hands it again to a
// node that reports another (after a reboot, or a push it missed).
type NodeNetwork struct {
	// Networks have a bridge on the node; on the admin all of them, with Gateway set,
	// and the external segments with their servers' addresses in Routed.
	Networks []vnet.Network `json:"networks"`
	// Peers are the LAN addresses of the other nodes, for VXLAN.
	Peers []netip.Addr `json:"peers,omitempty"`
	// Mappings are the admin's 1:1 mappings.
	Mappings []vnet.Mapping `json:"mappings,omitempty"`
	// DHCP is, on the admin, each network's DHCP service.
	DHCP []NetworkDHCP `json:"dhcp,omitempty"`
	// Version identifies the content: a hash of everything above.
	Version string `json:"version"`
}

// NetworkDHCP is one network's DHCP service on the admin.
type NetworkDHCP struct {
	Network int `json:"network"`
	// External is set for an external segment: the prefix and router are the
	// uplink's, which only the admin knows.
	External bool `json:"external,omitempty"`
	// Prefix and Gateway of an internal network.
	Prefix  netip.Prefix `json:"prefix,omitzero"`
	Gateway netip.Addr   `json:"gateway,omitzero"`
	DNS     []netip.Addr `json:"dns,omitempty"`
	// MTU is the interface MTU handed out (option 26); 0 sends none.
	MTU    int         `json:"mtu,omitempty"`
	Leases []DHCPLease `json:"leases,omitempty"`
}

// DHCPLease is one NIC's fixed address.
type DHCPLease struct {
	MAC      string     `json:"mac"`
	IP       netip.Addr `json:"ip"`
	Hostname string     `json:"hostname,omitempty"`
}

// GuestMTU is the MTU of servers' NICs: the LAN's 1500 less VXLAN's 50 bytes.
const GuestMTU = 1450
