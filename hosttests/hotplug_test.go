package hosttests

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/supervisor/vnet"
)

// bridgesOnly applies the networks of the host (the lab's only libvirt node) as plain
// bridges: no gateway address, no forwarding, DHCP or NAT on the test machine's own
// namespace. The gateway side is TestConnectionsReachability's, in namespaces.
func bridgesOnly(t *testing.T) func(*engine.Config) {
	node := &vnet.Node{Logger: slog.New(slog.DiscardHandler)}
	t.Cleanup(func() {
		if err := node.Apply(context.Background(), vnet.State{}); err != nil {
			t.Errorf("remove the test's bridges: %v", err)
		}
	})
	return func(c *engine.Config) {
		c.ApplyNetwork = func(ctx context.Context, n engine.Node, nn engine.NodeNetwork) error {
			if n.ID != engine.LocalNodeID {
				return nil
			}
			var s vnet.State
			for _, nw := range nn.Networks {
				s.Networks = append(s.Networks, vnet.Network{ID: nw.ID, Prefix: nw.Prefix, External: nw.External})
			}
			return node.Apply(ctx, s)
		}
	}
}

// TestConnectionHotPlug runs a real guest with a connection and plugs a second one
// in and out while it runs: the guest sees each NIC with its connection's MAC and the
// VXLAN-sized MTU, and sees the hot-plugged one go again.
func TestConnectionHotPlug(t *testing.T) {
	l := newLab(t, "", bridgesOnly(t))
	img := l.upload(testImage(t), "busybox", "qcow2", 0)
	var nw engine.Network
	l.must(201, "POST", "/networks", engine.NetworkRequest{Name: "lab"}, &nw)
	var boot, extra engine.Connection
	l.must(201, "POST", "/connections", engine.ConnectionRequest{Kind: engine.ConnInternal, Network: nw.ID}, &boot)
	l.must(201, "POST", "/connections", engine.ConnectionRequest{Kind: engine.ConnInternal, Network: nw.ID}, &extra)

	var s engine.Server
	l.must(201, "POST", "/servers", engine.ServerRequest{Name: "plug", VCPUs: 1, MemoryMiB: 256,
		Disks: []engine.ServerDiskRequest{{Image: img.ID}}, Connections: []string{boot.ID}, Start: true}, &s)
	l.track(s)
	nicLine := func(mac string) *regexp.Regexp {
		return regexp.MustCompile(`cairn-test: nic (eth\d) ` + regexp.QuoteMeta(mac) + ` mtu=1450`)
	}
	l.serial(s.ID, regexp.MustCompile(nicLine(boot.MAC).String()+`[\s\S]*cairn-test: ready`), 3*time.Minute)

	l.must(200, "POST", "/connections/"+extra.ID+"/attach", map[string]string{"server": s.ID}, nil)
	out := l.serial(s.ID, nicLine(extra.MAC), time.Minute)
	iface := nicLine(extra.MAC).FindStringSubmatch(out)[1]
	l.must(200, "GET", "/servers/"+s.ID, nil, &s)
	if len(s.NICs) != 2 || s.NICs[1].Connection != extra.ID || s.NICs[1].Address != extra.Address {
		t.Errorf("server NICs after the hot-plug: %+v; want the boot NIC and %s with %s", s.NICs, extra.ID, extra.Address)
	}
	if status, msg := l.do("DELETE", fmt.Sprintf("/networks/%d", nw.ID), nil, nil); status != 409 || !strings.Contains(msg, extra.ID) {
		t.Errorf("delete a network in use: %d %s; want 409 naming the connections", status, msg)
	}
	if status, msg := l.do("POST", "/connections/"+extra.ID+"/attach", map[string]string{"server": s.ID}, nil); status != 409 {
		t.Errorf("attach an attached connection: %d %s; want 409", status, msg)
	}

	l.must(200, "POST", "/connections/"+extra.ID+"/detach", nil, nil)
	l.serial(s.ID, regexp.MustCompile(`cairn-test: nic `+iface+` gone`), time.Minute)
	l.must(200, "GET", "/servers/"+s.ID, nil, &s)
	if len(s.NICs) != 1 || s.NICs[0].Connection != boot.ID {
		t.Errorf("server NICs after the detach: %+v; want only the boot NIC", s.NICs)
	}

	l.must(200, "POST", "/servers/"+s.ID+"/stop", nil, nil)
	l.waitState(s.ID, engine.ServerShutoff, 30*time.Second)
	l.must(200, "DELETE", "/servers/"+s.ID, nil, nil)
	// The deleted server's connection is detached and keeps its address.
	var c engine.Connection
	l.must(200, "GET", "/connections/"+boot.ID, nil, &c)
	if c.Server != "" || c.Address != boot.Address {
		t.Errorf("connection of a deleted server: %+v; want detached with %s", c, boot.Address)
	}
	for _, id := range []string{boot.ID, extra.ID} {
		l.must(204, "DELETE", "/connections/"+id, nil, nil)
	}
	l.must(204, "DELETE", fmt.Sprintf("/networks/%d", nw.ID), nil, nil)
}
