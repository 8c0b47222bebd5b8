package vnet

import (
	"fmt"
	"log/slog"
	"net"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// TableName is the nftables table (family inet) that Apply owns entirely.
const TableName = "cairn"

// ipsDstNAT is the conntrack status bit of a DNATed connection (IPS_DST_NAT).
const ipsDstNAT = 1 << 5

// applyRules replaces table inet cairn with the rules for s in one atomic batch, or
// deletes it when s needs no rules.
func applyRules(ns netns.NsHandle, s State, log *slog.Logger) error {
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)), nftables.WithSockOptions(bigBuffers))
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	t := &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
	if len(s.Networks) == 0 && len(s.Mappings) == 0 {
		tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
		if err != nil {
			return fmt.Errorf("list nftables tables: %w", err)
		}
		for _, x := range tables {
			if x.Name == TableName {
				c.DelTable(t)
				if err := c.Flush(); err != nil {
					return fmt.Errorf("delete nftables table inet %s: %w", TableName, err)
				}
				log.Info("nftables table removed", "table", TableName)
			}
		}
		return nil
	}
	// Add (a no-op when it exists), delete and add again: the batch replaces the table
	// atomically, so there is no moment without isolation.
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	addRules(c, t, s)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("write nftables table inet %s: %w", TableName, err)
	}
	return nil
}

// nlBuffer is the netlink socket's send and receive buffer. The table goes to the
// kernel as one batch and the kernel echoes every rule back: with the default 208 KiB
// a batch of a few dozen mappings no longer fits (bench/net). The buffers are limits,
// not allocations; root may raise them past net.core.[rw]mem_max with the FORCE options.
const nlBuffer = 64 << 20

func bigBuffers(c *netlink.Conn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		for _, opt := range []int{unix.SO_SNDBUFFORCE, unix.SO_RCVBUFFORCE} {
			if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt, nlBuffer); e != nil && serr == nil {
				serr = fmt.Errorf("netlink socket buffer: %w", e)
			}
		}
	})
	if err != nil {
		return err
	}
	return serr
}

func addRules(c *nftables.Conn, t *nftables.Table, s State) {
	accept := nftables.ChainPolicyAccept
	forward := c.AddChain(&nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	input := c.AddChain(&nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	pre := c.AddChain(&nftables.Chain{Name: "prerouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest})
	post := c.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	rule := func(ch *nftables.Chain, e ...[]expr.Any) {
		var all []expr.Any
		for _, x := range e {
			all = append(all, x...)
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: all})
	}
	drop := []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}
	acceptV := []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}

	// Isolation: a network's bridge forwards (routes) only to itself, never to another
	// Cairn bridge. Bridged traffic inside one network does not pass this hook.
	for _, n := range s.Networks {
		br := BridgeName(n.ID)
		rule(forward, ifname(expr.MetaKeyIIFNAME, br, expr.CmpOpEq), ifname(expr.MetaKeyOIFNAME, br, expr.CmpOpNeq),
			ifPrefix(expr.MetaKeyOIFNAME, "cbr"), drop)
	}
	if s.Uplink == "" {
		return
	}
	// The outside reaches the servers of external segments at their own addresses:
	// only those have routes to the segment's bridge.
	for _, n := range s.Networks {
		if externalGateway(n) {
			rule(forward, ifname(expr.MetaKeyIIFNAME, s.Uplink, expr.CmpOpEq),
				ifname(expr.MetaKeyOIFNAME, BridgeName(n.ID), expr.CmpOpEq), acceptV)
		}
	}
	// From the outside into the internal networks only replies and mapped connections.
	rule(forward, ifname(expr.MetaKeyIIFNAME, s.Uplink, expr.CmpOpEq), ifPrefix(expr.MetaKeyOIFNAME, "cbr"),
		ctBits(expr.CtKeySTATE, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), acceptV)
	rule(forward, ifname(expr.MetaKeyIIFNAME, s.Uplink, expr.CmpOpEq), ifPrefix(expr.MetaKeyOIFNAME, "cbr"),
		ctBits(expr.CtKeySTATUS, ipsDstNAT), acceptV)
	rule(forward, ifname(expr.MetaKeyIIFNAME, s.Uplink, expr.CmpOpEq), ifPrefix(expr.MetaKeyOIFNAME, "cbr"), drop)

	for _, m := range s.Mappings {
		ext, in := m.External.AsSlice(), m.Internal.AsSlice()
		dnat := []expr.Any{
			&expr.Immediate{Register: 1, Data: in},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1},
		}
		if len(m.Ports) == 0 {
			rule(pre, ipv4(), addr(16, ext), dnat)
		}
		for _, p := range m.Ports {
			var src []expr.Any
			if p.From.IsValid() {
				src = prefix(12, p.From.Addr().AsSlice(), p.From.Bits())
			}
			rule(pre, ipv4(), addr(16, ext), src, port(p.Proto, p.Port), dnat)
		}
		// What no mapping rule rewrote still has the external address: drop it.
		rule(input, ipv4(), addr(16, ext), drop)
		rule(post, ifname(expr.MetaKeyOIFNAME, s.Uplink, expr.CmpOpEq), ipv4(), addr(12, in),
			[]expr.Any{
				&expr.Immediate{Register: 1, Data: ext},
				&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1},
			})
	}
	for _, n := range s.Networks {
		if !n.Gateway || n.External {
			continue // external segments keep their servers' addresses
		}
		rule(post, ifname(expr.MetaKeyOIFNAME, s.Uplink, expr.CmpOpEq), ipv4(),
			prefix(12, n.Prefix.Addr().AsSlice(), n.Prefix.Bits()), []expr.Any{&expr.Masq{}})
	}
}

func ifname(key expr.MetaKey, name string, op expr.CmpOp) []expr.Any {
	b := make([]byte, 16)
	copy(b, name)
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: b},
	}
}

// ifPrefix matches interface names that start with p (nft's "p*").
func ifPrefix(key expr.MetaKey, p string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte(p)},
	}
}

func ipv4() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
	}
}

// addr matches the IPv4 source (offset 12) or destination (16) address.
func addr(off uint32, a []byte) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a},
	}
}

func prefix(off uint32, a []byte, bits int) []expr.Any {
	mask := net.CIDRMask(bits, 32)
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: net.IP(a).Mask(mask).To4()},
	}
}

func port(proto string, p uint16) []expr.Any {
	l4 := byte(unix.IPPROTO_TCP)
	if proto == "udp" {
		l4 = unix.IPPROTO_UDP
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{l4}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(p)},
	}
}

func ctBits(key expr.CtKey, bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: key},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
}
