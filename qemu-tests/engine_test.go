package qemutests

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cairn-os/cairn/internal/testimage"
	"github.com/cairn-os/cairn/qemu-tests/engineapi"
	"github.com/cairn-os/cairn/qemu-tests/lab"
	"github.com/cairn-os/cairn/qemu-tests/vm"
)

// TestEngine boots one admin and PXE-boots one diskless compute VM from it, then
// checks, in order and on the same VMs to save boot time: the node is ready with its
// CPUs and memory; the web console shows it; a killed libvirtd is restarted; a killed
// compute VM becomes down; and after an admin power-off and boot on the same data
// disk, the node record, the CA and the admin password are still there.
func TestEngine(t *testing.T) {
	iso := requireISO(t)
	a := newArtefacts(t)
	ctx := t.Context()
	l := newLab(t, ctx, a, iso, vm.BIOS, true)

	bootCtx, cancel := context.WithTimeout(ctx, adminBootTimeout)
	defer cancel()
	if err := l.StartAdmin(bootCtx); err != nil {
		t.Fatal(err)
	}
	d, err := l.WaitAdmin(bootCtx)
	if err != nil {
		fatal(t, l, err)
	}
	t.Logf("admin: /api/v1/health answered %s after qemu started", d)
	ca := l.API.CAFingerprint()

	compute, err := l.StartCompute(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	mac := lab.ComputeMAC(0)
	id := engineapi.NodeID(mac)
	joined := false

	t.Run("ComputeNodeReady", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(ctx, nodeReadyTimeout)
		defer cancel()
		n, d, err := l.WaitNode(ctx, mac, "ready")
		if err != nil {
			fatal(t, l, err)
		}
		joined = true
		t.Logf("node %s (%s) ready at %s, %s after its VM started", n.ID, n.Name, n.Address, d)
		if n.CPUs != lab.ComputeCPUs {
			t.Errorf("node reports %d CPUs, the VM has %d", n.CPUs, lab.ComputeCPUs)
		}
		// The kernel keeps some of the VM's RAM for itself, so the node reports a
		// little less than it has; more than it has, or far less, is wrong.
		vmBytes := uint64(lab.ComputeMemoryMiB) << 20
		if n.MemoryBytes > vmBytes || n.MemoryBytes < vmBytes*8/10 {
			t.Errorf("node reports %d bytes of memory (%.2f GiB), the VM has %d MiB", n.MemoryBytes, float64(n.MemoryBytes)/(1<<30), lab.ComputeMemoryMiB)
		}
		if !strings.EqualFold(n.MAC, mac) {
			t.Errorf("node MAC %q, want %q", n.MAC, mac)
		}
		// Under TCG the node's CPU has no virtualisation extensions (vm.TCGCPU): it
		// must find that out and run its servers under TCG, not report KVM.
		if vm.Accel() == vm.TCG && n.KVM {
			t.Errorf("node reports KVM, but its VM runs under TCG with CPU %s (no AMD-V): its servers would not start", vm.TCGCPU)
		}
	})

	t.Run("ConsoleShowsNode", func(t *testing.T) {
		if !joined {
			t.Skip("the compute node never became ready")
		}
		bctx := browser(t, ctx)
		shot := a.path("nodes.png", true)
		start := time.Now()
		state, err := consoleNodeState(bctx, l.URL(), lab.AdminUser, l.Settings.AdminPassword, id, shot)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("web console: logged in and saw %s in %s; screenshot %s", id, time.Since(start).Round(time.Millisecond), shot)
		if state != "ready" {
			t.Errorf("nodes page shows %s as %q, want ready", id, state)
		}
	})

	// A second compute node, for live migration; it boots while the first one runs
	// a server.
	mac2 := lab.ComputeMAC(1)
	id2 := engineapi.NodeID(mac2)
	if _, err := l.StartCompute(ctx, 1); err != nil {
		t.Fatal(err)
	}

	master := ""
	t.Run("ServerOnComputeNode", func(t *testing.T) {
		if !joined {
			t.Skip("the compute node never became ready")
		}
		master = serverOnComputeNode(t, ctx, l, id)
	})

	t.Run("ServerMigratesLive", func(t *testing.T) {
		if master == "" {
			t.Skip("no master image on pool 0")
		}
		wctx, cancel := context.WithTimeout(ctx, nodeReadyTimeout)
		defer cancel()
		if _, _, err := l.WaitNode(wctx, mac2, "ready"); err != nil {
			fatal(t, l, err)
		}
		serverMigrates(t, ctx, l, master, id, id2)
	})

	t.Run("KilledLibvirtdRestarts", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		defer cancel()
		before, err := service(ctx, l, "libvirtd")
		if err != nil {
			fatal(t, l, err)
		}
		t.Logf("libvirtd before: %+v", before)
		// The supervisor offers no API to kill its services; the admin's debug shell
		// on its second serial port (cairn.yaml debug: true) stands in for a crash.
		dctx, dcancel := context.WithTimeout(ctx, time.Minute)
		out, err := l.Admin.DebugShell(dctx, "kill -9 $(pidof libvirtd)")
		dcancel()
		if err != nil {
			t.Fatalf("killing libvirtd through the admin's debug shell (serial port 2, log %s): %v", l.Admin.DebugLogPath(), err)
		}
		if s := strings.TrimSpace(out); s != "" {
			t.Logf("debug shell: %s", s)
		}
		var after engineapi.Service
		_, err = l.Wait(ctx, "libvirtd to be restarted", 2*time.Second, func(ctx context.Context) (bool, string, error) {
			s, err := service(ctx, l, "libvirtd")
			if err != nil {
				return false, err.Error(), nil
			}
			after = s
			return s.Restarts > before.Restarts && s.Restarts >= 1 && s.State == "running",
				fmt.Sprintf("state %s, %d restarts, pid %d", s.State, s.Restarts, s.PID), nil
		})
		if err != nil {
			fatal(t, l, err)
		}
		if after.PID == before.PID && before.PID != 0 {
			t.Errorf("libvirtd has the same pid %d after it was killed", after.PID)
		}
	})

	t.Run("KilledNodeGoesDown", func(t *testing.T) {
		if !joined {
			t.Skip("the compute node never became ready")
		}
		if err := compute.Kill(); err != nil {
			t.Fatal(err)
		}
		// Three missed heartbeats at 5 s, plus the health manager's own period.
		ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		if _, _, err := l.WaitNode(ctx, mac, "down"); err != nil {
			fatal(t, l, err)
		}
	})

	t.Run("AdminRestartKeepsState", func(t *testing.T) {
		if err := l.Admin.PowerDown(ctx, 2*time.Minute); err != nil {
			// The engine's store must survive even this, so go on; but a power
			// button that does nothing is a defect a person notices (Ctrl-C in
			// `make run` waits for it).
			t.Errorf("admin power-off: %v", err)
		}
		ctx, cancel := context.WithTimeout(ctx, adminBootTimeout)
		defer cancel()
		if err := l.StartAdmin(ctx); err != nil {
			t.Fatal(err)
		}
		d, err := l.WaitAdmin(ctx)
		if err != nil {
			fatal(t, l, err)
		}
		t.Logf("admin back after %s", d)
		if got := l.API.CAFingerprint(); got != ca {
			t.Errorf("engine CA changed over the restart: %s, was %s", got, ca)
		}
		nodes, err := l.API.Nodes(ctx)
		if err != nil {
			t.Fatalf("the admin password from first boot no longer works: %v", err)
		}
		if joined {
			found := false
			for _, n := range nodes {
				if n.ID == id {
					found = true
					if n.State != "down" && n.State != "ready" {
						t.Errorf("node %s is %q after the restart, want down or ready", id, n.State)
					}
				}
			}
			if !found {
				t.Errorf("node %s is gone after the admin restart; nodes: %+v", id, nodes)
			}
		}
		wrong := engineapi.New(l.URL(), lab.AdminUser, l.Settings.AdminPassword+"x")
		if err := wrong.Pin(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := wrong.Nodes(ctx); !errors.Is(err, engineapi.ErrUnauthorized) {
			t.Errorf("a wrong password was not refused: %v", err)
		}
	})
}

