package virt

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cairn-os/cairn/supervisor/hostcmd"
)

// TestHostCapabilities checks the node facts against the host. KVM must be what
// libvirt says: here /dev/kvm exists (and libvirt offers kvm although nested KVM
// hangs), so only its absence is checked the other way round.
func TestHostCapabilities(t *testing.T) {
	c := hostConn(t)
	caps, err := c.Capabilities(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("capabilities: kvm=%v arch=%s cpus=%d memory=%d free=%d emulator=%s", caps.KVM, caps.Arch, caps.CPUs, caps.MemoryBytes, caps.FreeMemoryBytes, caps.Emulator)
	if caps.Arch != "x86_64" {
		t.Errorf("arch = %q, want x86_64", caps.Arch)
	}
	if !slices.Contains(caps.Machines, "pc") {
		t.Errorf("machines %v do not include pc, which DomainXML uses", caps.Machines)
	}
	if caps.Emulator == "" {
		t.Error("no emulator for x86_64")
	}
	if caps.CPUs < 1 || caps.MemoryBytes == 0 || caps.FreeMemoryBytes == 0 || caps.FreeMemoryBytes > caps.MemoryBytes {
		t.Errorf("cpus %d, memory %d, free %d: not a plausible node", caps.CPUs, caps.MemoryBytes, caps.FreeMemoryBytes)
	}
	if _, err := os.Stat("/dev/kvm"); err != nil && caps.KVM {
		t.Errorf("KVM reported without /dev/kvm")
	}
}

// TestHostLocalStorage makes a child of a master image in a node-local directory
// through libvirt's storage API, and checks it with qemu-img.
func TestHostLocalStorage(t *testing.T) {
	c := hostConn(t)
	ctx := context.Background()
	masters, local := testDir(t), testDir(t)
	t.Cleanup(func() {
		if err := c.LocalRelease(ctx, local); err != nil {
			t.Errorf("clean-up: %v", err)
		}
	})
	master := filepath.Join(masters, "master.qcow2")
	qemuImg(t, "qcow2", master, "64M")

	path, err := c.LocalCreateChild(ctx, local, "child.qcow2", master, "qcow2")
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(local, "child.qcow2") {
		t.Errorf("child path = %s, want it in %s", path, local)
	}
	out, err := (hostcmd.Exec{}).Run(ctx, "qemu-img", "info", "--output=json", "-U", path)
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Format          string `json:"format"`
		VirtualSize     uint64 `json:"virtual-size"`
		BackingFilename string `json:"backing-filename"`
		BackingFormat   string `json:"backing-filename-format"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatal(err)
	}
	if info.Format != "qcow2" || info.BackingFilename != master || info.BackingFormat != "qcow2" || info.VirtualSize != 64<<20 {
		t.Errorf("child image: %+v, want a 64 MiB qcow2 backed by %s (qcow2)", info, master)
	}

	capacity, allocation, err := c.LocalInfo(ctx, local, "child.qcow2")
	if err != nil {
		t.Fatal(err)
	}
	if capacity != 64<<20 || allocation == 0 || allocation > 4<<20 {
		t.Errorf("LocalInfo = %d, %d; want 64 MiB and a small allocation", capacity, allocation)
	}
	pc, pa, pav, err := c.LocalUsage(ctx, local)
	if err != nil {
		t.Fatal(err)
	}
	if pc == 0 || pa == 0 || pav == 0 || pav > pc {
		t.Errorf("LocalUsage = %d, %d, %d: not a plausible file system", pc, pa, pav)
	}

	if _, err := c.LocalCreateChild(ctx, local, "child.qcow2", master, "qcow2"); !errors.Is(err, ErrExists) {
		t.Errorf("making the same child again: %v, want ErrExists", err)
	}
	// A file that appeared after the pool was made is seen (the pool refreshes).
	qemuImg(t, "qcow2", filepath.Join(local, "other.qcow2"), "1M")
	if _, err := c.LocalCreateChild(ctx, local, "other.qcow2", master, "qcow2"); !errors.Is(err, ErrExists) {
		t.Errorf("making a child over a file made outside libvirt: %v, want ErrExists", err)
	}
	if capacity, _, err := c.LocalInfo(ctx, local, "other.qcow2"); err != nil || capacity != 1<<20 {
		t.Errorf("LocalInfo of a file made outside libvirt = %d, %v; want 1 MiB", capacity, err)
	}

	for _, bad := range []string{"../escape.qcow2", "a/b.qcow2", ".hidden", ""} {
		if _, err := c.LocalCreateChild(ctx, local, bad, master, "qcow2"); !errors.Is(err, ErrInvalid) {
			t.Errorf("LocalCreateChild(%q): %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := c.LocalCreateChild(ctx, local, "x.qcow2", "master.qcow2", "qcow2"); !errors.Is(err, ErrInvalid) {
		t.Errorf("relative backing path: %v, want ErrInvalid", err)
	}
	if _, err := c.LocalCreateChild(ctx, local, "x.qcow2", master, "qed"); !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown backing format: %v, want ErrInvalid", err)
	}

	if err := c.LocalDelete(ctx, local, "child.qcow2"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("child still there after LocalDelete: %v", err)
	}
	if _, err := os.Stat(master); err != nil {
		t.Errorf("master gone with its child: %v", err)
	}
	if err := c.LocalDelete(ctx, local, "child.qcow2"); err != nil {
		t.Errorf("deleting a missing image: %v, want no error", err)
	}
	if _, _, err := c.LocalInfo(ctx, local, "child.qcow2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("LocalInfo of a deleted image: %v, want ErrNotFound", err)
	}
}

// TestHostLocalStorageTwoDirs checks that a second directory gets its own pool.
func TestHostLocalStorageTwoDirs(t *testing.T) {
	c := hostConn(t)
	ctx := context.Background()
	master := filepath.Join(testDir(t), "m.qcow2")
	qemuImg(t, "qcow2", master, "1M")
	for range 2 {
		dir := testDir(t)
		t.Cleanup(func() { c.LocalRelease(ctx, dir) })
		p, err := c.LocalCreateChild(ctx, dir, "c.qcow2", master, "qcow2")
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Dir(p) != dir {
			t.Errorf("child made at %s, want in %s", p, dir)
		}
	}
}
