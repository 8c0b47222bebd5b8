package engine

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestJoinBadToken(t *testing.T) {
	te := openTest(t, "", nil)
	for _, tok := range []string{"", "wrong", te.JoinToken() + "x", te.JoinToken()[1:]} {
		if _, err := te.Join(context.Background(), tok, joinReq(t, "52:54:00:00:00:01", "10.0.100.1")); !errors.Is(err, ErrUnauthorized) {
			t.Errorf("token %q: %v, want ErrUnauthorized", tok, err)
		}
	}
	if nodes, _ := te.Nodes(context.Background(), te.admin(t)); len(nodes) != 0 {
		t.Fatalf("a refused join left a node: %+v", nodes)
	}
}

func TestJoinValidates(t *testing.T) {
	te := openTest(t, "", nil)
	for name, mod := range map[string]func(*JoinRequest){
		"bad mac":    func(r *JoinRequest) { r.MAC = "nope" },
		"long mac":   func(r *JoinRequest) { r.MAC = "00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01" },
		"no address": func(r *JoinRequest) { r.Address = "" },
		"no csr":     func(r *JoinRequest) { r.CSR = "" },
		"garbage csr": func(r *JoinRequest) {
			r.CSR = "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
		},
		"negative cpu": func(r *JoinRequest) { r.CPUs = -1 },
	} {
		req := joinReq(t, "52:54:00:00:00:01", "10.0.100.1")
		mod(&req)
		if _, err := te.Join(context.Background(), te.JoinToken(), req); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

func TestJoinAndRejoinKeepsID(t *testing.T) {
	ctx := context.Background()
	te := openTest(t, "", nil)
	admin := te.admin(t)
	resp, err := te.Join(ctx, te.JoinToken(), joinReq(t, "52:54:00:AA:BB:CC", "10.0.100.7"))
	if err != nil {
		t.Fatal(err)
	}
	n := resp.Node
	if n.ID != "n-525400aabbcc" || n.State != NodeReady || n.Owner != "admin" || n.MAC != "52:54:00:aa:bb:cc" || resp.HeartbeatSeconds != 5 {
		t.Fatalf("joined %+v, heartbeat %d", n, resp.HeartbeatSeconds)
	}
	block, _ := pem.Decode([]byte(resp.Certificate))
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := te.CA().VerifyNode(cert); err != nil || id != n.ID {
		t.Fatalf("node certificate: %q, %v", id, err)
	}
	if len(cert.IPAddresses) != 1 || !cert.IPAddresses[0].Equal(net.ParseIP("10.0.100.7")) {
		t.Fatalf("certificate addresses %v", cert.IPAddresses)
	}
	if resp.CA != string(te.CA().CertPEM()) {
		t.Fatal("the response does not carry the CA")
	}

	te.clock.Advance(time.Hour)
	req := joinReq(t, "52-54-00-aa-bb-cc", "10.0.100.8")
	req.CPUs, req.MemoryBytes = 16, 64<<30
	resp2, err := te.Join(ctx, te.JoinToken(), req)
	if err != nil {
		t.Fatal(err)
	}
	n2 := resp2.Node
	if n2.ID != n.ID || n2.CPUs != 16 || n2.Address != "10.0.100.8" || !n2.JoinedAt.Equal(n.JoinedAt) || !n2.LastSeen.After(n.LastSeen) {
		t.Fatalf("rejoined %+v; first %+v", n2, n)
	}
	nodes, _ := te.Nodes(ctx, admin)
	if len(nodes) != 1 {
		t.Fatalf("nodes after rejoin: %d, want 1", len(nodes))
	}
}

func TestHealthMarksDownAndBeatBringsReady(t *testing.T) {
	ctx := context.Background()
	te := openTest(t, "", nil)
	admin := te.admin(t)
	resp, err := te.Join(ctx, te.JoinToken(), joinReq(t, "52:54:00:00:00:02", "10.0.100.2"))
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Node.ID
	state := func() NodeState {
		t.Helper()
		n, err := te.Node(ctx, admin, id)
		if err != nil {
			t.Fatal(err)
		}
		return n.State
	}

	// Two missed beats: still ready.
	te.clock.Advance(2 * DefaultHeartbeatInterval)
	if err := te.CheckHealth(ctx); err != nil {
		t.Fatal(err)
	}
	if s := state(); s != NodeReady {
		t.Fatalf("after two missed beats: %s", s)
	}
	// More than three: down, and out of the totals.
	te.clock.Advance(2 * DefaultHeartbeatInterval)
	te.CheckHealth(ctx)
	if s := state(); s != NodeDown {
		t.Fatalf("after four missed beats: %s, want down", s)
	}
	info, _ := te.Info(ctx, admin)
	if info.NodesTotal != 1 || info.NodesReady != 0 || info.CPUsTotal != 0 || len(info.Settings) == 0 {
		t.Fatalf("info with a down node: %+v", info)
	}
	secs, err := te.Heartbeat(ctx, id, Heartbeat{Address: "10.0.100.3", MemoryFreeBytes: 1 << 30, Load1: 0.5})
	if err != nil || secs != 5 {
		t.Fatalf("heartbeat: %d, %v", secs, err)
	}
	n, _ := te.Node(ctx, admin, id)
	if n.State != NodeReady || n.Address != "10.0.100.3" || n.MemoryFreeBytes != 1<<30 || n.Load1 != 0.5 || !n.LastSeen.Equal(te.clock.Now()) {
		t.Fatalf("after a beat: %+v", n)
	}
	info, _ = te.Info(ctx, admin)
	if info.NodesReady != 1 || info.CPUsTotal != 4 || info.CAFingerprint != te.CA().Fingerprint() {
		t.Fatalf("info: %+v", info)
	}
	if _, err := te.Heartbeat(ctx, "n-000000000000", Heartbeat{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("beat of an unknown node: %v", err)
	}
}

func TestMaintenance(t *testing.T) {
	ctx := context.Background()
	te := openTest(t, "", nil)
	admin := te.admin(t)
	bob := te.user(t, admin, "bob", RoleUser)
	resp, _ := te.Join(ctx, te.JoinToken(), joinReq(t, "52:54:00:00:00:03", "10.0.100.3"))
	id := resp.Node.ID

	if _, err := te.SetNodeMaintenance(ctx, bob, id, true); !errors.Is(err, ErrForbidden) {
		t.Fatalf("user sets maintenance: %v", err)
	}
	if _, err := te.SetNodeMaintenance(ctx, admin, "n-nothere", true); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown node: %v", err)
	}
	n, err := te.SetNodeMaintenance(ctx, admin, id, true)
	if err != nil || n.State != NodeMaintenance {
		t.Fatalf("maintenance on: %+v %v", n, err)
	}
	// Beats, missed beats and a rejoin all leave maintenance alone.
	te.Heartbeat(ctx, id, Heartbeat{})
	te.clock.Advance(10 * DefaultHeartbeatInterval)
	te.CheckHealth(ctx)
	resp, _ = te.Join(ctx, te.JoinToken(), joinReq(t, "52:54:00:00:00:03", "10.0.100.3"))
	if resp.Node.State != NodeMaintenance {
		t.Fatalf("rejoin cleared maintenance: %s", resp.Node.State)
	}
	if _, args, err := te.Plan(ctx, mustMAC("52:54:00:00:00:03")); err != nil || len(args) == 0 {
		t.Fatalf("a node in maintenance must still boot: %v %v", args, err)
	}
	// Off, after a silence: down; after a beat: ready.
	te.clock.Advance(10 * DefaultHeartbeatInterval)
	if n, _ := te.SetNodeMaintenance(ctx, admin, id, false); n.State != NodeDown {
		t.Fatalf("maintenance off on a silent node: %s, want down", n.State)
	}
	te.Heartbeat(ctx, id, Heartbeat{})
	if n, _ := te.Node(ctx, bob, id); n.State != NodeReady {
		t.Fatalf("after a beat: %s", n.State)
	}
}

func TestLocalNodeAndPlan(t *testing.T) {
	ctx := context.Background()
	te := openTest(t, "", nil)
	admin := te.admin(t)
	n, err := te.RegisterLocalNode(ctx, JoinRequest{Name: "admin", MAC: "52:54:00:00:00:09", Address: "10.0.0.1", CPUs: 2})
	if err != nil || n.ID != LocalNodeID || !slices.Equal(n.Roles, []string{NodeRoleAdmin, NodeRoleCompute}) {
		t.Fatalf("local node %+v %v", n, err)
	}
	if err := te.LocalHeartbeat(ctx, Heartbeat{MemoryFreeBytes: 42}); err != nil {
		t.Fatal(err)
	}
	if got, _ := te.Node(ctx, admin, LocalNodeID); got.MemoryFreeBytes != 42 {
		t.Fatalf("local beat not recorded: %+v", got)
	}
	action, args, err := te.Plan(ctx, mustMAC("52:54:00:12:34:56"))
	want := []string{"cairn.role=compute", "cairn.admin=https://10.0.0.1", "cairn.token=" + te.JoinToken(), "cairn.ca=" + te.CA().Fingerprint()}
	if err != nil || action != "compute" || !slices.Equal(args, want) {
		t.Fatalf("plan = %q %v %v; want compute %v", action, args, err, want)
	}
	// The join token is made once.
	dir, tok := te.dir, te.JoinToken()
	te.Close()
	if te2 := openTest(t, dir, nil); te2.JoinToken() != tok {
		t.Fatal("the join token changed over a restart")
	}
}

func TestProbeAfterJoin(t *testing.T) {
	ctx := context.Background()
	probed := make(chan string, 4)
	te := openTest(t, "", nil, func(c *Config) {
		c.ProbeNode = func(ctx context.Context, n Node) (string, error) {
			probed <- n.ID
			return "libvirt 9.0.0, QEMU 7.2.0", nil
		}
	})
	admin := te.admin(t)
	resp, err := te.Join(ctx, te.JoinToken(), joinReq(t, "52:54:00:00:00:04", "10.0.100.4"))
	if err != nil {
		t.Fatal(err)
	}
	if id := <-probed; id != resp.Node.ID {
		t.Fatalf("probed %q", id)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, _ := te.Node(ctx, admin, resp.Node.ID)
		if n.Libvirt == "libvirt 9.0.0, QEMU 7.2.0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("libvirt version not recorded: %+v", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// An admin names a node; the name must be valid and unique, and it stays when the
// node boots and joins again with its host name.
func TestRenameNode(t *testing.T) {
	ctx := context.Background()
	te := openTest(t, "", nil)
	admin := te.admin(t)
	bob := te.user(t, admin, "bob", RoleUser)
	a, err := te.Join(ctx, te.JoinToken(), joinReq(t, "52:54:00:00:00:0a", "10.0.100.10"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := te.Join(ctx, te.JoinToken(), joinReq(t, "52:54:00:00:00:0b", "10.0.100.11"))
	if err != nil {
		t.Fatal(err)
	}
	if a.Node.Name != b.Node.Name {
		t.Fatalf("two nodes booted from one image reported names %q and %q; the test expects one host name", a.Node.Name, b.Node.Name)
	}
	name := func(s string) NodeUpdate { return NodeUpdate{Name: &s} }

	if _, err := te.UpdateNode(ctx, bob, a.Node.ID, name("rack1-a")); !errors.Is(err, ErrForbidden) {
		t.Errorf("a user renames a node: %v, want forbidden", err)
	}
	for _, bad := range []string{"", " ", "-lead", "has space", "slash/", strings.Repeat("x", 64)} {
		if _, err := te.UpdateNode(ctx, admin, a.Node.ID, name(bad)); !errors.Is(err, ErrInvalid) {
			t.Errorf("name %q: %v, want invalid", bad, err)
		}
	}
	if _, err := te.UpdateNode(ctx, admin, a.Node.ID, NodeUpdate{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("an update without a name: %v, want invalid", err)
	}
	if _, err := te.UpdateNode(ctx, admin, "n-nothere", name("x")); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown node: %v, want not found", err)
	}
	n, err := te.UpdateNode(ctx, admin, a.Node.ID, name(" rack1-a "))
	if err != nil || n.Name != "rack1-a" || !n.Named {
		t.Fatalf("rename: %+v %v", n, err)
	}
	if _, err := te.UpdateNode(ctx, admin, b.Node.ID, name("RACK1-A")); !errors.Is(err, ErrExists) {
		t.Errorf("a second node with the same name: %v, want exists", err)
	}
	if n, err := te.UpdateNode(ctx, admin, a.Node.ID, name("rack1-a")); err != nil || n.Name != "rack1-a" {
		t.Errorf("renaming a node to its own name: %+v %v", n, err)
	}

	// The node reboots and joins with its host name: the admin's name stays; the
	// other node, never named, takes the host name it reports.
	again, err := te.Join(ctx, te.JoinToken(), joinReq(t, "52:54:00:00:00:0a", "10.0.100.10"))
	if err != nil {
		t.Fatal(err)
	}
	if again.Node.Name != "rack1-a" || !again.Node.Named {
		t.Errorf("after a rejoin the node is named %q (named %v), want rack1-a", again.Node.Name, again.Node.Named)
	}
	if got, _ := te.Node(ctx, admin, b.Node.ID); got.Name != b.Node.Name || got.Named {
		t.Errorf("the other node: %+v", got)
	}
}
