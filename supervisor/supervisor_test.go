package supervisor

import (
	"net/netip"
	"testing"

	"github.com/cairn-os/cairn/internal/testutil"
	"github.com/cairn-os/cairn/supervisor/engine"
)

func TestExportsFile(t *testing.T) {
	lan := netip.MustParsePrefix("10.0.0.1/16")
	got := exportsFile(poolExports([]engine.Pool{
		{ID: 3, Path: "/srv/big"},
		{ID: 0, Path: "/var/lib/cairn/pools/0"},
	}, lan))
	testutil.Golden(t, "exports", got)
}

func TestPoolInsideLAN(t *testing.T) {
	for _, tc := range []struct{ lan, start, end string }{
		{"10.0.0.1/16", "10.0.100.1", "10.0.199.254"},
		{"192.168.7.1/24", "192.168.7.128", "192.168.7.254"},
	} {
		lan := netip.MustParsePrefix(tc.lan)
		if got := poolAddr(lan, 100, 1).String(); got != tc.start {
			t.Errorf("%s: pool start %s, want %s", tc.lan, got, tc.start)
		}
		if got := poolAddr(lan, 199, 254).String(); got != tc.end {
			t.Errorf("%s: pool end %s, want %s", tc.lan, got, tc.end)
		}
	}
}

func TestRoleFromFlag(t *testing.T) {
	if r, err := role(Config{Role: "compute"}); err != nil || r != RoleCompute {
		t.Fatalf("role compute: %q %v", r, err)
	}
	if _, err := role(Config{Role: "storage"}); err == nil {
		t.Fatal("role storage accepted; want an error naming admin and compute")
	}
}
