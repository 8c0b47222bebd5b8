package engine

import (
	"errors"
	"strings"
	"testing"
)

func TestPlace(t *testing.T) {
	gib := uint64(1 << 30)
	node := func(id string, cpus int, mem uint64, state NodeState, roles ...string) Node {
		if len(roles) == 0 {
			roles = []string{NodeRoleCompute}
		}
		return Node{ID: id, CPUs: cpus, MemoryBytes: mem * gib, State: state, Roles: roles}
	}
	nodes := []Node{
		node("n-a", 4, 8, NodeReady),
		node("n-b", 4, 16, NodeReady),
		node("n-c", 8, 64, NodeMaintenance),
		node("n-d", 8, 64, NodeDown),
		node("n-e", 8, 64, NodeReady, NodeRoleAdmin),
	}
	running := func(id, node string, vcpus, mib int) Server {
		return Server{ID: id, Node: node, VCPUs: vcpus, MemoryMiB: mib, State: ServerRunning}
	}
	// n-b has 16 GiB but 12 of it taken; n-a has all of its 8 free.
	servers := []Server{running("s-1", "n-b", 2, 12<<10), {ID: "s-off", Node: "n-a", VCPUs: 4, MemoryMiB: 6 << 10, State: ServerShutoff}}
	disperse, pack := DefaultSettings(), DefaultSettings()
	pack.Placement = "pack"
	cases := []struct {
		name string
		st   Settings
		d    demand
		want string
		err  string
	}{
		{"disperse takes the most free memory", disperse, demand{vcpus: 1, memoryMiB: 1024}, "n-a", ""},
		{"pack takes the least free memory that fits", pack, demand{vcpus: 1, memoryMiB: 1024}, "n-b", ""},
		{"pack skips a node that is too full", pack, demand{vcpus: 1, memoryMiB: 6 << 10}, "n-a", ""},
		{"lock to a node", disperse, demand{vcpus: 1, memoryMiB: 512, lock: "n-b"}, "n-b", ""},
		{"local disk pins", disperse, demand{vcpus: 1, memoryMiB: 512, local: "n-b"}, "n-b", ""},
		{"lock and local disagree", disperse, demand{vcpus: 1, memoryMiB: 512, lock: "n-a", local: "n-b"}, "", "locked to node n-a"},
		{"maintenance gets nothing new", disperse, demand{vcpus: 1, memoryMiB: 512, lock: "n-c"}, "", "n-c is maintenance"},
		{"down gets nothing", disperse, demand{vcpus: 1, memoryMiB: 512, lock: "n-d"}, "", "n-d is down"},
		{"admin-only node gets nothing", disperse, demand{vcpus: 1, memoryMiB: 512, lock: "n-e"}, "", "no compute role"},
		{"too big for what is free", disperse, demand{vcpus: 1, memoryMiB: 10 << 10}, "", "no node can run"},
		{"vcpu slots run out", disperse, demand{vcpus: 17, memoryMiB: 512}, "", "vCPU slots"},
		{"a missing node", disperse, demand{vcpus: 1, memoryMiB: 512, lock: "n-zz"}, "", "does not exist"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n, err := place(nodes, servers, c.st, c.d)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("got %v, %v; want an error saying %q", n.ID, err, c.err)
				}
				if !errors.Is(err, ErrQuota) && !errors.Is(err, ErrInvalid) {
					t.Fatalf("error %v is neither ErrQuota nor ErrInvalid", err)
				}
				return
			}
			if err != nil || n.ID != c.want {
				t.Fatalf("got %q, %v; want %q", n.ID, err, c.want)
			}
		})
	}
	// The server being started does not count against its own node.
	if n, err := place(nodes, servers, pack, demand{server: "s-1", vcpus: 2, memoryMiB: 12 << 10, lock: "n-b"}); err != nil || n.ID != "n-b" {
		t.Fatalf("restarting s-1 on its node: %v %v", n.ID, err)
	}
	if err := fitsSomewhere(nodes, disperse, demand{vcpus: 1, memoryMiB: 100 << 10}); err == nil || !strings.Contains(err.Error(), "no node is big enough") {
		t.Fatalf("fitsSomewhere 100 GiB: %v", err)
	}
	more := disperse
	more.MemoryOvercommit = 2
	if err := fitsSomewhere(nodes, more, demand{vcpus: 1, memoryMiB: 100 << 10}); err != nil {
		t.Fatalf("with memory overcommit 2 a 64 GiB node carries 100 GiB: %v", err)
	}
}
