package dashboard

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/supervisor/service"
	"github.com/cairn-os/cairn/ui/layout"
)

// subtitle: "Engine lab · Cairn 0.1.0 · up 3 h 12 min".
func subtitle(d view) string {
	var parts []string
	if d.info.Name != "" {
		parts = append(parts, "Engine "+d.info.Name)
	}
	if d.info.Version != "" {
		parts = append(parts, "Cairn "+d.info.Version)
	}
	if !d.info.StartedAt.IsZero() {
		parts = append(parts, "up "+layout.Duration(d.now.Sub(d.info.StartedAt)))
	}
	return strings.Join(parts, " · ")
}

func nodesNote(d view) string {
	if d.info.NodesTotal == 0 {
		return "No nodes have joined yet"
	}
	count := map[engine.NodeState]int{}
	for _, n := range d.nodes {
		count[n.State]++
	}
	var parts []string
	for _, s := range []engine.NodeState{engine.NodeJoining, engine.NodeMaintenance, engine.NodeDown} {
		if count[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", count[s], s))
		}
	}
	if len(parts) == 0 {
		return "All nodes ready"
	}
	return strings.Join(parts, " · ")
}

func cpusNote(d view) string {
	if d.info.NodesTotal == 1 {
		return "On 1 node"
	}
	return fmt.Sprintf("On %d nodes", d.info.NodesTotal)
}

// healthy counts the services that run, or that ran once and succeeded (one-shots).
func healthy(d view) int {
	n := 0
	for _, s := range d.services {
		if s.State == service.StateRunning || s.State == service.StateDone {
			n++
		}
	}
	return n
}

func servicesNote(d view) string {
	bad := 0
	for _, s := range d.services {
		if s.State == service.StateFailed || s.State == service.StateBackoff {
			bad++
		}
	}
	switch {
	case len(d.services) == 0:
		return "None supervised here"
	case bad == 1:
		return "1 needs attention"
	case bad > 1:
		return fmt.Sprintf("%d need attention", bad)
	}
	return "All healthy"
}

func serviceMessage(s engine.ServiceStatus) string {
	if s.Message != "" {
		return s.Message
	}
	if s.State != service.StateRunning && s.LastExit != "" {
		return "Last exit: " + s.LastExit
	}
	return ""
}

func pid(p int) string {
	if p <= 0 {
		return "—"
	}
	return strconv.Itoa(p)
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
