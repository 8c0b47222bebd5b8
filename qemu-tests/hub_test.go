package qemutests

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cairn-os/cairn/qemu-tests/vm"
)

// TestHubLinksTwoGuests boots two Debian-kernel + busybox guests with their only NICs
// on a Hub and pings each way: the hub carries real guests' Ethernet frames, ARP
// included. It is also the harness's own proof that a guest boots under this
// accelerator, and it reports the baseline boot time.
func TestHubLinksTwoGuests(t *testing.T) {
	requireQEMUTier(t)
	logAccel(t)
	a := newArtefacts(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	kernel, initrd, err := vm.BaselineImage(ctx, vm.CacheDir())
	if err != nil {
		t.Fatal(err)
	}
	hub := newHub(t)

	type guest struct {
		*vm.VM
		ip, mac string
	}
	guests := []guest{{ip: "10.0.0.2", mac: "52:54:00:00:02:01"}, {ip: "10.0.0.3", mac: "52:54:00:00:02:02"}}
	for i := range guests {
		g := &guests[i]
		name := fmt.Sprintf("guest%d", i+1)
		g.VM = &vm.VM{
			Name: name, Memory: 256, CPUs: 1,
			Kernel: kernel, Initrd: initrd, Append: vm.BaselineAppend + " cairn.ip=" + g.ip + "/24",
			NICs:     []vm.NIC{{MAC: g.mac, Hub: hub.Path()}},
			NoReboot: true,
			Workdir:  a.path(name, false),
		}
		if err := g.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { g.Kill() })
	}
	tails := func() string {
		var b strings.Builder
		for _, g := range guests {
			fmt.Fprintf(&b, "--- last 30 lines of %s's console (%s) ---\n%s\n", g.Name, g.SerialPath(), g.SerialTail(30))
		}
		return b.String()
	}
	ready := regexp.MustCompile(regexp.QuoteMeta(vm.BaselineReady) + `.*`)
	for _, g := range guests {
		t.Logf("waiting for %s to reach its shell", g.Name)
		line, err := g.WaitSerial(ctx, ready)
		if err != nil {
			t.Fatalf("%v\n%s", err, tails())
		}
		t.Logf("%s: userspace %s after qemu started (%s)", g.Name, g.Uptime().Round(100*time.Millisecond), strings.TrimSpace(line))
	}
	if n := hub.Ports(); n != 2 {
		t.Fatalf("hub has %d guests connected, want 2\n%s", n, tails())
	}

	received := regexp.MustCompile(`(\d+) packets received`)
	for i, from := range guests {
		to := guests[1-i]
		start := time.Now()
		out, err := from.ConsoleRun(ctx, vm.BaselinePrompt, "ping -c 3 -W 5 "+to.ip)
		if err != nil {
			t.Fatalf("%s cannot ping %s over the hub: %v\n%s", from.Name, to.ip, err, tails())
		}
		m := received.FindStringSubmatch(out)
		if m == nil || m[1] == "0" {
			t.Fatalf("%s → %s: no replies:\n%s", from.Name, to.ip, out)
		}
		t.Logf("%s → %s: %s packets back in %s", from.Name, to.ip, m[1], time.Since(start).Round(time.Millisecond))
		// The reply came from the other guest's NIC, not from anything else on the
		// host: its MAC is what ARP learnt.
		neigh, err := from.ConsoleRun(ctx, vm.BaselinePrompt, "ip neigh show "+to.ip)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(neigh, to.mac) {
			t.Fatalf("%s's neighbour entry for %s is %q, want MAC %s", from.Name, to.ip, strings.TrimSpace(neigh), to.mac)
		}
	}
}
