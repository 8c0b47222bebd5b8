package stage1

import (
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-os/cairn/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestMountRoot builds a small CAIRN ISO holding cairn/root.squashfs, attaches it to
// a loop device as the "CD", and checks that stage 1 recognises it, mounts it, the
// squashfs and the overlay, and that the new root has the squashfs's files and takes
// writes.
func TestMountRoot(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireProgram(t, "mksquashfs")
	testutil.RequireProgram(t, "xorriso")
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(tree, "usr/lib/cairn"), 0o755)
	os.WriteFile(filepath.Join(tree, "usr/lib/cairn/supervisor"), []byte("stage 2\n"), 0o755)
	isoDir := filepath.Join(dir, "iso")
	os.MkdirAll(filepath.Join(isoDir, "cairn"), 0o755)
	runProgram(t, "mksquashfs", tree, filepath.Join(isoDir, SquashfsPath), "-comp", "zstd", "-noappend", "-quiet")
	iso := filepath.Join(dir, "cairn.iso")
	runProgram(t, "xorriso", "-as", "mkisofs", "-quiet", "-V", VolumeID, "-r", "-o", iso, isoDir)

	f, err := os.Open(iso)
	if err != nil {
		t.Fatal(err)
	}
	pvd := make([]byte, 2048)
	if _, err := f.ReadAt(pvd, pvdOffset); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if id, ok := VolumeIDOf(pvd); !ok || id != VolumeID {
		t.Fatalf("xorriso's ISO has volume %q (ok %v), want %s", id, ok, VolumeID)
	}

	// Without iso9660 in the kernel (some VM kernels), the medium is the ISO's folder
	// itself, which mountRoot takes as already mounted: the loop, squashfs and
	// overlay steps still run for real.
	haveISO9660 := kernelHasFS("iso9660")
	if !haveISO9660 {
		t.Log("kernel lacks iso9660: testing with the medium's files in a folder")
	}
	testutil.InMountNamespace(t, func() {
		cd, err := attachLoop(iso)
		if err != nil {
			t.Error(err)
			return
		}
		defer cd.Close()
		if id, ok := readVolumeID(cd.Name()); !ok || id != VolumeID {
			t.Errorf("readVolumeID(%s) = %q, %v", cd.Name(), id, ok)
		}
		l := layout{
			medium: filepath.Join(dir, "run/medium"), lower: filepath.Join(dir, "run/lower"),
			rw: filepath.Join(dir, "run/rw"), root: filepath.Join(dir, "newroot"),
		}
		if !haveISO9660 {
			l.medium = isoDir
		}
		if err := mountRoot(slog.New(slog.DiscardHandler), l, cd.Name()); err != nil {
			t.Error(err)
			return
		}
		b, err := os.ReadFile(filepath.Join(l.root, Stage2))
		if err != nil || string(b) != "stage 2\n" {
			t.Errorf("new root's %s = %q, %v", Stage2, b, err)
		}
		if err := os.WriteFile(filepath.Join(l.root, "etc-written"), []byte("x"), 0o644); err != nil {
			t.Errorf("the new root takes no writes: %v", err)
		}
		if _, err := os.Stat(filepath.Join(l.rw, "upper/etc-written")); err != nil {
			t.Errorf("a write did not land in the tmpfs: %v", err)
		}
		if m, _ := os.ReadFile("/proc/thread-self/mounts"); !strings.Contains(string(m), "nfs_export=on") {
			t.Errorf("the overlay is not exportable over NFS:\n%s", m)
		}
		// Unmount in reverse so that the loop devices (autoclear) detach before the
		// thread and its namespace go away.
		mounts := []string{l.root, l.rw, l.lower}
		if haveISO9660 {
			mounts = append(mounts, l.medium)
		}
		for _, m := range mounts {
			if err := unix.Unmount(m, 0); err != nil {
				t.Errorf("unmount %s: %v", m, err)
			}
		}
	})
}

func kernelHasFS(name string) bool {
	b, _ := os.ReadFile("/proc/filesystems")
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[len(f)-1] == name {
			return true
		}
	}
	return false
}

func runProgram(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", name, err, out)
	}
}
