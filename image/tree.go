package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// treeFormat names the way trees are extracted and pruned; changing either changes
// it, so that cached trees made the old way are not reused.
const treeFormat = "cairn-tree-3"

// mergedUsr are the links Debian's usrmerge makes: a package's /bin/ls lands in
// /usr/bin/ls. tar --keep-directory-symlink follows them instead of replacing them.
var mergedUsr = [][2]string{{"bin", "usr/bin"}, {"sbin", "usr/sbin"}, {"lib", "usr/lib"}, {"lib64", "usr/lib64"}}

// pruneDirs are removed from every tree: documentation, manual pages, translations,
// headers, shell completions. /usr/share/doc/*/copyright stays (the licences).
var pruneDirs = []string{
	"usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian",
	"usr/share/bug", "usr/share/doc-base", "usr/share/gtk-doc", "usr/share/bash-completion",
	"usr/share/zsh", "usr/share/fish", "usr/share/i18n", "usr/share/iso-codes",
	"usr/share/xml/iso-codes", "usr/share/help", "usr/share/apport", "usr/share/menu",
	"usr/include", "usr/lib/x86_64-linux-gnu/pkgconfig", "usr/share/pkgconfig",
	"var/cache", "var/lib/dpkg",
}

// rolePrune are globs removed from one role's tree only. The compute image runs from
// RAM: it keeps qemu-system-x86_64 and qemu-img and drops the other emulators and
// tools, other architectures' firmware and iconv's conversion modules (glibc converts
// UTF-8, UTF-16/32 and Latin-1 without them).
var rolePrune = map[string][]string{
	"compute": {
		"usr/bin/qemu-system-i386", "usr/libexec/qemu-system-i386",
		"usr/bin/qemu-system-x86_64-microvm", "usr/bin/qemu-io", "usr/bin/qemu-nbd",
		"usr/bin/qemu-storage-daemon", "usr/lib/x86_64-linux-gnu/gconv",
		"usr/share/qemu/openbios-*", "usr/share/qemu/skiboot.lid", "usr/share/qemu/slof.bin",
		"usr/share/qemu/hppa-firmware.img", "usr/share/qemu/opensbi-*",
		"usr/share/qemu/palcode-*", "usr/share/qemu/s390-*", "usr/share/qemu/*.dtb",
		"usr/share/qemu/vof*.bin", "usr/share/qemu/QEMU,*.bin", "usr/share/qemu/npcm7xx_bootrom.bin",
		"usr/share/qemu/u-boot*", "usr/share/qemu/qemu_vga.ndrv",
	},
}

// TreeBuilder extracts packages into root trees under the cache.
type TreeBuilder struct {
	Cache  Cache
	Runner *Runner
	Logger *slog.Logger
}

// IsKernelPackage reports whether p is the kernel image itself (linux-image-6.1.0-…),
// not the linux-image-amd64 metapackage.
func IsKernelPackage(p Package) bool {
	return strings.HasPrefix(p.Name, "linux-image-") && p.Name != "linux-image-"+p.Arch &&
		!strings.HasSuffix(p.Name, "-dbg") && !strings.HasSuffix(p.Name, "-unsigned")
}

// KernelPackage returns the one kernel image package among pkgs.
func KernelPackage(pkgs []Package) (Package, error) {
	var found []Package
	for _, p := range pkgs {
		if IsKernelPackage(p) {
			found = append(found, p)
		}
	}
	if len(found) != 1 {
		return Package{}, fmt.Errorf("want one kernel image package in the lock, found %d: add linux-image-amd64 to the package list and run `make lock`", len(found))
	}
	return found[0], nil
}

