package image

import (
	"strings"
	"testing"
	"time"

	"github.com/cairn-os/cairn/internal/testutil"
)

func TestGrubConfig(t *testing.T) {
	got := GrubConfig("1.2.3")
	testutil.Golden(t, "grub.cfg", got)
	for _, want := range []string{"linux /boot/vmlinuz cairn.role=admin console=tty0 console=ttyS0,115200\n", "initrd /boot/initrd.img", "set timeout=1", "cairn.debug=1", "terminal_output console serial"} {
		if !strings.Contains(got, want) {
			t.Errorf("grub.cfg lacks %q", want)
		}
	}
}

func TestGrubLoadConfig(t *testing.T) {
	epoch := time.Unix(1700000000, 0)
	if got, want := ISOUUID(epoch), "2023-11-14-22-13-20-00"; got != want {
		t.Errorf("ISOUUID = %q, want %q", got, want)
	}
	if got, want := FATSerial(epoch), "6553F100"; got != want {
		t.Errorf("FATSerial = %q, want %q", got, want)
	}
	testutil.Golden(t, "load.cfg", GrubLoadConfig(ISOUUID(epoch)))
}

func TestSystemFiles(t *testing.T) {
	files := SystemFiles("compute", []string{"kvm", "virtio_net"})
	var b strings.Builder
	for _, p := range sortedPaths(files) {
		b.WriteString("==> " + p + " <==\n" + files[p])
	}
	b.WriteString("==> " + ReleasePath + " <==\n" + CairnRelease(Release{Version: "1.2.3", Role: "compute"}))
	testutil.Golden(t, "etc-compute", b.String())
	if !strings.Contains(files["etc/passwd"], "libvirt-qemu:x:64055:64055:") {
		t.Error("passwd lacks libvirt-qemu")
	}
	for _, l := range strings.Split(strings.TrimSpace(files["etc/shadow"]), "\n") {
		if f := strings.Split(l, ":"); len(f) < 2 || f[1] != "!" {
			t.Errorf("shadow line %q: account not locked", l)
		}
	}
	if SystemFiles("admin", nil)["etc/hostname"] != "cairn\n" {
		t.Error("the admin's hostname is not cairn")
	}
}
