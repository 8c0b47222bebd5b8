package agent

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"testing"
)

func TestInventory(t *testing.T) {
	req, err := Inventory(context.Background())
	if err != nil {
		t.Fatalf("Inventory: %v", err)
	}
	if req.CPUs <= 0 {
		t.Errorf("CPUs = %d, want > 0", req.CPUs)
	}
	if req.MemoryBytes < 64<<20 {
		t.Errorf("MemoryBytes = %d, want a real machine's memory", req.MemoryBytes)
	}
	if len(req.NICs) == 0 {
		t.Fatal("no NICs besides loopback")
	}
	for _, n := range req.NICs {
		if n.Name == "lo" {
			t.Errorf("loopback listed: %+v", n)
		}
	}
	if req.MAC == "" {
		t.Errorf("no primary MAC among %+v", req.NICs)
	}
	if req.Name == "" {
		t.Error("no hostname")
	}
	for _, d := range req.Disks {
		for _, p := range virtualBlock {
			if strings.HasPrefix(d.Name, p) {
				t.Errorf("virtual block device listed as a disk: %+v", d)
			}
		}
		if d.SizeBytes == 0 {
			t.Errorf("disk without size: %+v", d)
		}
	}
	_, err = os.Stat("/dev/kvm")
	t.Logf("inventory: %d CPUs, %d MiB, kvm=%v (/dev/kvm present: %v), mac %s, address %s, disks %+v",
		req.CPUs, req.MemoryBytes>>20, req.KVM, err == nil, req.MAC, req.Address, req.Disks)
}

func TestStats(t *testing.T) {
	hb, err := Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if hb.MemoryFreeBytes == 0 || hb.MemoryFreeBytes > hb.MemoryBytes {
		t.Errorf("MemoryFreeBytes = %d of %d", hb.MemoryFreeBytes, hb.MemoryBytes)
	}
	if hb.UptimeSeconds <= 0 || hb.Load1 < 0 || hb.CPUs <= 0 {
		t.Errorf("Stats = %+v", hb)
	}
}

func TestInterfaceTowardLoopback(t *testing.T) {
	nic, addr, err := InterfaceToward(context.Background(), "127.0.0.1")
	if err != nil {
		t.Fatalf("InterfaceToward: %v", err)
	}
	if addr != netip.MustParseAddr("127.0.0.1") || nic.Name != "lo" || nic.MAC != "" {
		t.Errorf("InterfaceToward(127.0.0.1) = %+v, %s", nic, addr)
	}
}
