package netdhcp

import (
	"errors"
	"net/netip"
	"sync"
	"testing"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func TestNextPrefix(t *testing.T) {
	for _, tc := range []struct {
		name     string
		used     []netip.Prefix
		reserved []netip.Prefix
		want     string
	}{
		{"empty", nil, nil, "10.0.0.0/24"},
		{"default lan skipped", nil, []netip.Prefix{DefaultLAN}, "10.1.0.0/24"},
		{"gap is reused", []netip.Prefix{pfx("10.1.0.0/24"), pfx("10.1.2.0/24")}, []netip.Prefix{DefaultLAN}, "10.1.1.0/24"},
		{"small used prefix blocks its /24", []netip.Prefix{pfx("10.0.0.16/28")}, nil, "10.0.1.0/24"},
		{"big used prefix is jumped", []netip.Prefix{pfx("10.0.0.0/12")}, []netip.Prefix{pfx("10.16.0.0/24")}, "10.16.1.0/24"},
		{"lan outside 10/8 changes nothing", nil, []netip.Prefix{pfx("192.168.1.0/24")}, "10.0.0.0/24"},
		{"unmasked used prefix", []netip.Prefix{pfx("10.0.0.7/24")}, nil, "10.0.1.0/24"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NextPrefix(tc.used, tc.reserved...)
			if err != nil || got != pfx(tc.want) {
				t.Errorf("NextPrefix(%v, %v) = %v, %v; want %s", tc.used, tc.reserved, got, err, tc.want)
			}
			if err := CheckPrefix(got, tc.used, tc.reserved...); err != nil {
				t.Errorf("CheckPrefix(NextPrefix result %s) = %v", got, err)
			}
		})
	}
}

func TestNextPrefixExhausted(t *testing.T) {
	_, err := NextPrefix([]netip.Prefix{pfx("10.0.0.0/9"), pfx("10.128.0.0/9")})
	if !errors.Is(err, ErrExhausted) {
		t.Fatalf("full 10/8: err = %v, want ErrExhausted", err)
	}
	got, err := NextPrefix([]netip.Prefix{pfx("10.0.0.0/9"), pfx("10.128.0.0/10"), pfx("10.192.0.0/11"), pfx("10.224.0.0/12"), pfx("10.240.0.0/13"), pfx("10.248.0.0/14"), pfx("10.252.0.0/15"), pfx("10.254.0.0/16"), pfx("10.255.0.0/17"), pfx("10.255.128.0/18"), pfx("10.255.192.0/19"), pfx("10.255.224.0/20"), pfx("10.255.240.0/21"), pfx("10.255.248.0/22"), pfx("10.255.252.0/23"), pfx("10.255.254.0/24")})
	if err != nil || got != pfx("10.255.255.0/24") {
		t.Fatalf("only the last /24 free: got %v, %v; want 10.255.255.0/24", got, err)
	}
}

func TestCheckPrefix(t *testing.T) {
	used := []netip.Prefix{pfx("10.1.0.0/24")}
	for _, tc := range []struct {
		p    netip.Prefix
		want error
	}{
		{pfx("10.1.1.0/24"), nil},
		{pfx("10.1.0.0/24"), ErrOverlap},
		{pfx("10.0.5.0/24"), ErrOverlap}, // inside the LAN
		{pfx("10.1.1.0/23"), ErrInvalid},
		{pfx("10.1.1.0/25"), ErrInvalid},
		{pfx("10.1.1.5/24"), ErrInvalid},
		{pfx("192.168.1.0/24"), ErrInvalid},
		{pfx("fd00::/64"), ErrInvalid},
		{netip.Prefix{}, ErrInvalid},
	} {
		err := CheckPrefix(tc.p, used, DefaultLAN)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("CheckPrefix(%s) = %v, want %v", tc.p, err, tc.want)
		}
	}
}

func TestHostAddr(t *testing.T) {
	p := pfx("10.3.4.0/24")
	for i, want := range map[int]string{1: "10.3.4.1", 10: "10.3.4.10", 254: "10.3.4.254"} {
		if got, err := HostAddr(p, i); err != nil || got.String() != want {
			t.Errorf("HostAddr(%s, %d) = %v, %v; want %s", p, i, got, err, want)
		}
	}
	for _, i := range []int{0, 255, -1, 300} {
		if _, err := HostAddr(p, i); !errors.Is(err, ErrInvalid) {
			t.Errorf("HostAddr(%s, %d) err = %v, want ErrInvalid", p, i, err)
		}
	}
	if _, err := HostAddr(pfx("10.3.0.0/16"), 10); !errors.Is(err, ErrInvalid) {
		t.Errorf("HostAddr on a /16: err = %v, want ErrInvalid", err)
	}
}

func TestNextHost(t *testing.T) {
	p := pfx("10.3.4.0/24")
	a := netip.MustParseAddr
	if got, err := NextHost(p, nil); err != nil || got != a("10.3.4.10") {
		t.Errorf("NextHost empty = %v, %v; want 10.3.4.10", got, err)
	}
	if got, err := NextHost(p, []netip.Addr{a("10.3.4.10"), a("10.3.4.12")}); err != nil || got != a("10.3.4.11") {
		t.Errorf("NextHost with gap = %v, %v; want 10.3.4.11", got, err)
	}
	var all []netip.Addr
	for i := FirstHost; i <= LastHost; i++ {
		h, _ := HostAddr(p, i)
		all = append(all, h)
	}
	if got, err := NextHost(p, all); !errors.Is(err, ErrExhausted) {
		t.Errorf("NextHost full = %v, %v; want ErrExhausted", got, err)
	}
}

// TestConcurrentAllocation stands in for the engine's store transaction: many creates
// at the same instant, each choosing and recording a /24 under one lock, never share one.
func TestConcurrentAllocation(t *testing.T) {
	var (
		mu   sync.Mutex
		used []netip.Prefix
		wg   sync.WaitGroup
	)
	const n = 200
	got := make([]netip.Prefix, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mu.Lock()
			defer mu.Unlock()
			p, err := NextPrefix(used, DefaultLAN)
			if err == nil {
				err = CheckPrefix(p, used, DefaultLAN)
			}
			if err == nil {
				used = append(used, p)
			}
			got[i], errs[i] = p, err
		}()
	}
	wg.Wait()
	seen := map[netip.Prefix]int{}
	for i, p := range got {
		if errs[i] != nil {
			t.Fatalf("create %d: %v", i, errs[i])
		}
		if j, dup := seen[p]; dup {
			t.Fatalf("creates %d and %d both got %s", j, i, p)
		}
		if p.Overlaps(DefaultLAN) {
			t.Fatalf("create %d got %s inside the LAN", i, p)
		}
		seen[p] = i
	}
}
