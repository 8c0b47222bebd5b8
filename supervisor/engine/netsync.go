package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cairn-os/cairn/supervisor/store"
	"github.com/cairn-os/cairn/supervisor/vnet"
)

// Handing nodes their networks. What a node must have is computed from the engine's
// state alone (never read back from a node): the admin gets every network with its
// gateway, DHCP and the mappings; a compute node gets the networks of the servers it
// runs. Nodes report the version they applied in each heartbeat, so a node that
// rebooted, or missed a change while it was unreachable, gets its network again.

// networkApplyTimeout bounds one node's apply.
const networkApplyTimeout = time.Minute

// netSync is the engine's bookkeeping of what nodes have.
type netSync struct {
	mu sync.Mutex
	// applied is the version each node applied last, as far as this engine knows.
	applied map[string]string
	// pushing holds a lock per node: one apply at a time on a node.
	pushing map[string]*sync.Mutex
	// hold counts a server on a node before its records say it runs there (during a
	// start or a migration), so the node has its bridges in time.
	hold map[string]string
	// inFlight marks nodes a heartbeat already started a background apply for.
	inFlight map[string]bool
}

func (ns *netSync) nodeLock(id string) *sync.Mutex {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if ns.pushing == nil {
		ns.pushing = map[string]*sync.Mutex{}
	}
	m := ns.pushing[id]
	if m == nil {
		m = &sync.Mutex{}
		ns.pushing[id] = m
	}
	return m
}

// holdServer counts server id on node until the returned func is called.
func (e *Engine) holdServer(id, node string) func() {
	e.net.mu.Lock()
	if e.net.hold == nil {
		e.net.hold = map[string]string{}
	}
	e.net.hold[id] = node
	e.net.mu.Unlock()
	return func() {
		e.net.mu.Lock()
		delete(e.net.hold, id)
		e.net.mu.Unlock()
	}
}

// carriesNetworks reports whether a node takes part in networks. A node that is down
// still does: its servers may well still run (it only missed heartbeats: loaded, or
// cut off for a while), so the other nodes keep it as a VXLAN peer and its guests
// have their networks the moment it is heard again. Only a node that joins again, or is
// removed, leaves them.
func carriesNetworks(n Node) bool {
	return n.State == NodeReady || n.State == NodeMaintenance || n.State == NodeDown
}

// reachable reports whether the engine hands a node its network now; a node that is
// down gets it after its next heartbeat.
func reachable(n Node) bool { return n.State == NodeReady || n.State == NodeMaintenance }

