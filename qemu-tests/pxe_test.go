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

// TestHubPXEBoot network-boots diskless guests, as the lab's compute VMs are, from a
// stand-in PXE server (busybox DHCP + HTTP) over a Hub, under SeaBIOS and under OVMF:
// the firmware's iPXE gets an address and a boot script from the server, fetches the
// kernel and initramfs over HTTP, and the guest comes up with the address DHCP gave
// it and answers the server's ping. It proves the LAN path the compute VMs take
// before the admin ISO exists, and reports how long a PXE boot takes here.
func TestHubPXEBoot(t *testing.T) {
	requireQEMUTier(t)
	logAccel(t)
	a := newArtefacts(t)
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	kernel, initrd, err := vm.BaselinePXEServer(ctx, vm.CacheDir())
	if err != nil {
		t.Fatal(err)
	}
	hub := newHub(t)
	server := &vm.VM{
		Name: "pxeserver", Memory: 512, CPUs: 1,
		Kernel: kernel, Initrd: initrd, Append: vm.BaselineAppend + " cairn.ip=10.0.0.1/16 cairn.pxe=1",
		NICs:     []vm.NIC{{MAC: "52:54:00:00:00:01", Hub: hub.Path()}},
		NoReboot: true, Workdir: a.path("pxeserver", false),
	}
	if err := server.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Kill() })
	ready := regexp.MustCompile(regexp.QuoteMeta(vm.BaselineReady) + `.*`)
	readyOrPanic := regexp.MustCompile(regexp.QuoteMeta(vm.BaselineReady) + `.*|Kernel panic.*`)
	if _, err := server.WaitSerial(ctx, ready); err != nil {
		t.Fatalf("%v\n%s", err, server.SerialTail(30))
	}
	t.Logf("pxe server up after %s", server.Uptime().Round(100*time.Millisecond))

	for i, fw := range []vm.Firmware{vm.BIOS, vm.UEFI} {
		t.Run(string(fw), func(t *testing.T) {
			mac := fmt.Sprintf("52:54:00:00:01:%02x", i+1)
			client := &vm.VM{
				Name: "pxe-" + string(fw), Memory: 1024, CPUs: 1, Firmware: fw,
				NICs:    []vm.NIC{{MAC: mac, Hub: hub.Path()}},
				Boot:    []vm.BootDevice{vm.BootNetwork},
				Workdir: a.path("client-"+string(fw), false),
			}
			if err := client.Start(ctx); err != nil {
				t.Fatal(err)
			}
			defer client.Kill()
			tails := func() string {
				return fmt.Sprintf("--- %s ---\n%s\n--- %s ---\n%s", client.Name, client.SerialTail(30), server.Name, server.SerialTail(30))
			}
			cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
			defer cancel()
			got, err := client.WaitSerial(cctx, readyOrPanic)
			if err != nil || strings.Contains(got, "Kernel panic") {
				t.Fatalf("%s %v\n%s", got, err, tails())
			}
			t.Logf("%s: PXE-booted to userspace %s after qemu started", fw, client.Uptime().Round(100*time.Millisecond))
			ip, err := client.ConsoleRun(cctx, vm.BaselinePrompt, "ip -4 -o addr show eth0")
			if err != nil {
				t.Fatal(err)
			}
			m := regexp.MustCompile(`inet (10\.0\.100\.\d+)/16`).FindStringSubmatch(ip)
			if m == nil {
				t.Fatalf("the guest's eth0 has no address from the server's DHCP pool: %q", strings.TrimSpace(ip))
			}
			if _, err := server.ConsoleRun(cctx, vm.BaselinePrompt, "ping -c 2 -W 5 "+m[1]); err != nil {
				t.Fatalf("the server cannot ping the guest at %s: %v\n%s", m[1], err, tails())
			}
		})
	}
}
