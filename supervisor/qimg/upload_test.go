package qimg

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-os/cairn/internal/testutil"
)

// makeISO makes a genuine ISO 9660 image with xorriso.
func makeISO(t *testing.T, path string) {
	t.Helper()
	testutil.RequireProgram(t, "xorriso")
	tree := t.TempDir()
	if err := os.WriteFile(filepath.Join(tree, "README"), []byte("installer\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "xorriso", "-as", "mkisofs", "-quiet", "-V", "TEST", "-o", path, tree)
}

// Uploads are probed with Info and vetted with CheckUpload: genuine images of the
// declared format pass; anything that would read another file of the host, a wrong
// declaration, encryption or an unknown format is refused with a message that says
// why and what to do.
func TestCheckUpload(t *testing.T) {
	q := requireQemuImg(t)
	dir := t.TempDir()
	file := func(name string) string { return filepath.Join(dir, name) }

	makeISO(t, file("install.iso"))
	rawDisk(t, file("disk.img"), 4*mib, region{0, mib})
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", file("disk.qcow2"), "4M")
	run(t, "qemu-img", "create", "-q", "-f", "vmdk", file("disk.vmdk"), "4M")
	run(t, "qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=streamOptimized", file("stream.vmdk"), "4M")
	run(t, "qemu-img", "create", "-q", "-f", "vdi", file("disk.vdi"), "4M")
	run(t, "qemu-img", "create", "-q", "-f", "vhdx", file("disk.vhdx"), "4M")
	// The classic attack: a tiny qcow2 whose backing file is a secret of the host.
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", "/etc/shadow", "-F", "raw", file("shadow.qcow2"), "1M")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-o", "data_file="+file("data.raw"), file("datafile.qcow2"), "1M")
	// A VMDK descriptor whose extent is a file of the host.
	flat := "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\nRW 1 FLAT \"/etc/hostname\" 0\n"
	if err := os.WriteFile(file("flat.vmdk"), []byte(flat), 0o644); err != nil {
		t.Fatal(err)
	}
	// LUKS times its key derivation by the thread's CPU clock; on a loaded machine the
	// first measurement can read 0 ms ("Unable to get accurate CPU usage"): try again.
	for i := 0; ; i++ {
		out, err := exec.Command("qemu-img", "create", "-q", "--object", "secret,id=s0,data=secret", "-f", "qcow2",
			"-o", "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10", file("secret.qcow2"), "1M").CombinedOutput()
		if err == nil {
			break
		}
		if i == 4 || !strings.Contains(string(out), "accurate CPU usage") {
			t.Fatalf("qemu-img create (luks): %v: %s", err, out)
		}
	}
	run(t, "qemu-img", "create", "-q", "-f", "vpc", file("disk.vhd"), "4M")
	if err := os.WriteFile(file("empty.img"), nil, 0o644); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		file     string
		declared Format
		detected Format
		refusal  string // empty: accepted
	}{
		{"install.iso", ISO, ISO, ""},
		{"install.iso", "", ISO, ""},
		{"install.iso", Raw, ISO, "declare it iso"},
		{"disk.img", Raw, Raw, ""},
		{"disk.img", ISO, Raw, "no ISO 9660 signature"},
		{"disk.img", QCOW2, Raw, "declared qcow2 but is a raw image"},
		{"disk.qcow2", QCOW2, QCOW2, ""},
		{"disk.qcow2", Raw, QCOW2, "declared raw but is a qcow2 image"},
		{"disk.vmdk", VMDK, VMDK, ""},
		{"stream.vmdk", VMDK, VMDK, ""},
		{"disk.vdi", VDI, VDI, ""},
		{"disk.vhdx", VHDX, VHDX, ""},
		{"shadow.qcow2", QCOW2, QCOW2, "backing file (/etc/shadow)"},
		{"datafile.qcow2", QCOW2, QCOW2, "external file"},
		{"flat.vmdk", VMDK, VMDK, "monolithicFlat VMDK"},
		{"secret.qcow2", QCOW2, QCOW2, "encrypted"},
		{"disk.vhd", VHDX, "vpc", "convert it to qcow2"},
		{"empty.img", Raw, Raw, "empty"},
	} {
		in, err := q.Info(bg, file(c.file))
		if err != nil {
			t.Errorf("Info %s: %v", c.file, err)
			continue
		}
		if in.Format != c.detected {
			t.Errorf("Info %s detected %s, want %s", c.file, in.Format, c.detected)
		}
		err = CheckUpload(in, c.declared)
		switch {
		case c.refusal == "" && err != nil:
			t.Errorf("CheckUpload(%s as %q) refused a genuine image: %v", c.file, c.declared, err)
		case c.refusal != "" && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.refusal)):
			t.Errorf("CheckUpload(%s as %q) = %v, want ErrInvalid saying %q", c.file, c.declared, err, c.refusal)
		}
	}
	if err := CheckUpload(Info{Format: Raw, VirtualSize: 512}, Format("qcow3")); !errors.Is(err, ErrInvalid) {
		t.Errorf("CheckUpload declared qcow3: %v, want ErrInvalid", err)
	}
}

// A single-file VMDK whose embedded descriptor names another extent is refused too.
func TestCheckUploadVMDKExtentElsewhere(t *testing.T) {
	in := Info{Filename: "/pool/up.vmdk", Format: VMDK, VirtualSize: 4 * mib, Subformat: "monolithicSparse",
		Extents: []string{"/pool/up.vmdk", "/etc/shadow"}}
	if err := CheckUpload(in, VMDK); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "/etc/shadow") {
		t.Errorf("CheckUpload of a VMDK with an extent elsewhere: %v, want ErrInvalid naming it", err)
	}
}

// A VMDK descriptor naming a FIFO would make qemu-img wait for ever: Info gives up at
// the context's deadline (ProbeTimeout when there is none) with a clear error.
func TestInfoGivesUpOnBlockingExtent(t *testing.T) {
	q := requireQemuImg(t)
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	desc := "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\nRW 1 FLAT \"" + fifo + "\" 0\n"
	if err := os.WriteFile(filepath.Join(dir, "up.vmdk"), []byte(desc), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(bg, 2*time.Second)
	defer cancel()
	_, err := q.Info(ctx, filepath.Join(dir, "up.vmdk"))
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "FIFO") {
		t.Errorf("Info of a VMDK naming a FIFO: %v, want a deadline error that explains", err)
	}
}