// nodeNetworks computes what every node must have, by node ID.
func (e *Engine) nodeNetworks() (map[string]NodeNetwork, error) {
	var nodes []Node
	var nets []Network
	var conns []Connection
	var servers []Server
	var st Settings
	err := e.store.View(func(tx *store.Tx) error {
		var err error
		if nodes, err = store.ListTx[Node](tx, bucketNodes); err != nil {
			return err
		}
		if nets, err = store.ListTx[Network](tx, bucketNetworks); err != nil {
			return err
		}
		if conns, err = store.ListTx[Connection](tx, bucketConnections); err != nil {
			return err
		}
		if servers, err = store.ListTx[Server](tx, bucketServers); err != nil {
			return err
		}
		st = e.settingsTx(tx)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("compute node networks: %w", err)
	}
	e.net.mu.Lock()
	hold := make(map[string]string, len(e.net.hold))
	for k, v := range e.net.hold {
		hold[k] = v
	}
	e.net.mu.Unlock()
	return computeNetworks(nodes, nets, conns, servers, st, hold), nil
}

// computeNetworks is nodeNetworks without the store: pure, for tests.
func computeNetworks(nodes []Node, nets []Network, conns []Connection, servers []Server, st Settings, hold map[string]string) map[string]NodeNetwork {
	byID := map[int]Network{}
	for _, n := range nets {
		byID[n.ID] = n
	}
	serverByID := map[string]Server{}
	for _, s := range servers {
		serverByID[s.ID] = s
	}
	// Networks each node needs for the servers it runs (or is about to).
	need := map[string]map[int]bool{}
	add := func(node string, id int) {
		if need[node] == nil {
			need[node] = map[int]bool{}
		}
		need[node][id] = true
	}
	for _, s := range servers {
		for _, nic := range s.NICs {
			if nic.Connection == "" {
				continue
			}
			switch {
			case s.Node != "":
				add(s.Node, nic.Network)
			case s.LockNode != "":
				// A server locked to a node will run there: its bridges are ready.
				add(s.LockNode, nic.Network)
			}
			if h := hold[s.ID]; h != "" {
				add(h, nic.Network)
			}
		}
	}
	settingsDNS := addrs(st.DNS)
	out := map[string]NodeNetwork{}
	var carriers []Node
	for _, n := range nodes {
		if !carriesNetworks(n) {
			continue
		}
		var nn NodeNetwork
		if slices.Contains(n.Roles, NodeRoleAdmin) {
			nn = gatewayNetwork(nets, conns, serverByID, settingsDNS)
		} else {
			for _, net := range nets {
				if need[n.ID][net.ID] {
					nn.Networks = append(nn.Networks, vnetNetwork(net, false))
				}
			}
		}
		out[n.ID] = nn
		if len(nn.Networks) > 0 {
			carriers = append(carriers, n)
		}
	}
	for _, n := range carriers {
		nn := out[n.ID]
		for _, p := range carriers {
			if a, err := netip.ParseAddr(p.Address); err == nil && a.Is4() && p.ID != n.ID {
				nn.Peers = append(nn.Peers, a)
			}
		}
		slices.SortFunc(nn.Peers, func(a, b netip.Addr) int { return a.Compare(b) })
		out[n.ID] = nn
	}
	for id, nn := range out {
		nn.Version = networkVersion(nn)
		out[id] = nn
	}
	return out
}

// vnetNetwork is a network as a node's data plane sees it.
func vnetNetwork(n Network, gateway bool) vnet.Network {
	v := vnet.Network{ID: n.ID, Gateway: gateway, External: n.Kind == NetworkExternal}
	if p, err := netip.ParsePrefix(n.Prefix); err == nil {
		v.Prefix = p
	}
	return v
}

// gatewayNetwork is the admin's part: every network with its gateway and DHCP, the
// external addresses routed to their segments, and the mappings.
func gatewayNetwork(nets []Network, conns []Connection, servers map[string]Server, settingsDNS []netip.Addr) NodeNetwork {
	var nn NodeNetwork
	for _, n := range nets {
		v := vnetNetwork(n, true)
		d := NetworkDHCP{Network: n.ID, External: v.External, DNS: addrs(n.DNS), MTU: GuestMTU}
		if len(d.DNS) == 0 {
			d.DNS = settingsDNS
		}
		if !v.External {
			d.Prefix = v.Prefix
			d.Gateway, _ = netip.ParseAddr(n.Gateway)
		}
		for _, c := range conns {
			if c.Network != n.ID || c.Server == "" {
				continue
			}
			a, err := netip.ParseAddr(c.Address)
			if err != nil {
				continue
			}
			d.Leases = append(d.Leases, DHCPLease{MAC: c.MAC, IP: a, Hostname: hostname(servers[c.Server].Name)})
			if v.External {
				v.Routed = append(v.Routed, a)
			}
			if ext, err := netip.ParseAddr(c.External); err == nil && c.Kind == ConnMapping {
				_, rules, _ := normalPorts(c.Ports)
				nn.Mappings = append(nn.Mappings, vnet.Mapping{External: ext, Internal: a, Ports: rules})
			}
		}
		nn.Networks = append(nn.Networks, v)
		nn.DHCP = append(nn.DHCP, d)
	}
	return nn
}

// hostname makes a server name fit DHCP's host name option, or gives none.
func hostname(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == '-' || r == '_' || r == '.' || r == ' ':
			b.WriteByte('-')
		}
	}
	h := strings.Trim(b.String(), "-")
	if len(h) > 63 {
		h = strings.TrimRight(h[:63], "-")
	}
	return h
}

func addrs(list []string) []netip.Addr {
	var out []netip.Addr
	for _, s := range list {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, a)
		}
	}
	return out
}

