package pid1

import (
	"bytes"
	"debug/elf"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/cairn-os/cairn/internal/testutil"
	"github.com/cairn-os/cairn/supervisor/hostcmd"
	"golang.org/x/sys/unix"
)

// mountsUnder returns the mount points at or below dir in the calling thread's
// namespace.
func mountsUnder(t *testing.T, dir string) []string {
	ms, err := readMounts("/proc/thread-self/mountinfo")
	if err != nil {
		t.Error(err)
		return nil
	}
	var out []string
	for _, m := range ms {
		if within(m.target, dir) {
			out = append(out, strings.TrimPrefix(m.target, dir)+" "+m.fstype)
		}
	}
	return out
}

func TestMountEarlyIdempotent(t *testing.T) {
	root := t.TempDir()
	testutil.InMountNamespace(t, func() {
		if err := mountEarly(root); err != nil {
			t.Errorf("first mount: %v", err)
		}
		first := mountsUnder(t, root)
		want := []string{"/proc proc", "/sys sysfs", "/dev devtmpfs", "/dev/pts devpts", "/dev/shm tmpfs",
			"/run tmpfs", "/tmp tmpfs", "/sys/fs/cgroup cgroup2", "/sys/kernel/security securityfs"}
		if !slices.Equal(first, want) {
			t.Errorf("mounted %q, want %q", first, want)
		}
		if err := mountEarly(root); err != nil {
			t.Errorf("second mount: %v", err)
		}
		if again := mountsUnder(t, root); !slices.Equal(again, first) {
			t.Errorf("second call changed the mounts: %q", again)
		}
		if to, err := os.Readlink(filepath.Join(root, "dev/fd")); err != nil || to != "/proc/self/fd" {
			t.Errorf("/dev/fd → %q, %v", to, err)
		}
		if _, err := os.Stat(filepath.Join(root, "proc/self/mountinfo")); err != nil {
			t.Errorf("proc not usable: %v", err)
		}
	})
}

func TestUnmountAllChildrenFirst(t *testing.T) {
	root := t.TempDir()
	testutil.InMountNamespace(t, func() {
		for _, d := range []string{"a", "a/b", "a/b/c", "d"} {
			p := filepath.Join(root, d)
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Error(err)
				return
			}
			if err := unix.Mount("tmpfs", p, "tmpfs", 0, ""); err != nil {
				t.Error(err)
				return
			}
		}
		// A file held open keeps a filesystem busy: it is detached instead.
		busy, err := os.Create(filepath.Join(root, "a/b/c/open"))
		if err != nil {
			t.Error(err)
			return
		}
		defer busy.Close()
		if errs := unmountAll(root); len(errs) != 0 {
			t.Errorf("unmount errors: %v", errs)
		}
		if left := mountsUnder(t, root); len(left) != 0 {
			t.Errorf("still mounted: %q", left)
		}
	})
}

func TestRemoveContentsStaysOnItsFilesystem(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "keep"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.InMountNamespace(t, func() {
		for _, d := range []string{"etc/cairn", "lib/modules/6.1/kernel", "mnt"} {
			if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
				t.Error(err)
				return
			}
		}
		for _, f := range []string{"init", "etc/cairn/x", "lib/modules/6.1/kernel/a.ko"} {
			if err := os.WriteFile(filepath.Join(root, f), []byte("x"), 0o644); err != nil {
				t.Error(err)
			}
		}
		// A link to a directory elsewhere must not be followed.
		if err := os.Symlink(outside, filepath.Join(root, "link")); err != nil {
			t.Error(err)
		}
		// A mount point and what is on it are another filesystem's business.
		if err := unix.Mount("tmpfs", filepath.Join(root, "mnt"), "tmpfs", 0, ""); err != nil {
			t.Error(err)
			return
		}
		if err := os.WriteFile(filepath.Join(root, "mnt/medium"), []byte("x"), 0o644); err != nil {
			t.Error(err)
		}

		fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			t.Error(err)
			return
		}
		defer unix.Close(fd)
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			t.Error(err)
			return
		}
		removeContents(fd, uint64(st.Dev))

		entries, _ := os.ReadDir(root)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if !slices.Equal(names, []string{"mnt"}) {
			t.Errorf("left in the old root: %q, want only the mount point", names)
		}
		if _, err := os.Stat(filepath.Join(root, "mnt/medium")); err != nil {
			t.Errorf("file on the mount point deleted: %v", err)
		}
	})
	if _, err := os.Stat(filepath.Join(outside, "keep")); err != nil {
		t.Errorf("followed a symlink out of the tree: %v", err)
	}
}

