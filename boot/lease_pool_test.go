package boot

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func mac(i int) net.HardwareAddr {
	return net.HardwareAddr{0x52, 0x54, 0x00, byte(i >> 16), byte(i >> 8), byte(i)}
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestPoolStablePerMAC(t *testing.T) {
	p := newPool(net.ParseIP("10.0.100.1"), net.ParseIP("10.0.199.254"), net.ParseIP("10.0.0.1"))
	seen := map[string]string{}
	for i := 0; i < 200; i++ {
		ip, err := p.allocate(mac(i), nil, t0)
		if err != nil {
			t.Fatal(err)
		}
		if other, dup := seen[ip.String()]; dup {
			t.Fatalf("%s given to %s and %s", ip, other, mac(i))
		}
		seen[ip.String()] = mac(i).String()
		if ipUint(ip) < ipUint(net.ParseIP("10.0.100.1")) || ipUint(ip) > ipUint(net.ParseIP("10.0.199.254")) {
			t.Fatalf("%s outside the pool", ip)
		}
	}
	for i := 0; i < 200; i++ {
		// Again, much later, with a different hint: the same address.
		ip, err := p.allocate(mac(i), net.ParseIP("10.0.150.150"), t0.Add(48*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if seen[ip.String()] != mac(i).String() {
			t.Fatalf("%s got %s the second time, not its first address", mac(i), ip)
		}
	}

	// A fresh pool (a restart without lease file) gives the same MAC the same address
	// while there are no collisions: the first choice comes from a hash of the MAC.
	q := newPool(net.ParseIP("10.0.100.1"), net.ParseIP("10.0.199.254"), net.ParseIP("10.0.0.1"))
	a, _ := p.allocate(mac(7), nil, t0)
	b, _ := q.allocate(mac(7), nil, t0)
	if !a.Equal(b) {
		t.Errorf("after a restart %s got %s, before %s", mac(7), b, a)
	}
}

func TestPoolHonoursFreeHint(t *testing.T) {
	p := newPool(net.ParseIP("10.0.0.10"), net.ParseIP("10.0.0.20"), net.ParseIP("10.0.0.15"))
	ip, _ := p.allocate(mac(1), net.ParseIP("10.0.0.12"), t0)
	if ip.String() != "10.0.0.12" {
		t.Errorf("free hint 10.0.0.12: got %s", ip)
	}
	ip, _ = p.allocate(mac(2), net.ParseIP("10.0.0.12"), t0)
	if ip.String() == "10.0.0.12" {
		t.Errorf("hint taken by another MAC was given again")
	}
	for _, h := range []string{"10.0.0.15", "10.0.0.9", "192.168.1.5"} {
		ip, _ := p.allocate(mac(100+len(h)), net.ParseIP(h), t0)
		if ip.String() == h {
			t.Errorf("hint %s (excluded or outside) was given", h)
		}
	}
}

func TestPoolExhaustion(t *testing.T) {
	// 10.0.0.1-10.0.0.4 without the server's 10.0.0.2: three addresses.
	p := newPool(net.ParseIP("10.0.0.1"), net.ParseIP("10.0.0.4"), net.ParseIP("10.0.0.2"))
	for i := 0; i < 3; i++ {
		ip, err := p.allocate(mac(i), nil, t0)
		if err != nil {
			t.Fatalf("address %d: %v", i, err)
		}
		if ip.String() == "10.0.0.2" {
			t.Fatal("the server's own address was handed out")
		}
		if err := p.confirm(mac(i), ip, "", t0, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	_, err := p.allocate(mac(3), nil, t0.Add(time.Minute))
	if !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("fourth client: got %v, want ErrPoolExhausted", err)
	}
	for _, want := range []string{"10.0.0.1-10.0.0.4", "3 addresses", "widen the pool", mac(3).String()} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}

	// Once a lease has expired, its address goes to the newcomer: the oldest first.
	p.confirm(mac(1), p.bound(mac(1)), "", t0.Add(-2*time.Hour), time.Hour)
	p.confirm(mac(2), p.bound(mac(2)), "", t0.Add(-3*time.Hour), time.Hour)
	old2 := p.bound(mac(2))
	ip, err := p.allocate(mac(3), nil, t0.Add(time.Minute))
	if err != nil {
		t.Fatalf("with expired leases: %v", err)
	}
	if !ip.Equal(old2) {
		t.Errorf("got %s, want %s of the lease that expired longest ago", ip, old2)
	}
	if p.bound(mac(2)) != nil {
		t.Errorf("%s still bound after its address was reused", mac(2))
	}
}

func TestPoolReleaseAndDecline(t *testing.T) {
	p := newPool(net.ParseIP("10.0.0.10"), net.ParseIP("10.0.0.11"))
	ip, _ := p.allocate(mac(1), nil, t0)
	p.confirm(mac(1), ip, "node1", t0, time.Hour)
	if p.release(mac(2), ip, t0) {
		t.Error("another MAC released the lease")
	}
	if !p.release(mac(1), ip, t0.Add(time.Minute)) {
		t.Fatal("release of own lease refused")
	}
	ls := p.leases()
	if len(ls) != 1 || !ls[0].Expiry.Equal(t0.Add(time.Minute)) || ls[0].Hostname != "node1" {
		t.Fatalf("after release: %+v", ls)
	}
	again, _ := p.allocate(mac(1), nil, t0.Add(2*time.Minute))
	if !again.Equal(ip) {
		t.Errorf("after release %s got %s, want its old %s", mac(1), again, ip)
	}

	if !p.decline(mac(1), ip, t0) {
		t.Fatal("decline refused")
	}
	other, _ := p.allocate(mac(1), nil, t0.Add(time.Minute))
	if other.Equal(ip) {
		t.Errorf("declined address %s handed out again at once", ip)
	}
}

func TestPoolSaveLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "leases.json")
	p := newPool(net.ParseIP("10.0.0.10"), net.ParseIP("10.0.0.50"))
	for i := 0; i < 5; i++ {
		ip, _ := p.allocate(mac(i), nil, t0)
		p.confirm(mac(i), ip, fmt.Sprintf("n%d", i), t0, time.Hour)
	}
	if err := p.save(path); err != nil {
		t.Fatal(err)
	}
	q := newPool(net.ParseIP("10.0.0.10"), net.ParseIP("10.0.0.50"))
	if skipped, err := q.load(path); err != nil || skipped != 0 {
		t.Fatalf("load: skipped %d, %v", skipped, err)
	}
	a, b := p.leases(), q.leases()
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("after save and load:\n%v\nwant\n%v", b, a)
	}

	// A smaller pool drops what no longer fits.
	r := newPool(net.ParseIP("10.0.0.10"), net.ParseIP("10.0.0.10"))
	skipped, err := r.load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.leases())+skipped != 5 || skipped == 0 {
		t.Errorf("smaller pool: %d kept, %d skipped", len(r.leases()), skipped)
	}

	// No file is no error.
	if _, err := r.load(filepath.Join(dir, "none.json")); err != nil {
		t.Errorf("missing lease file: %v", err)
	}
	if err := os.WriteFile(path, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := r.load(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("corrupt lease file: got %v, want an error naming the file", err)
	}
}