// networkVersion hashes everything in nn but its version.
func networkVersion(nn NodeNetwork) string {
	nn.Version = ""
	b, _ := json.Marshal(nn)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// pushNetwork hands node id the network it must have, unless it has that version.
// What the node must have is computed once the node's lock is held, so applies on a
// node never go back in time: a push that waited behind a newer one hands the node
// the engine's state as it is then, not as it was when the push was asked for. It
// reports errNoNetworks when the node carries none (not ready, or gone).
func (e *Engine) pushNetwork(ctx context.Context, id string) error {
	if e.cfg.ApplyNetwork == nil {
		return nil
	}
	m := e.net.nodeLock(id)
	m.Lock()
	defer m.Unlock()
	want, err := e.nodeNetworks()
	if err != nil {
		e.log.Warn("node networks", "err", err)
		return err
	}
	nn, ok := want[id]
	if !ok {
		return errNoNetworks
	}
	var n Node
	if err := e.store.Get(bucketNodes, id, &n); err != nil {
		return fmt.Errorf("node %s: %w", id, notFound(err))
	}
	e.net.mu.Lock()
	done := e.net.applied[id] == nn.Version
	e.net.mu.Unlock()
	if done {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), networkApplyTimeout)
	defer cancel()
	start := time.Now()
	if err := e.cfg.ApplyNetwork(ctx, n, nn); err != nil {
		e.log.Warn("node network not applied", "node", id, "version", nn.Version, "err", err)
		return fmt.Errorf("apply network on node %s: %w", id, err)
	}
	e.net.mu.Lock()
	if e.net.applied == nil {
		e.net.applied = map[string]string{}
	}
	e.net.applied[id] = nn.Version
	e.net.mu.Unlock()
	e.log.Info("node network applied", "node", id, "version", nn.Version, "networks", len(nn.Networks),
		"mappings", len(nn.Mappings), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// errNoNetworks says a node carries no networks now.
var errNoNetworks = errors.New("the node carries no networks")

// syncNetworks hands every node that carries networks what it must have, all at
// once, and waits. A node that fails is logged and gets it again after its next
// heartbeat.
func (e *Engine) syncNetworks(ctx context.Context) {
	e.syncNodes(ctx, "")
}

// syncNode is syncNetworks that reports node id's failure.
func (e *Engine) syncNode(ctx context.Context, id string) error {
	return e.syncNodes(ctx, id)
}

// syncFor readies node id for server s: a server with connections needs the node to
// have their networks; one without gets none, and a failure elsewhere is only logged.
func (e *Engine) syncFor(ctx context.Context, s Server, id string) error {
	if !slices.ContainsFunc(s.NICs, func(n ServerNIC) bool { return n.Connection != "" }) {
		e.syncNetworks(ctx)
		return nil
	}
	return e.syncNode(ctx, id)
}

func (e *Engine) syncNodes(ctx context.Context, must string) error {
	if e.cfg.ApplyNetwork == nil {
		return nil
	}
	nodes, err := store.List[Node](e.store, bucketNodes)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for i, n := range nodes {
		if !reachable(n) {
			continue
		}
		wg.Go(func() { errs[i] = e.pushNetwork(ctx, n.ID) })
	}
	wg.Wait()
	if must == "" {
		return nil
	}
	for i, n := range nodes {
		if n.ID != must {
			continue
		}
		switch {
		case !reachable(n) || errors.Is(errs[i], errNoNetworks):
			return fmt.Errorf("%w: node %s is not ready to carry networks", ErrUnavailable, must)
		case errs[i] != nil:
			return fmt.Errorf("%w: %v", ErrUnavailable, errs[i])
		}
		return nil
	}
	return fmt.Errorf("%w: node %s is not ready to carry networks", ErrUnavailable, must)
}

// checkNetworkVersion runs after a heartbeat: a node that reports another version
// than the engine wants gets its network again, in the background.
func (e *Engine) checkNetworkVersion(n Node, reported string) {
	if e.cfg.ApplyNetwork == nil || !reachable(n) {
		return
	}
	want, err := e.nodeNetworks()
	if err != nil {
		return
	}
	nn, ok := want[n.ID]
	if !ok || nn.Version == reported {
		return
	}
	e.net.mu.Lock()
	if e.net.inFlight == nil {
		e.net.inFlight = map[string]bool{}
	}
	if e.net.inFlight[n.ID] {
		e.net.mu.Unlock()
		return
	}
	e.net.inFlight[n.ID] = true
	// The node does not have what this engine last gave it (a reboot): give it again.
	delete(e.net.applied, n.ID)
	e.net.mu.Unlock()
	e.wg.Go(func() {
		defer func() {
			e.net.mu.Lock()
			delete(e.net.inFlight, n.ID)
			e.net.mu.Unlock()
		}()
		e.pushNetwork(e.bg, n.ID)
	})
}

// NodeNetworkOf is what node id must have of the networks, as the engine computes it
// from its state; admins only (it names every user's addresses).
func (e *Engine) NodeNetworkOf(ctx context.Context, u User, id string) (NodeNetwork, error) {
	op := fmt.Sprintf("network of node %q", id)
	if err := requireAdmin(u, op); err != nil {
		return NodeNetwork{}, err
	}
	var n Node
	if err := e.store.Get(bucketNodes, id, &n); err != nil {
		return NodeNetwork{}, fmt.Errorf("%s: %w", op, notFound(err))
	}
	want, err := e.nodeNetworks()
	if err != nil {
		return NodeNetwork{}, err
	}
	nn, ok := want[id]
	if !ok {
		return NodeNetwork{}, fmt.Errorf("%s: %w: the node is %s and carries no networks", op, ErrInvalid, n.State)
	}
	return nn, nil
}