// TestSwitchRoot switches, in a child process with its own mount namespace, into a
// tmpfs holding a static busybox, and checks that busybox runs there as the new init
// with /proc, /sys and /dev moved along. The host's root is ext4 (not an initramfs),
// so SwitchRoot must not delete anything there.
func TestSwitchRoot(t *testing.T) {
	testutil.RequireRoot(t)
	busybox := testutil.RequireProgram(t, "busybox")
	if f, err := elf.Open(busybox); err != nil {
		t.Skipf("busybox: %v", err)
	} else {
		dynamic := slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP })
		f.Close()
		if dynamic {
			t.Skip("needs a static busybox (Debian's busybox-static)")
		}
	}
	var st unix.Statfs_t
	if err := unix.Statfs("/", &st); err != nil || st.Type == unix.TMPFS_MAGIC || st.Type == unix.RAMFS_MAGIC {
		t.Skip("the host's root is in RAM: a mistake in SwitchRoot's safety check would delete it")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSwitchRootChild$", "-test.v")
	cmd.Env = append(os.Environ(), "CAIRN_SWITCHROOT_TEST="+dir, "CAIRN_BUSYBOX="+busybox)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	p, err := hostcmd.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); err != nil {
		t.Fatalf("child: %v\n%s", err, out.String())
	}
	for _, want := range []string{"marker:switched", "root:tmpfs", "proc-ok", "sys-ok", "dev-ok", "argv:one two"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("new init's output lacks %q:\n%s", want, out.String())
		}
	}
	if _, err := os.Stat(os.Args[0]); err != nil {
		t.Errorf("the host's files are gone: %v", err)
	}
}

// TestSwitchRootChild is TestSwitchRoot's child process; alone it skips.
func TestSwitchRootChild(t *testing.T) {
	dir := os.Getenv("CAIRN_SWITCHROOT_TEST")
	if dir == "" {
		t.Skip("only run by TestSwitchRoot")
	}
	fail := func(err error) {
		t.Fatal(err)
	}
	// The namespace is the child's own; private so that no move reaches the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		fail(err)
	}
	newRoot := filepath.Join(dir, "new")
	if err := os.MkdirAll(newRoot, 0o755); err != nil {
		fail(err)
	}
	if err := unix.Mount("tmpfs", newRoot, "tmpfs", 0, ""); err != nil {
		fail(err)
	}
	if err := os.MkdirAll(filepath.Join(newRoot, "bin"), 0o755); err != nil {
		fail(err)
	}
	src, err := os.Open(os.Getenv("CAIRN_BUSYBOX"))
	if err != nil {
		fail(err)
	}
	dst, err := os.OpenFile(filepath.Join(newRoot, "bin/busybox"), os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		fail(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		fail(err)
	}
	src.Close()
	dst.Close()
	if err := os.WriteFile(filepath.Join(newRoot, "marker"), []byte("switched"), 0o644); err != nil {
		fail(err)
	}
	script := `bb=/bin/busybox
echo "marker:$($bb cat /marker)"
echo "root:$($bb awk '$5 == "/" { print $(NF-2) }' /proc/self/mountinfo)"
$bb test -r /proc/self/status && echo proc-ok
$bb test -d /sys/kernel && echo sys-ok
$bb test -c /dev/null && echo dev-ok
echo "argv:$*"`
	err = SwitchRoot(newRoot, "/bin/busybox", []string{"busybox", "sh", "-c", script, "sh", "one", "two"})
	fail(err)
}
