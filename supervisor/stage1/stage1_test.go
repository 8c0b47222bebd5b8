package stage1

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func pvd(id string) []byte {
	b := make([]byte, 2048)
	b[0] = 1
	copy(b[1:], "CD001")
	b[6] = 1
	copy(b[40:72], []byte(id + "                                ")[:32])
	return b
}

func TestVolumeIDOf(t *testing.T) {
	if id, ok := VolumeIDOf(pvd("CAIRN")); !ok || id != "CAIRN" {
		t.Errorf("VolumeIDOf(CAIRN) = %q, %v", id, ok)
	}
	if id, ok := VolumeIDOf(pvd("CAIRNX")); !ok || id == VolumeID {
		t.Errorf("VolumeIDOf(CAIRNX) = %q, %v; must not match %s", id, ok, VolumeID)
	}
	notISO := pvd("CAIRN")
	copy(notISO[1:], "CD002")
	if _, ok := VolumeIDOf(notISO); ok {
		t.Error("a descriptor without CD001 was taken for ISO 9660")
	}
	boot := pvd("CAIRN")
	boot[0] = 0 // a boot record, not the primary volume descriptor
	if _, ok := VolumeIDOf(boot); ok {
		t.Error("a boot record was taken for the primary volume descriptor")
	}
	if _, ok := VolumeIDOf(make([]byte, 10)); ok {
		t.Error("a short read was taken for a descriptor")
	}
}

func TestCandidates(t *testing.T) {
	devs := []blockDevice{
		{Name: "sdb1", Partition: true}, {Name: "loop0"}, {Name: "sr0"}, {Name: "sda"},
		{Name: "nvme0n1p2", Partition: true}, {Name: "vda"}, {Name: "zram0"}, {Name: "nvme0n1"},
		{Name: "sdb"}, {Name: "ram0"},
	}
	got := candidates(devs)
	want := []string{"nvme0n1", "sda", "sdb", "sr0", "vda", "nvme0n1p2", "sdb1"}
	if !slices.Equal(got, want) {
		t.Errorf("candidates = %v, want %v (whole devices first, no loop/ram/zram)", got, want)
	}
}

func TestOverlayOptions(t *testing.T) {
	got := overlayOptions("/run/cairn/lower", "/run/cairn/rw")
	want := "lowerdir=/run/cairn/lower,upperdir=/run/cairn/rw/upper,workdir=/run/cairn/rw/work"
	if got != want {
		t.Errorf("overlayOptions = %q, want %q", got, want)
	}
}

func TestReadModuleList(t *testing.T) {
	p := filepath.Join(t.TempDir(), "modules")
	os.WriteFile(p, []byte("# header\nsr_mod\n\n  isofs  # comment\nkvm_intel nested=1\n"), 0o644)
	got, err := readModuleList(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"sr_mod", "isofs", "kvm_intel nested=1"}
	if !slices.Equal(got, want) {
		t.Errorf("readModuleList = %q, want %q", got, want)
	}
}
