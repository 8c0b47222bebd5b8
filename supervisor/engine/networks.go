package engine

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/cairn-os/cairn/supervisor/netdhcp"
	"github.com/cairn-os/cairn/supervisor/store"
)

// Internal networks: a /24 inside 10.0.0.0/8 each, allocated inside one store
// transaction so that two networks created at the same instant never share one.

const bucketNetworks = "networks"

// maxNetworkID is the largest VXLAN network identifier.
const maxNetworkID = 1<<24 - 1

// maxDNS is how many name servers a network hands out.
const maxDNS = 3

func networkOp(verb string, id int) string { return fmt.Sprintf("%s network %d", verb, id) }

// networkKey keeps networks in ID order in the store.
func networkKey(id int) string { return fmt.Sprintf("%08d", id) }

// Networks lists the networks the user may see: their own, all for admins.
func (e *Engine) Networks(ctx context.Context, u User) ([]Network, error) {
	if err := requireUser(u, "list networks"); err != nil {
		return nil, err
	}
	all, err := store.List[Network](e.store, bucketNetworks)
	if err != nil {
		return nil, fmt.Errorf("list networks: %w", err)
	}
	return slices.DeleteFunc(all, func(n Network) bool { return !canSee(u, n.Owner) }), nil
}

// Network returns one network the user may see.
func (e *Engine) Network(ctx context.Context, u User, id int) (Network, error) {
	op := networkOp("get", id)
	if err := requireUser(u, op); err != nil {
		return Network{}, err
	}
	var n Network
	err := e.store.View(func(tx *store.Tx) error {
		var err error
		n, err = getNetwork(tx, u, id)
		return err
	})
	if err != nil {
		return Network{}, fmt.Errorf("%s: %w", op, err)
	}
	return n, nil
}

// getNetwork reads network id inside tx; one the user may not see is not found.
func getNetwork(tx *store.Tx, u User, id int) (Network, error) {
	var n Network
	if err := tx.Get(bucketNetworks, networkKey(id), &n); err != nil || !canSee(u, n.Owner) {
		return Network{}, fmt.Errorf("%w: no network %d; list them with GET /api/v1/networks", ErrNotFound, id)
	}
	return n, nil
}

// checkName refuses empty and overlong names of networks and connections; they are
// named for people, not paths, so spaces are fine.
func checkName(what, name string) error {
	if strings.TrimSpace(name) == "" || len(name) > 64 || strings.ContainsAny(name, "\n\r\t") {
		return fmt.Errorf("%w: %s name %q: give 1 to 64 characters on one line", ErrInvalid, what, name)
	}
	return nil
}

// parseDNS checks a list of name servers.
func parseDNS(list []string) ([]string, error) {
	if len(list) > maxDNS {
		return nil, fmt.Errorf("%w: dns: at most %d name servers", ErrInvalid, maxDNS)
	}
	out := make([]string, 0, len(list))
	for _, s := range list {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil || !a.Is4() {
			return nil, fmt.Errorf("%w: dns server %q: give IPv4 addresses such as 9.9.9.9", ErrInvalid, s)
		}
		out = append(out, a.String())
	}
	return out, nil
}