// service returns one service from GET /api/v1/services.
func service(ctx context.Context, l *lab.Lab, name string) (engineapi.Service, error) {
	all, err := l.API.Services(ctx)
	if err != nil {
		return engineapi.Service{}, err
	}
	var names []string
	for _, s := range all {
		if s.Name == name {
			return s, nil
		}
		names = append(names, s.Name)
	}
	return engineapi.Service{}, fmt.Errorf("no service %s in /api/v1/services (it lists %s)", name, strings.Join(names, ", "))
}

// serverOnComputeNode runs a server on the PXE-booted compute node from a child on
// the node's local storage whose master is on pool 0, which the node mounts from the
// admin over NFS, and reads the guest's serial console through the admin.
func serverOnComputeNode(t *testing.T, ctx context.Context, l *lab.Lab, node string) string {
	repo, err := testimage.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	img, err := testimage.Build(ctx, repo)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(ctx, 12*time.Minute)
	defer cancel()
	master, err := l.API.Upload(ctx, img, "busybox", "qcow2")
	if err != nil {
		fatal(t, l, err)
	}
	if err := l.API.Do(ctx, "PATCH", "/images/"+master, map[string]bool{"master": true}, nil); err != nil {
		fatal(t, l, err)
	}
	type server struct {
		ID, UUID, Node, State string
		Disks                 []struct{ Image string }
	}
	var s server
	req := map[string]any{"name": "nested", "vcpus": 1, "memory_mib": 128,
		"disks": []map[string]any{{"image": master, "clone": true, "clone_node": node}}}
	// The node mounts pool 0 in the background after it joins: the clone needs the
	// master's file there.
	_, err = l.Wait(ctx, "child image on the compute node", 5*time.Second, func(ctx context.Context) (bool, string, error) {
		err := l.API.Do(ctx, "POST", "/servers", req, &s)
		return err == nil, shortErr(err), nil
	})
	if err != nil {
		fatal(t, l, err)
	}
	var disk struct {
		Node, Backing, Path string
	}
	if err := l.API.Do(ctx, "GET", "/images/"+s.Disks[0].Image, nil, &disk); err != nil {
		t.Fatal(err)
	}
	if disk.Node != node || disk.Backing != master {
		t.Fatalf("the server's disk is on node %q with master %q, want node %s and master %s", disk.Node, disk.Backing, node, master)
	}
	if err := l.API.Do(ctx, "POST", "/servers/"+s.ID+"/start", nil, &s); err != nil {
		fatal(t, l, err)
	}
	if s.Node != node {
		t.Fatalf("the server runs on %q, want the compute node %s (its disk is there)", s.Node, node)
	}
	start := time.Now()
	out, err := l.API.Serial(ctx, s.ID, regexp.MustCompile(`cairn-test: uuid=\S+[\s\S]*cairn-test: ready`))
	if err != nil {
		fatal(t, l, fmt.Errorf("%w; %s; the console showed:\n%s", err, serverSays(l, s.ID), out))
	}
	if m := testimage.UUIDLine.FindStringSubmatch(out); m == nil || m[1] != s.UUID {
		t.Fatalf("the console shows uuid %v, want the server's %s", m, s.UUID)
	}
	t.Logf("the guest on the compute node was ready %s after its start", time.Since(start).Round(time.Second))
	if err := l.API.Do(ctx, "POST", "/servers/"+s.ID+"/stop", nil, nil); err != nil {
		t.Fatal(err)
	}
	return master
}

