package boot

import (
	"net"
	"testing"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

func TestRouterAdvertisementMessage(t *testing.T) {
	b := routerAdvertisement(testMAC)
	m, err := icmp.ParseMessage(ipv6.ICMPTypeRouterAdvertisement.Protocol(), b)
	if err != nil {
		t.Fatal(err)
	}
	if m.Type != ipv6.ICMPTypeRouterAdvertisement || m.Code != 0 {
		t.Fatalf("type %v code %d", m.Type, m.Code)
	}
	if len(b) != 24 {
		t.Fatalf("length %d, want 16 + 8 (source link-layer address)", len(b))
	}
	if lifetime := int(b[6])<<8 | int(b[7]); lifetime != 0 {
		t.Errorf("router lifetime %d, want 0", lifetime)
	}
	if b[5] != 0 {
		t.Errorf("flags %#x, want none (no DHCPv6)", b[5])
	}
	if b[16] != 1 || b[17] != 1 || net.HardwareAddr(b[18:24]).String() != testMAC.String() {
		t.Errorf("source link-layer option %v", b[16:])
	}
	if len(routerAdvertisement(nil)) != 16 {
		t.Error("option added without a MAC")
	}
}
