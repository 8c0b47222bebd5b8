package engine

import (
	"context"
	"fmt"
)

// Info describes the engine: name, URL, CA fingerprint and the totals over the nodes
// that are not down. Warnings name what needs attention.
func (e *Engine) Info(ctx context.Context, u User) (Info, error) {
	if err := requireUser(u, "show engine"); err != nil {
		return Info{}, err
	}
	nodes, err := e.Nodes(ctx, u)
	if err != nil {
		return Info{}, fmt.Errorf("show engine: %w", err)
	}
	info := Info{
		Name:          e.cfg.Name,
		Version:       e.cfg.Version,
		URL:           e.cfg.URL,
		CAFingerprint: e.ca.Fingerprint(),
		StartedAt:     e.started,
		NodesTotal:    len(nodes),
	}
	for _, n := range nodes {
		if n.State == NodeDown {
			info.Settings = append(info.Settings, fmt.Sprintf("node %s (%s) is down since %s", n.ID, n.Name, n.LastSeen.Format("2006-01-02 15:04:05 MST")))
			continue
		}
		if n.State == NodeReady {
			info.NodesReady++
		}
		info.CPUsTotal += n.CPUs
		info.MemoryBytesTotal += n.MemoryBytes
		info.MemoryFreeBytes += n.MemoryFreeBytes
	}
	if len(nodes) == 0 {
		info.Settings = append(info.Settings, "no compute node has joined yet; PXE-boot a machine on the LAN")
	}
	return info, nil
}

// Services lists the supervisor's services and their state.
func (e *Engine) Services(ctx context.Context, u User) ([]ServiceStatus, error) {
	if err := requireUser(u, "list services"); err != nil {
		return nil, err
	}
	if e.cfg.Services == nil {
		return []ServiceStatus{}, nil
	}
	out := e.cfg.Services()
	if out == nil {
		out = []ServiceStatus{}
	}
	return out, nil
}