// serverMigrates runs a server from a child on pool 0 (shared over NFS) on compute
// node from, with a connection on an internal network: the guest takes its address
// from the admin's DHCP over the network's VXLAN. It moves the server live to node to
// and types on its serial console there: the guest answers, so it kept running through
// the move, and still reaches its gateway on the admin, so node to has the network.
func serverMigrates(t *testing.T, ctx context.Context, l *lab.Lab, master, from, to string) {
	ctx, cancel := context.WithTimeout(ctx, 12*time.Minute)
	defer cancel()
	var nw struct {
		ID      int
		Gateway string
	}
	if err := l.API.Do(ctx, "POST", "/networks", map[string]string{"name": "lan-test"}, &nw); err != nil {
		fatal(t, l, err)
	}
	var conn struct{ ID, Address, MAC string }
	if err := l.API.Do(ctx, "POST", "/connections", map[string]any{"kind": "internal", "network": nw.ID}, &conn); err != nil {
		fatal(t, l, err)
	}
	type server struct{ ID, UUID, Node, State string }
	var s server
	req := map[string]any{"name": "mover", "vcpus": 1, "memory_mib": 128, "lock_node": from, "start": true,
		"disks": []map[string]any{{"image": master, "clone": true}}, "connections": []string{conn.ID}}
	if err := l.API.Do(ctx, "POST", "/servers", req, &s); err != nil {
		fatal(t, l, err)
	}
	if s.Node != from || s.State != "running" {
		t.Fatalf("the server is %s on %q, want running on %s", s.State, s.Node, from)
	}
	lease := regexp.MustCompile(`cairn-test: net eth0 ip=` + regexp.QuoteMeta(conn.Address) + `\b`)
	if out, err := l.API.Serial(ctx, s.ID, lease); err != nil {
		fatal(t, l, fmt.Errorf("the guest on %s did not get its connection's address %s from the admin: %w; %s; the console showed:\n%s", from, conn.Address, err, serverSays(l, s.ID), out))
	}
	if err := l.API.Do(ctx, "PATCH", "/servers/"+s.ID, map[string]string{"lock_node": ""}, nil); err != nil {
		t.Fatal(err)
	}
	var op struct{ ID, State, Error string }
	if err := l.API.Do(ctx, "POST", "/servers/"+s.ID+"/migrate", map[string]string{"node": to}, &op); err != nil {
		fatal(t, l, err)
	}
	start := time.Now()
	for op.State == "running" || op.State == "" {
		if err := l.API.Do(ctx, "GET", "/operations/"+op.ID+"?wait=30s", nil, &op); err != nil {
			fatal(t, l, err)
		}
	}
	if op.State != "succeeded" {
		fatal(t, l, fmt.Errorf("migration %s: %s", op.State, op.Error))
	}
	t.Logf("migrated %s → %s in %s", from, to, time.Since(start).Round(time.Second))
	if err := l.API.Do(ctx, "GET", "/servers/"+s.ID, nil, &s); err != nil {
		t.Fatal(err)
	}
	if s.Node != to || s.State != "running" {
		t.Fatalf("after the migration the server is %s on %q, want running on %s", s.State, s.Node, to)
	}
	out, err := l.API.SerialType(ctx, s.ID, "echo moved-$((6*7))\n", regexp.MustCompile(`moved-42`))
	if err != nil {
		fatal(t, l, fmt.Errorf("the guest does not answer on %s after the migration: %w; %s; the console showed:\n%s", to, err, serverSays(l, s.ID), out))
	}
	ping := fmt.Sprintf("ping -c 3 -W 2 %s >/dev/null && echo gw-ok-$((6*7))\n", nw.Gateway)
	if out, err := l.API.SerialType(ctx, s.ID, ping, regexp.MustCompile(`gw-ok-42`)); err != nil {
		fatal(t, l, fmt.Errorf("the guest on %s does not reach its gateway %s on the admin: %w; %s; the console showed:\n%s", to, nw.Gateway, err, serverSays(l, s.ID), out))
	}
	if err := l.API.Do(ctx, "POST", "/servers/"+s.ID+"/stop", nil, nil); err != nil {
		t.Fatal(err)
	}
}

// serverSays is what the engine says of server id and its node, for a failure message.
func serverSays(l *lab.Lab, id string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var s struct{ State, Reason, Node string }
	if err := l.API.Do(ctx, "GET", "/servers/"+id, nil, &s); err != nil {
		return fmt.Sprintf("the engine does not say how server %s is: %v", id, err)
	}
	var n struct {
		State    string
		LastSeen string `json:"last_seen"`
	}
	if err := l.API.Do(ctx, "GET", "/nodes/"+s.Node, nil, &n); err != nil {
		return fmt.Sprintf("the engine says server %s is %s (%s) on node %s", id, s.State, s.Reason, s.Node)
	}
	return fmt.Sprintf("the engine says server %s is %s (%s) on node %s, which is %s (last seen %s)", id, s.State, s.Reason, s.Node, n.State, n.LastSeen)
}

func shortErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
