package image

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cairn-os/cairn/internal/testutil"
)

// buildDeb makes a .deb holding files (path → content) with dpkg-deb.
func buildDeb(t *testing.T, name string, files map[string]string, links map[string]string) string {
	t.Helper()
	testutil.RequireProgram(t, "dpkg-deb")
	dir := filepath.Join(t.TempDir(), name)
	os.MkdirAll(filepath.Join(dir, "DEBIAN"), 0o755)
	os.WriteFile(filepath.Join(dir, "DEBIAN/control"), []byte("Package: "+name+"\nVersion: 1.0\nArchitecture: amd64\nMaintainer: test <t@example.com>\nDescription: test\n"), 0o644)
	for p, c := range files {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755)
		os.WriteFile(filepath.Join(dir, p), []byte(c), 0o755)
	}
	for p, to := range links {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755)
		os.Symlink(to, filepath.Join(dir, p))
	}
	deb := dir + ".deb"
	if out, err := exec.Command("dpkg-deb", "--root-owner-group", "--build", dir, deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v\n%s", err, out)
	}
	return deb
}

// TestPackageTree extracts real .deb files with dpkg-deb and tar and checks what an
// image's tree gets: files under merged /usr, documentation pruned but licences kept,
// the CA bundle, /bin/sh, the cache reused for the same lock lines.
func TestPackageTree(t *testing.T) {
	testutil.RequireRoot(t) // ldconfig -r chroots
	testutil.RequireProgram(t, "tar")
	testutil.RequireProgram(t, "ldconfig")
	debs := map[string]string{
		"tool": buildDeb(t, "tool", map[string]string{
			"bin/tool":                     "#!/bin/sh\n",
			"usr/share/doc/tool/copyright": "licence\n",
			"usr/share/doc/tool/README":    "docs\n",
			"usr/share/man/man1/tool.1.gz": "man\n",
			"usr/lib/x86_64-linux-gnu/x.a": "static\n",
			"usr/share/locale/de/tool.mo":  "de\n",
		}, nil),
		"certs": buildDeb(t, "certs", map[string]string{
			"usr/share/ca-certificates/mozilla/B.crt": "-----B-----",
			"usr/share/ca-certificates/mozilla/A.crt": "-----A-----\n",
		}, map[string]string{"usr/bin/dash": "tool"}),
	}
	pkgs := []Package{{Name: "certs", Version: "1.0", Arch: "amd64", SHA256: "c"}, {Name: "tool", Version: "1.0", Arch: "amd64", SHA256: "t"}}
	tb := TreeBuilder{Cache: Cache{Dir: t.TempDir()}, Runner: &Runner{}, Logger: slog.New(slog.DiscardHandler)}
	tree, err := tb.PackageTree(context.Background(), "compute", pkgs, debs)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"usr/bin/tool", "usr/share/doc/tool/copyright", "etc/ld.so.cache"} {
		if _, err := os.Stat(filepath.Join(tree, p)); err != nil {
			t.Errorf("tree lacks %s: %v", p, err)
		}
	}
	for _, p := range []string{"usr/share/doc/tool/README", "usr/share/man", "usr/share/locale", "usr/lib/x86_64-linux-gnu/x.a"} {
		if _, err := os.Lstat(filepath.Join(tree, p)); err == nil {
			t.Errorf("tree keeps %s", p)
		}
	}
	if to, err := os.Readlink(filepath.Join(tree, "bin")); err != nil || to != "usr/bin" {
		t.Errorf("/bin is %q, %v; want a link to usr/bin", to, err)
	}
	if to, err := os.Readlink(filepath.Join(tree, "usr/bin/sh")); err != nil || to != "dash" {
		t.Errorf("/bin/sh is %q, %v; want a link to dash", to, err)
	}
	if b, _ := os.ReadFile(filepath.Join(tree, "etc/ssl/certs/ca-certificates.crt")); string(b) != "-----A-----\n-----B-----\n" {
		t.Errorf("CA bundle = %q", b)
	}
	again, err := tb.PackageTree(context.Background(), "compute", pkgs, nil)
	if err != nil || again != tree {
		t.Errorf("second PackageTree = %q, %v; want the cached %q without extracting", again, err, tree)
	}
}

func TestLinkTree(t *testing.T) {
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "stage")
	os.MkdirAll(filepath.Join(src, "usr/bin"), 0o755)
	os.WriteFile(filepath.Join(src, "usr/bin/a"), []byte("same inode"), 0o755)
	os.Chmod(filepath.Join(src, "usr/bin/a"), 0o755|os.ModeSetuid)
	os.Link(filepath.Join(src, "usr/bin/a"), filepath.Join(src, "usr/bin/b"))
	os.Symlink("a", filepath.Join(src, "usr/bin/c"))
	if err := LinkTree(src, dst); err != nil {
		t.Fatal(err)
	}
	ino := func(p string) uint64 {
		st, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		return st.Sys().(*syscall.Stat_t).Ino
	}
	a, b := filepath.Join(dst, "usr/bin/a"), filepath.Join(dst, "usr/bin/b")
	if ino(a) != ino(filepath.Join(src, "usr/bin/a")) {
		t.Error("a file was copied, not linked")
	}
	if ino(a) == ino(b) {
		t.Error("two names of one file stayed one inode: the cpio writer would store the second empty")
	}
	if c, _ := os.ReadFile(b); string(c) != "same inode" {
		t.Errorf("copy holds %q", c)
	}
	if st, _ := os.Stat(b); st.Mode()&os.ModeSetuid == 0 {
		t.Errorf("copy lost the setuid bit: %v", st.Mode())
	}
	if to, _ := os.Readlink(filepath.Join(dst, "usr/bin/c")); to != "a" {
		t.Errorf("symlink points to %q", to)
	}
	// WriteFile replaces a linked file instead of writing through to the cache.
	if err := WriteFile(a, []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if c, _ := os.ReadFile(filepath.Join(src, "usr/bin/a")); string(c) != "same inode" {
		t.Errorf("WriteFile changed the cached tree: %q", c)
	}
}

// Two builds of the same tree at once (two test packages on a cold cache) both get it.
func TestCachedTreeRace(t *testing.T) {
	tb := TreeBuilder{Cache: Cache{Dir: t.TempDir()}, Logger: slog.New(slog.DiscardHandler)}
	inFill, start := make(chan struct{}), make(chan struct{})
	errs := make(chan error, 2)
	dirs := make(chan string, 2)
	for i := 0; i < 2; i++ {
		go func() {
			dir, err := tb.cached("kernel", "0123456789abcdef", func(dir string) error {
				inFill <- struct{}{} // past the "already cached?" check
				<-start
				return os.WriteFile(filepath.Join(dir, "vmlinuz"), []byte("k"), 0o644)
			})
			errs <- err
			dirs <- dir
		}()
	}
	<-inFill
	<-inFill
	close(start)
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			t.Fatalf("a racing build failed: %v", err)
		}
		if b, err := os.ReadFile(filepath.Join(<-dirs, "vmlinuz")); err != nil || string(b) != "k" {
			t.Fatalf("tree content: %q, %v", b, err)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(tb.Cache.Path("trees"), ".tmp-*")); len(left) != 0 {
		t.Errorf("temporary trees left: %v", left)
	}
}