// treeKey hashes what a tree is made of.
func treeKey(pkgs []Package, extra ...string) string {
	h := sha256.New()
	fmt.Fprintln(h, treeFormat)
	fmt.Fprintln(h, strings.Join(pruneDirs, " "))
	for _, e := range extra {
		fmt.Fprintln(h, e)
	}
	for _, p := range pkgs {
		fmt.Fprintln(h, p.line())
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// PackageTree returns a pruned root tree holding the files of pkgs (the kernel image
// excluded: its modules are added by choice, see Kernel), extracting it on the first
// call and reusing it while the lock lines stay the same. The tree is shared: never
// write into it; link it with LinkTree and replace files there.
func (t TreeBuilder) PackageTree(ctx context.Context, name string, pkgs []Package, debs map[string]string) (string, error) {
	var use []Package
	for _, p := range pkgs {
		if !IsKernelPackage(p) {
			use = append(use, p)
		}
	}
	extra := rolePrune[name]
	return t.cached(name, treeKey(use, extra...), func(dir string) error {
		start := time.Now()
		if err := MakeMergedUsr(dir); err != nil {
			return err
		}
		for _, p := range use {
			if err := t.extract(ctx, debs[p.Name], dir); err != nil {
				return fmt.Errorf("extract %s: %w", p.Name, err)
			}
		}
		if err := prune(dir); err != nil {
			return err
		}
		for _, g := range extra {
			m, err := filepath.Glob(filepath.Join(dir, g))
			if err != nil {
				return fmt.Errorf("prune %s: %w", g, err)
			}
			for _, p := range m {
				if err := os.RemoveAll(p); err != nil {
					return fmt.Errorf("prune %s: %w", p, err)
				}
			}
		}
		if err := t.finish(ctx, dir); err != nil {
			return err
		}
		t.Logger.Info("extracted packages", "tree", name, "packages", len(use), "took", time.Since(start).Round(time.Millisecond))
		return nil
	})
}

// cached returns cache/trees/<name>-<key>, making it with fill the first time. fill
// writes into a temporary folder that is renamed into place when it succeeds, so a
// failed or interrupted build never leaves a half tree behind; two builds racing for
// the same tree both succeed with the first one's. Older trees of the same name are
// removed.
func (t TreeBuilder) cached(name, key string, fill func(dir string) error) (string, error) {
	base := t.Cache.Path("trees")
	dir := filepath.Join(base, name+"-"+key)
	if _, err := os.Stat(dir); err == nil {
		t.Logger.Info("tree cached", "tree", name, "key", key)
		return dir, nil
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", fmt.Errorf("tree cache: %w", err)
	}
	tmp, err := os.MkdirTemp(base, ".tmp-"+name+"-")
	if err != nil {
		return "", fmt.Errorf("tree cache: %w", err)
	}
	if err := fill(tmp); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", fmt.Errorf("tree %s: %w", name, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		os.RemoveAll(tmp)
		// Another build (a second test package, a make run) made the same tree
		// meanwhile: same key, same content; use theirs.
		if _, serr := os.Stat(dir); serr == nil {
			t.Logger.Info("tree cached", "tree", name, "key", key)
			return dir, nil
		}
		return "", fmt.Errorf("tree %s: %w", name, err)
	}
	old, _ := filepath.Glob(filepath.Join(base, name+"-*"))
	for _, o := range old {
		if o != dir && len(filepath.Base(o)) == len(name)+1+len(key) {
			t.Logger.Debug("removing old tree", "dir", o)
			os.RemoveAll(o)
		}
	}
	return dir, nil
}

// MakeMergedUsr makes root's merged-/usr links (bin → usr/bin and so on).
func MakeMergedUsr(root string) error {
	for _, l := range mergedUsr {
		if err := os.MkdirAll(filepath.Join(root, l[1]), 0o755); err != nil {
			return fmt.Errorf("merged /usr: %w", err)
		}
		if err := os.Symlink(l[1], filepath.Join(root, l[0])); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("merged /usr: %w", err)
		}
	}
	return nil
}

// extract unpacks a .deb's files without running its maintainer scripts.
func (t TreeBuilder) extract(ctx context.Context, deb, root string) error {
	if deb == "" {
		return errors.New("package file not fetched")
	}
	return t.Runner.Pipe(ctx,
		Cmd{Name: "dpkg-deb", Args: []string{"--fsys-tarfile", deb}},
		Cmd{Name: "tar", Args: []string{"-x", "--keep-directory-symlink", "-C", root}})
}

func prune(root string) error {
	for _, d := range pruneDirs {
		if err := os.RemoveAll(filepath.Join(root, d)); err != nil {
			return fmt.Errorf("prune %s: %w", d, err)
		}
	}
	// Keep each package's copyright file, drop the rest of its documentation.
	docs := filepath.Join(root, "usr/share/doc")
	err := filepath.WalkDir(docs, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if p == docs {
			return nil
		}
		rel, _ := filepath.Rel(docs, p)
		if strings.Count(rel, string(filepath.Separator)) == 1 && d.Name() == "copyright" {
			return nil
		}
		if d.IsDir() && !strings.Contains(rel, string(filepath.Separator)) {
			return nil
		}
		if d.IsDir() {
			if err := os.RemoveAll(p); err != nil {
				return err
			}
			return fs.SkipDir
		}
		return os.Remove(p)
	})
	if err != nil {
		return fmt.Errorf("prune docs: %w", err)
	}
	// Static libraries are only for linking.
	return filepath.WalkDir(filepath.Join(root, "usr/lib"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && strings.HasSuffix(p, ".a") {
			return os.Remove(p)
		}
		return nil
	})
}

