package image

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/cairn-os/cairn/internal/testutil"
)

// TestBootSmoke boots the built images in qemu (TCG) and reads the serial console:
// the ISO from CD and from a USB stick, under SeaBIOS and OVMF, and the compute
// kernel + initramfs directly. It needs CAIRN_ISO_SMOKE=1 and a built
// build/cairn.iso and build/compute (`make iso`); it takes a few minutes.
//
// Each boot passes when stage 1 hands over ("switching root") or the compute kernel
// runs /init, and then no kernel panic follows within a quiet period. With
// CAIRN_SMOKE_EXPECT set, the boot must print that text instead (a throwaway
// supervisor that prints a marker checks more).
func TestBootSmoke(t *testing.T) {
	if os.Getenv("CAIRN_ISO_SMOKE") != "1" {
		t.Skip("set CAIRN_ISO_SMOKE=1 to boot build/cairn.iso in qemu")
	}
	qemu := testutil.RequireProgram(t, "qemu-system-x86_64")
	iso := envOr("CAIRN_ISO", "../build/cairn.iso")
	compute := envOr("CAIRN_COMPUTE", "../build/compute")
	if _, err := os.Stat(iso); err != nil {
		t.Skipf("no ISO: %v (run `make iso`)", err)
	}
	ovmf := "/usr/share/ovmf/OVMF.fd"
	usb := []string{"-drive", "if=none,id=u,file=" + iso + ",format=raw,readonly=on",
		"-device", "qemu-xhci", "-device", "usb-storage,drive=u,bootindex=0"}
	cases := []struct {
		name string
		args []string
		uefi bool
	}{
		{"bios-cd", []string{"-cdrom", iso}, false},
		{"uefi-cd", []string{"-bios", ovmf, "-cdrom", iso}, true},
		{"bios-usb", usb, false},
		{"uefi-usb", append([]string{"-bios", ovmf}, usb...), true},
		{"compute", []string{"-kernel", filepath.Join(compute, "vmlinuz"),
			"-initrd", filepath.Join(compute, "initramfs.cpio.zst"),
			"-append", "cairn.role=compute console=tty0 console=ttyS0,115200"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.uefi {
				if _, err := os.Stat(ovmf); err != nil {
					t.Skipf("no OVMF: %v (install ovmf)", err)
				}
			}
			bootAndWatch(t, qemu, c.args, c.name == "compute")
		})
	}
}

var (
	handedOver = regexp.MustCompile(`msg="switching root"`)
	ranInit    = regexp.MustCompile(`Run /init as init process`)
	failed     = regexp.MustCompile(`Kernel panic|Cairn could not start|Attempted to kill init`)
)

func bootAndWatch(t *testing.T, qemu string, args []string, compute bool) {
	log := filepath.Join(t.TempDir(), "serial.log")
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	all := append([]string{"-accel", "tcg", "-m", "2048", "-display", "none", "-monitor", "none",
		"-serial", "file:" + log, "-no-reboot", "-device", "virtio-rng-pci"}, args...)
	cmd := exec.CommandContext(ctx, qemu, all...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			b, _ := os.ReadFile(log)
			t.Logf("serial log:\n%s", tail(b, 60))
		}
	}()

	start := time.Now()
	expect := os.Getenv("CAIRN_SMOKE_EXPECT")
	started := handedOver
	if compute {
		started = ranInit
	}
	var since time.Time
	for {
		b, _ := os.ReadFile(log)
		switch {
		case failed.Match(b):
			t.Fatalf("boot failed after %s: %s", time.Since(start).Round(time.Second), failed.Find(b))
		case expect != "" && bytes.Contains(b, []byte(expect)):
			t.Logf("%q after %s", expect, time.Since(start).Round(time.Second))
			return
		case expect == "" && since.IsZero() && started.Match(b):
			since = time.Now()
			t.Logf("%q after %s", started.String(), time.Since(start).Round(time.Second))
		case expect == "" && !since.IsZero() && time.Since(since) > 20*time.Second:
			return // stage 2 has run for 20 s without a panic
		}
		select {
		case err := <-exited:
			exited <- err
			b, _ := os.ReadFile(log)
			if expect != "" && bytes.Contains(b, []byte(expect)) {
				return
			}
			if expect == "" && started.Match(b) && !failed.Match(b) {
				return // powered off on purpose
			}
			t.Fatalf("qemu exited (%v) before the boot got far enough", err)
		case <-ctx.Done():
			t.Fatal("boot timed out")
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func tail(b []byte, n int) []byte {
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return bytes.Join(lines, []byte("\n"))
}
