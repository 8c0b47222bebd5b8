package main

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/cairn-os/cairn/supervisor/engine"
)

func TestNetworksAndConnectionsThroughTheCLI(t *testing.T) {
	e, url := testEngine(t)
	c := loggedIn(t, e, url)

	var lab engine.Network
	c.jsonOf(&lab, "networks", "create", "lab", "--dns", "9.9.9.9")
	prefix, err := netip.ParsePrefix(lab.Prefix)
	if err != nil || prefix.Bits() != 24 || lab.Kind != engine.NetworkInternal || strings.Join(lab.DNS, ",") != "9.9.9.9" {
		t.Fatalf("created network %+v", lab)
	}
	if out := c.ok("networks", "list"); !strings.Contains(out, "lab") || !strings.Contains(out, lab.Prefix) || !strings.Contains(out, "9.9.9.9") {
		t.Fatalf("networks list:\n%s", out)
	}
	// The same /24 again: the engine's refusal, a non-zero exit.
	if code, _, errOut := c.run("", "networks", "create", "lab2", "--prefix", lab.Prefix); code != exitError || !strings.Contains(errOut, lab.Prefix) {
		t.Fatalf("a /24 in use: exit %d, %s", code, errOut)
	}

	var s engine.Server
	c.jsonOf(&s, "servers", "create", "web1", "--memory", "256M")
	var lan engine.Connection
	c.jsonOf(&lan, "connections", "create", "lan", "--kind", "internal", "--network", "lab", "--server", "web1")
	if a, err := netip.ParseAddr(lan.Address); err != nil || !prefix.Contains(a) || lan.Server != s.ID || lan.Network != lab.ID {
		t.Fatalf("internal connection %+v", lan)
	}

	// Mistakes the CLI catches, and one the engine does.
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--kind", "mapping"}, exitUsage, "give --network"},
		{[]string{"--kind", "bridge"}, exitUsage, "give internal, external or mapping"},
		{[]string{"--kind", "external", "--network", "lab"}, exitUsage, "leave out --network"},
		{[]string{"--network", "lab"}, exitUsage, `"kind"`},
		{[]string{"--kind", "internal", "--network", "nowhere"}, exitNotFound, `network "nowhere" not found`},
		{[]string{"--kind", "mapping", "--network", "lab", "--ports", "80,http"}, exitError, `port "http" must be a number from 1 to 65535`},
		{[]string{"--kind", "external"}, exitError, "external_range"},
	} {
		code, _, errOut := c.run("", append([]string{"connections", "create"}, tc.args...)...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("connections create %s: exit %d, %s; want exit %d and %q", strings.Join(tc.args, " "), code, errOut, tc.code, tc.want)
		}
	}

	var st engine.Settings
	c.jsonOf(&st, "settings", "set", "--external-range", "198.51.100.10-198.51.100.20", "--external-quota", "2", "--dns", "1.1.1.1")
	if st.ExternalRange != "198.51.100.10-198.51.100.20" || st.ExternalQuota != 2 || strings.Join(st.DNS, ",") != "1.1.1.1" || st.Placement != "disperse" {
		t.Fatalf("settings after set: %+v", st)
	}
	if out := c.ok("settings", "show"); !strings.Contains(out, "198.51.100.10-198.51.100.20") || !strings.Contains(out, "1.1.1.1") {
		t.Fatalf("settings show:\n%s", out)
	}

	var pub engine.Connection
	c.jsonOf(&pub, "connections", "create", "pub", "--kind", "mapping", "--network", "lab", "--ports", "80,443")
	if pub.External != "198.51.100.10" || pub.Ports != "80,443" || pub.Server != "" {
		t.Fatalf("mapping %+v", pub)
	}
	out := c.ok("connections", "list")
	for _, want := range []string{"lan", lan.Address, "web1 (" + s.ID + ")", "pub", "198.51.100.10", "80,443", "mapping"} {
		if !strings.Contains(out, want) {
			t.Errorf("connections list lacks %q:\n%s", want, out)
		}
	}
	var attached engine.Connection
	c.jsonOf(&attached, "connections", "attach", "pub", "web1")
	if attached.Server != s.ID {
		t.Fatalf("attached %+v", attached)
	}
	if out := c.ok("servers", "show", "web1"); !strings.Contains(out, pub.Address+" → 198.51.100.10 ("+pub.ID) || !strings.Contains(out, lan.Address) {
		t.Fatalf("servers show after the attach:\n%s", out)
	}
	if out := c.ok("servers", "list"); !strings.Contains(out, pub.Address+"→198.51.100.10") {
		t.Fatalf("servers list after the attach:\n%s", out)
	}
	var ported engine.Connection
	c.jsonOf(&ported, "connections", "ports", "pub", "udp/53,192.168.0.0/16:445")
	if ported.Ports != "udp/53,192.168.0.0/16:445" {
		t.Fatalf("ports %q", ported.Ports)
	}
	if code, _, errOut := c.run("", "connections", "ports", "lan", "80"); code != exitError || !strings.Contains(errOut, "only mapping connections take a port list") {
		t.Errorf("ports of an internal connection: exit %d, %s", code, errOut)
	}
	if out := c.ok("usage"); !strings.Contains(out, "1 of 2") {
		t.Errorf("usage:\n%s", out)
	}
	var detached engine.Connection
	c.jsonOf(&detached, "connections", "detach", "pub")
	if detached.ID != pub.ID || detached.Server != "" || detached.External != "198.51.100.10" {
		t.Fatalf("detached %+v", detached)
	}

	// A network in use is not deleted: the engine says which connections hold it.
	if code, _, errOut := c.run("", "networks", "delete", "lab"); code != exitError || !strings.Contains(errOut, "delete them first") ||
		!strings.Contains(errOut, lan.ID) {
		t.Fatalf("delete a network in use: exit %d, %s", code, errOut)
	}
	if out := c.ok("networks", "show", "lab"); !strings.Contains(out, lan.ID+" "+lan.Address) {
		t.Errorf("networks show:\n%s", out)
	}
	var renamed, withDNS, cleared engine.Network
	c.jsonOf(&renamed, "networks", "rename", "lab", "office")
	c.jsonOf(&withDNS, "networks", "dns", "office", "8.8.8.8", "8.8.4.4")
	if renamed.Name != "office" || strings.Join(withDNS.DNS, ",") != "8.8.8.8,8.8.4.4" {
		t.Fatalf("renamed network %+v, then %+v", renamed, withDNS)
	}
	c.jsonOf(&cleared, "networks", "dns", "office")
	if cleared.ID != lab.ID || len(cleared.DNS) != 0 {
		t.Fatalf("name servers after clearing them: %+v", cleared)
	}

	// Two connections of one name: the CLI asks for the ID.
	c.ok("connections", "create", "lan", "--kind", "internal", "--network", "office")
	if code, _, errOut := c.run("", "connections", "show", "lan"); code != exitUsage || !strings.Contains(errOut, "2 connections are named") {
		t.Errorf("show an ambiguous name: exit %d, %s", code, errOut)
	}
	if out := c.ok("connections", "show", lan.ID); !strings.Contains(out, lan.MAC) {
		t.Errorf("connections show by ID:\n%s", out)
	}
	conns, err := c.apiClient().Connections(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range conns {
		if out := c.ok("connections", "delete", x.ID); !strings.Contains(out, "Deleted connection "+x.ID) {
			t.Errorf("connections delete:\n%s", out)
		}
	}
	c.ok("networks", "delete", "office")
	if code, _, _ := c.run("", "networks", "show", "office"); code != exitNotFound {
		t.Errorf("show a deleted network: exit %d", code)
	}
}
