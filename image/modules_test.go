package image

import (
	"slices"
	"strings"
	"testing"
)

const testModulesDep = `kernel/net/netfilter/nf_tables.ko: kernel/net/netfilter/nfnetlink.ko kernel/lib/libcrc32c.ko
kernel/net/netfilter/nfnetlink.ko:
kernel/lib/libcrc32c.ko: 
kernel/crypto/crc32c_generic.ko:
kernel/arch/x86/crypto/crc32c-intel.ko:
kernel/arch/x86/kvm/kvm.ko: kernel/virt/lib/irqbypass.ko
kernel/arch/x86/kvm/kvm-intel.ko: kernel/arch/x86/kvm/kvm.ko kernel/virt/lib/irqbypass.ko
kernel/virt/lib/irqbypass.ko:
kernel/sound/core/snd.ko: kernel/sound/core/snd-timer.ko
kernel/sound/core/snd-timer.ko:
kernel/drivers/media/rc/rc-core.ko:
kernel/drivers/hid/hid-foo.ko: kernel/drivers/media/rc/rc-core.ko
`

func testIndex(t *testing.T) *ModuleIndex {
	t.Helper()
	m, err := ParseModuleIndex(strings.NewReader(testModulesDep), strings.NewReader("kernel/drivers/acpi/button.ko\n"))
	if err != nil {
		t.Fatal(err)
	}
	m.ParseSoftdeps(strings.NewReader("# Soft dependencies\nsoftdep libcrc32c pre: crc32c\n"),
		strings.NewReader("alias crc32c crc32c_intel\nalias crc32c crc32c_generic\nalias pci:v*d* kvm\n"))
	return m
}

func TestResolveModules(t *testing.T) {
	m := testIndex(t)
	set, err := m.Resolve([]string{"kvm-intel", "button", "nf_tables", "kvm_intel"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"kvm_intel", "nf_tables"}; !slices.Equal(set.Load, want) {
		t.Errorf("Load = %v, want %v (listed order, names with _, once each)", set.Load, want)
	}
	if want := []string{"button"}; !slices.Equal(set.Builtin, want) {
		t.Errorf("Builtin = %v, want %v", set.Builtin, want)
	}
	want := []string{
		"kernel/arch/x86/crypto/crc32c-intel.ko", "kernel/arch/x86/kvm/kvm-intel.ko", "kernel/arch/x86/kvm/kvm.ko",
		"kernel/crypto/crc32c_generic.ko", "kernel/lib/libcrc32c.ko", "kernel/net/netfilter/nf_tables.ko",
		"kernel/net/netfilter/nfnetlink.ko", "kernel/virt/lib/irqbypass.ko",
	}
	if !slices.Equal(set.Files, want) {
		t.Errorf("Files =\n%s\nwant (dependencies and soft dependencies through aliases):\n%s", strings.Join(set.Files, "\n"), strings.Join(want, "\n"))
	}
	if _, err := m.Resolve([]string{"kvm", "no_such_module"}); err == nil || !strings.Contains(err.Error(), "no_such_module") {
		t.Errorf("an unknown module gave %v, want an error naming it", err)
	}
}

func TestAllExcept(t *testing.T) {
	got := testIndex(t).AllExcept([]string{"kernel/sound", "kernel/drivers/media/"})
	if slices.Contains(got, "kernel/sound/core/snd.ko") {
		t.Error("an excluded folder was kept")
	}
	if !slices.Contains(got, "kernel/drivers/media/rc/rc-core.ko") {
		t.Error("a kept module lost a dependency from an excluded folder")
	}
	if !slices.Contains(got, "kernel/arch/x86/kvm/kvm.ko") {
		t.Error("a module outside the excluded folders is missing")
	}
}

func TestTrimModulesDep(t *testing.T) {
	got := string(TrimModulesDep([]byte("a.ko: \nb.ko: a.ko \t\nc.ko:\n")))
	if want := "a.ko:\nb.ko: a.ko\nc.ko:\n"; got != want {
		t.Errorf("TrimModulesDep = %q, want %q", got, want)
	}
}

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{"kernel/arch/x86/kvm/kvm-intel.ko": "kvm_intel", "virtio-net": "virtio_net", "a/b/c.ko.xz": "c", "8021q": "8021q"} {
		if got := ModuleName(in); got != want {
			t.Errorf("ModuleName(%q) = %q, want %q", in, got, want)
		}
	}
}