// finish does the few things maintainer scripts would have done that the image
// needs: the CA bundle, the dynamic linker's cache, /bin/sh.
func (t TreeBuilder) finish(ctx context.Context, root string) error {
	if err := caBundle(root); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "usr/bin/sh")); errors.Is(err, fs.ErrNotExist) {
		for _, sh := range []string{"dash", "busybox"} {
			if _, err := os.Stat(filepath.Join(root, "usr/bin", sh)); err == nil {
				if err := os.Symlink(sh, filepath.Join(root, "usr/bin/sh")); err != nil {
					return fmt.Errorf("link /bin/sh: %w", err)
				}
				break
			}
		}
	}
	if _, err := os.Stat(filepath.Join(root, "etc/ld.so.conf")); errors.Is(err, fs.ErrNotExist) {
		if err := os.WriteFile(filepath.Join(root, "etc/ld.so.conf"), []byte("include /etc/ld.so.conf.d/*.conf\n"), 0o644); err != nil {
			return fmt.Errorf("ld.so.conf: %w", err)
		}
	}
	if _, err := t.Runner.Run(ctx, "ldconfig", "-r", root); err != nil {
		return fmt.Errorf("ld.so.cache: %w", err)
	}
	return nil
}

// caBundle writes /etc/ssl/certs/ca-certificates.crt as update-ca-certificates would
// from the certificates ca-certificates ships.
func caBundle(root string) error {
	src := filepath.Join(root, "usr/share/ca-certificates")
	var certs []string
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && strings.HasSuffix(p, ".crt") {
			certs = append(certs, p)
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ca bundle: %w", err)
	}
	slices.Sort(certs)
	var bundle []byte
	for _, c := range certs {
		b, err := os.ReadFile(c)
		if err != nil {
			return fmt.Errorf("ca bundle: %w", err)
		}
		bundle = append(bundle, b...)
		if len(b) > 0 && b[len(b)-1] != '\n' {
			bundle = append(bundle, '\n')
		}
	}
	dst := filepath.Join(root, "etc/ssl/certs/ca-certificates.crt")
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("ca bundle: %w", err)
	}
	return WriteFile(dst, bundle, 0o644)
}

// LinkTree recreates the tree src at dst with hard links to src's files, so that an
// image's staging folder costs no copying. A file that src holds under two names is
// copied for the second one: the cpio writer would otherwise store an empty file.
// Never write into a linked file; WriteFile replaces it instead.
func LinkTree(src, dst string) error {
	seen := map[uint64]bool{}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if err := os.MkdirAll(target, 0o755); err != nil {
				return fmt.Errorf("link tree: %w", err)
			}
			return os.Chmod(target, info.Mode().Perm()|info.Mode()&(fs.ModeSetgid|fs.ModeSticky))
		case d.Type()&fs.ModeSymlink != 0:
			to, err := os.Readlink(p)
			if err != nil {
				return err
			}
			os.Remove(target)
			return os.Symlink(to, target)
		case d.Type().IsRegular():
			st := info.Sys().(*syscall.Stat_t)
			os.Remove(target)
			if seen[st.Ino] {
				return copyFile(p, target, info.Mode())
			}
			seen[st.Ino] = true
			if err := os.Link(p, target); err != nil {
				return fmt.Errorf("link tree: %w", err)
			}
			return nil
		default:
			return nil // no device nodes or fifos in packages
		}
	})
}

// WriteFile replaces path (which may be a hard link into a cached tree) with a new
// file holding b.
func WriteFile(path string, b []byte, mode fs.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.WriteFile(path, b, mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.Chmod(path, mode)
}

// CopyFile replaces dst with a copy of src.
func CopyFile(src, dst string, mode fs.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	os.Remove(dst)
	return copyFile(src, dst, mode)
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode.Perm())
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return os.Chmod(dst, mode&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky))
}

// TreeSize returns the bytes of the regular files under dir.
func TreeSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if i, err := d.Info(); err == nil {
				n += i.Size()
			}
		}
		return nil
	})
	return n
}

// lchtimes sets a path's times without following a symlink.
func lchtimes(path string, t time.Time) error {
	ts := []unix.Timespec{unix.NsecToTimespec(t.UnixNano()), unix.NsecToTimespec(t.UnixNano())}
	return unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, unix.AT_SYMLINK_NOFOLLOW)
}