// allocErr turns the allocator's errors into the engine's.
func allocErr(err error) error {
	switch {
	case errors.Is(err, netdhcp.ErrOverlap):
		return fmt.Errorf("%w: %v", ErrExists, err)
	case errors.Is(err, netdhcp.ErrExhausted):
		return fmt.Errorf("%w: %v", ErrQuota, err)
	case errors.Is(err, netdhcp.ErrInvalid):
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return err
}

// reservedPrefixes are the ranges no internal network may take: the appliance's LAN
// and the uplink's external range when it lies inside 10.0.0.0/8.
func (e *Engine) reservedPrefixes(tx *store.Tx) []netip.Prefix {
	out := slices.Clone(e.cfg.ReservedPrefixes)
	if r, err := parseRange(e.settingsTx(tx).ExternalRange); err == nil && !r.empty() {
		out = append(out, r.prefixes()...)
	}
	return out
}

// CreateNetwork makes an internal network for the user, with the requested /24 or the
// next free one.
func (e *Engine) CreateNetwork(ctx context.Context, u User, req NetworkRequest) (Network, error) {
	op := fmt.Sprintf("create network %q", req.Name)
	if err := requireWriter(u, op); err != nil {
		return Network{}, err
	}
	if req.Name == "" {
		req.Name = "network"
	}
	if err := checkName("network", req.Name); err != nil {
		return Network{}, fmt.Errorf("%s: %w", op, err)
	}
	dns, err := parseDNS(req.DNS)
	if err != nil {
		return Network{}, fmt.Errorf("%s: %w", op, err)
	}
	var want netip.Prefix
	if req.Prefix != "" {
		if want, err = netip.ParsePrefix(strings.TrimSpace(req.Prefix)); err != nil {
			return Network{}, fmt.Errorf("%s: %w: prefix %q: write it like 10.1.2.0/24", op, ErrInvalid, req.Prefix)
		}
	}
	var n Network
	err = e.store.Update(func(tx *store.Tx) error {
		all, err := store.ListTx[Network](tx, bucketNetworks)
		if err != nil {
			return err
		}
		var used []netip.Prefix
		for _, x := range all {
			if p, err := netip.ParsePrefix(x.Prefix); err == nil {
				used = append(used, p)
			}
		}
		reserved := e.reservedPrefixes(tx)
		p := want
		if p.IsValid() {
			err = netdhcp.CheckPrefix(p, used, reserved...)
		} else {
			p, err = netdhcp.NextPrefix(used, reserved...)
		}
		if err != nil {
			return allocErr(err)
		}
		id, err := nextNetworkID(all)
		if err != nil {
			return err
		}
		gw, err := netdhcp.HostAddr(p, netdhcp.GatewayHost)
		if err != nil {
			return allocErr(err)
		}
		n = Network{ID: id, Name: req.Name, Owner: u.ID, Kind: NetworkInternal, Prefix: p.String(),
			Gateway: gw.String(), DNS: dns, CreatedAt: e.now()}
		return tx.Put(bucketNetworks, networkKey(id), n)
	})
	if err != nil {
		return Network{}, fmt.Errorf("%s: %w", op, err)
	}
	e.log.Info("network created", "network", n.ID, "prefix", n.Prefix, "by", u.Name)
	// A network without servers has a bridge only on the admin (its gateway).
	e.syncNetworks(ctx)
	return n, nil
}

// nextNetworkID returns the lowest network number not in use.
func nextNetworkID(all []Network) (int, error) {
	ids := make(map[int]bool, len(all))
	for _, n := range all {
		ids[n.ID] = true
	}
	for id := 1; id <= maxNetworkID; id++ {
		if !ids[id] {
			return id, nil
		}
	}
	return 0, fmt.Errorf("%w: every network number is taken", ErrQuota)
}

// UpdateNetwork renames a network or changes its name servers.
func (e *Engine) UpdateNetwork(ctx context.Context, u User, id int, upd NetworkUpdate) (Network, error) {
	op := networkOp("update", id)
	if err := requireWriter(u, op); err != nil {
		return Network{}, err
	}
	var n Network
	err := e.store.Update(func(tx *store.Tx) error {
		var err error
		if n, err = getNetwork(tx, u, id); err != nil {
			return err
		}
		if err := requireOwnerOrAdmin(u, n.Owner, op); err != nil {
			return err
		}
		if upd.Name != nil {
			if err := checkName("network", *upd.Name); err != nil {
				return err
			}
			n.Name = *upd.Name
		}
		if upd.DNS != nil {
			if n.Kind == NetworkExternal {
				return fmt.Errorf("%w: an external segment takes its name servers from the engine's settings", ErrInvalid)
			}
			if n.DNS, err = parseDNS(*upd.DNS); err != nil {
				return err
			}
		}
		return tx.Put(bucketNetworks, networkKey(id), n)
	})
	if err != nil {
		return Network{}, fmt.Errorf("%s: %w", op, err)
	}
	if upd.DNS != nil {
		e.syncNetworks(ctx)
	}
	return n, nil
}

// DeleteNetwork deletes an internal network that no connection uses; its bridges,
// VXLAN links, gateway, DHCP service and rules go from every node.
func (e *Engine) DeleteNetwork(ctx context.Context, u User, id int) error {
	op := networkOp("delete", id)
	if err := requireWriter(u, op); err != nil {
		return err
	}
	err := e.store.Update(func(tx *store.Tx) error {
		n, err := getNetwork(tx, u, id)
		if err != nil {
			return err
		}
		if err := requireOwnerOrAdmin(u, n.Owner, op); err != nil {
			return err
		}
		if n.Kind == NetworkExternal {
			return fmt.Errorf("%w: an external segment goes with its last external-IP connection", ErrInvalid)
		}
		conns, err := store.ListTx[Connection](tx, bucketConnections)
		if err != nil {
			return err
		}
		var users []string
		for _, c := range conns {
			if c.Network == id {
				users = append(users, c.ID)
			}
		}
		if len(users) > 0 {
			return fmt.Errorf("%w: connections %s are on it; delete them first", ErrInUse, strings.Join(users, ", "))
		}
		return tx.Delete(bucketNetworks, networkKey(id))
	})
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	e.log.Info("network deleted", "network", id, "by", u.Name)
	e.syncNetworks(ctx)
	return nil
}

// addrRange is an inclusive range of IPv4 addresses.
type addrRange struct{ first, last netip.Addr }

func (r addrRange) empty() bool { return !r.first.IsValid() }

func (r addrRange) contains(a netip.Addr) bool {
	return !r.empty() && a.Is4() && r.first.Compare(a) <= 0 && a.Compare(r.last) <= 0
}

// prefixes covers the range with the /24s it touches (for the allocator's reserved
// list, which compares /24s).
func (r addrRange) prefixes() []netip.Prefix {
	var out []netip.Prefix
	for p := netip.PrefixFrom(r.first, 24).Masked(); p.Addr().Compare(r.last) <= 0; {
		out = append(out, p)
		b := p.Addr().As4()
		if b[2] == 255 {
			if b[1] == 255 {
				break
			}
			b[1]++
		}
		b[2]++
		p = netip.PrefixFrom(netip.AddrFrom4(b), 24)
	}
	return out
}

// maxRange is the largest external range an admin may configure.
const maxRange = 1 << 16

// parseRange reads "198.51.100.10-198.51.100.40", "198.51.100.0/28" or "" (none).
func parseRange(s string) (addrRange, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return addrRange{}, nil
	}
	bad := fmt.Errorf("%w: external range %q: write it as first-last (198.51.100.10-198.51.100.40) or as a prefix (198.51.100.0/28), IPv4", ErrInvalid, s)
	var r addrRange
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil || !p.Addr().Is4() {
			return addrRange{}, bad
		}
		p = p.Masked()
		r.first = p.Addr()
		r.last = p.Addr()
		for n := uint64(1) << (32 - p.Bits()); n > 1; n-- {
			r.last = r.last.Next()
		}
	} else {
		a, b, ok := strings.Cut(s, "-")
		if !ok {
			return addrRange{}, bad
		}
		var err1, err2 error
		r.first, err1 = netip.ParseAddr(strings.TrimSpace(a))
		r.last, err2 = netip.ParseAddr(strings.TrimSpace(b))
		if err1 != nil || err2 != nil || !r.first.Is4() || !r.last.Is4() {
			return addrRange{}, bad
		}
	}
	if r.last.Less(r.first) {
		return addrRange{}, fmt.Errorf("%w: external range %q: the first address comes after the last", ErrInvalid, s)
	}
	if ipv4Num(r.last)-ipv4Num(r.first)+1 > maxRange {
		return addrRange{}, fmt.Errorf("%w: external range %q: at most %d addresses", ErrInvalid, s, maxRange)
	}
	for _, a := range []netip.Addr{r.first, r.last} {
		if a.IsLoopback() || a.IsMulticast() || a.IsUnspecified() || a.IsLinkLocalUnicast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
			return addrRange{}, fmt.Errorf("%w: external range %q: %s cannot be a server's address", ErrInvalid, s, a)
		}
	}
	return r, nil
}

func ipv4Num(a netip.Addr) uint64 {
	b := a.As4()
	return uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])
}

// String writes the range as first-last.
func (r addrRange) String() string {
	if r.empty() {
		return ""
	}
	return r.first.String() + "-" + r.last.String()
}

// nextExternal returns the first address of r not in used.
func (r addrRange) next(used map[netip.Addr]bool) (netip.Addr, bool) {
	if r.empty() {
		return netip.Addr{}, false
	}
	for a := r.first; a.Compare(r.last) <= 0; a = a.Next() {
		if !used[a] {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// ParseNetworkID reads a network number from a path.
func ParseNetworkID(s string) (int, error) {
	id, err := strconv.Atoi(s)
	if err != nil || id < 1 || id > maxNetworkID {
		return 0, fmt.Errorf("%w: network %q: give its number (1 to %d)", ErrInvalid, s, maxNetworkID)
	}
	return id, nil
}
