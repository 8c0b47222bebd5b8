package engine

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// hostReserveBytes is memory a node keeps for itself (supervisor, libvirtd, page
// cache) that servers are never given.
const hostReserveBytes = 512 << 20

// demand is what a server asks of a node.
type demand struct {
	server    string
	vcpus     int
	memoryMiB int
	// lock is the node the server is locked to; local is the node whose local
	// storage holds one of its disks. Either pins the server.
	lock, local string
}

// capacity is a node's room for servers.
type capacity struct {
	node            Node
	memTotal        int64 // bytes servers may be given in all
	memFree         int64
	slotsTotal      int
	slotsFree       int
	runningServers  int
	placementReason string
}

// occupying reports whether a server in this state holds its node's resources.
func occupying(s ServerState) bool {
	return s == ServerRunning || s == ServerPaused || s == ServerStopping || s == ServerUnknown
}

// capacities works out every node's room from the servers placed on it.
func capacities(nodes []Node, servers []Server, st Settings, except string) []capacity {
	var out []capacity
	for _, n := range nodes {
		c := capacity{node: n}
		c.memTotal = int64(float64(n.MemoryBytes)*st.MemoryOvercommit) - hostReserveBytes
		c.slotsTotal = int(float64(n.CPUs) * st.CPUOvercommit)
		c.memFree, c.slotsFree = c.memTotal, c.slotsTotal
		for _, s := range servers {
			if s.Node != n.ID || s.ID == except || !occupying(s.State) {
				continue
			}
			c.memFree -= int64(s.MemoryMiB) << 20
			c.slotsFree -= s.VCPUs
			c.runningServers++
		}
		out = append(out, c)
	}
	return out
}

// place chooses the node for a server: a ready compute node with the memory and
// vCPU slots free, the one it is pinned to if any; "disperse" takes the node with
// the most memory free, "pack" the one with the least that still fits.
func place(nodes []Node, servers []Server, st Settings, d demand) (Node, error) {
	pin := d.lock
	if d.local != "" {
		if pin != "" && pin != d.local {
			return Node{}, fmt.Errorf("%w: the server is locked to node %s but a disk is on node %s's local storage", ErrInvalid, pin, d.local)
		}
		pin = d.local
	}
	caps := capacities(nodes, servers, st, d.server)
	var fits []capacity
	var why []string
	need := int64(d.memoryMiB) << 20
	for _, c := range caps {
		n := c.node
		if pin != "" && n.ID != pin {
			continue
		}
		switch {
		case !slices.Contains(n.Roles, NodeRoleCompute):
			why = append(why, n.ID+" has no compute role")
		case n.State != NodeReady:
			why = append(why, fmt.Sprintf("%s is %s", n.ID, n.State))
		case c.memFree < need:
			why = append(why, fmt.Sprintf("%s has %d MiB free for servers", n.ID, max(c.memFree, 0)>>20))
		case c.slotsFree < d.vcpus:
			why = append(why, fmt.Sprintf("%s has %d vCPU slots free", n.ID, max(c.slotsFree, 0)))
		default:
			fits = append(fits, c)
		}
	}
	if len(fits) == 0 {
		if pin != "" && len(why) == 0 {
			return Node{}, fmt.Errorf("%w: node %s does not exist", ErrInvalid, pin)
		}
		if len(why) == 0 {
			why = append(why, "there are no nodes")
		}
		return Node{}, fmt.Errorf("%w: no node can run %d vCPUs and %d MiB now (%s); stop other servers, add nodes or lower the size",
			ErrQuota, d.vcpus, d.memoryMiB, strings.Join(why, "; "))
	}
	slices.SortFunc(fits, func(a, b capacity) int {
		if st.Placement == "pack" {
			return cmp.Or(cmp.Compare(a.memFree, b.memFree), cmp.Compare(a.node.ID, b.node.ID))
		}
		return cmp.Or(cmp.Compare(b.memFree, a.memFree), cmp.Compare(a.runningServers, b.runningServers), cmp.Compare(a.node.ID, b.node.ID))
	})
	return fits[0].node, nil
}

// fitsSomewhere checks that a server of this size could run on some node at all,
// with nothing else running: a size beyond every node is refused when the server is
// made, not at its first start.
func fitsSomewhere(nodes []Node, st Settings, d demand) error {
	need := int64(d.memoryMiB) << 20
	var biggest int64
	slots := 0
	for _, c := range capacities(nodes, nil, st, "") {
		if !slices.Contains(c.node.Roles, NodeRoleCompute) {
			continue
		}
		if (d.lock != "" && c.node.ID != d.lock) || (d.local != "" && c.node.ID != d.local) {
			continue
		}
		if c.memTotal >= need && c.slotsTotal >= d.vcpus {
			return nil
		}
		biggest, slots = max(biggest, c.memTotal), max(slots, c.slotsTotal)
	}
	return fmt.Errorf("%w: no node is big enough for %d vCPUs and %d MiB (the largest takes %d MiB and %d vCPUs with the overcommit settings); lower the size",
		ErrQuota, d.vcpus, d.memoryMiB, max(biggest, 0)>>20, slots)
}
