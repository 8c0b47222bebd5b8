package nodes

import (
	"fmt"
	"slices"
	"strings"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/ui/layout"
)

func displayName(n engine.Node) string {
	if n.Name != "" {
		return n.Name
	}
	return n.ID
}

func hasRole(n engine.Node, role string) bool {
	return slices.Contains(n.Roles, role)
}

func roles(n engine.Node) string {
	if len(n.Roles) == 0 {
		return "compute node"
	}
	return strings.Join(n.Roles, " + ") + " node"
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func diskTotal(n engine.Node) uint64 {
	var t uint64
	for _, d := range n.Disks {
		t += d.SizeBytes
	}
	return t
}

func disksNote(n engine.Node) string {
	switch len(n.Disks) {
	case 0:
		return "No local disks"
	case 1:
		return "1 local disk"
	}
	return fmt.Sprintf("%d local disks", len(n.Disks))
}

// listSubtitle sums up the nodes: "4 nodes · 3 ready · 48 vCPUs · 188 GiB memory".
func listSubtitle(list []engine.Node) string {
	if len(list) == 0 {
		return "Machines that PXE-boot from this engine join it as compute nodes."
	}
	ready, cpus := 0, 0
	var mem uint64
	for _, n := range list {
		if n.State == engine.NodeReady {
			ready++
		}
		cpus += n.CPUs
		mem += n.MemoryBytes
	}
	nodes := "nodes"
	if len(list) == 1 {
		nodes = "node"
	}
	return fmt.Sprintf("%d %s · %d ready · %s · %s memory", len(list), nodes, ready, layout.VCPUs(cpus), layout.Bytes(mem))
}
