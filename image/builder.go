package image

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"
)

// Builder holds what every image build shares: the clone's configs, the cache, the
// command runner.
type Builder struct {
	// Repo is the clone's root; configs/ is read from it.
	Repo   string
	Cache  Cache
	Runner *Runner
	Logger *slog.Logger
	// Epoch is the time every file in an image gets (SOURCE_DATE_EPOCH).
	Epoch time.Time
}

// LockPath is configs/packages.lock.
func (b *Builder) LockPath() string { return filepath.Join(b.Repo, "configs/packages.lock") }

func (b *Builder) apt() Apt { return Apt{Dir: b.Cache.Path("apt"), Runner: b.Runner} }

func (b *Builder) trees() TreeBuilder {
	return TreeBuilder{Cache: b.Cache, Runner: b.Runner, Logger: b.Logger}
}

// Lock resolves configs/packages/*.txt and writes configs/packages.lock.
func (b *Builder) Lock(ctx context.Context) (Lock, error) {
	lists, err := ReadPackageLists(filepath.Join(b.Repo, "configs/packages"))
	if err != nil {
		return Lock{}, err
	}
	l, err := LockPackages(ctx, b.apt(), lists)
	if err != nil {
		return Lock{}, err
	}
	if err := os.WriteFile(b.LockPath(), l.Format(), 0o644); err != nil {
		return Lock{}, fmt.Errorf("write lock: %w", err)
	}
	return l, nil
}

// Prepared is a role's packages, fetched and extracted.
type Prepared struct {
	Role     string
	Packages []Package
	// Tree is the cached, pruned package tree (shared: link it, never write into it).
	Tree   string
	Kernel Kernel
}

// Prepare fetches role's locked packages and returns its package tree and the kernel.
func (b *Builder) Prepare(ctx context.Context, role string) (Prepared, error) {
	lock, err := ReadLock(b.LockPath())
	if err != nil {
		return Prepared{}, err
	}
	pkgs := lock.Role(role)
	if len(pkgs) == 0 {
		return Prepared{}, fmt.Errorf("packages.lock has no packages for %s: run `make lock`", role)
	}
	kpkg, err := KernelPackage(pkgs)
	if err != nil {
		return Prepared{}, err
	}
	f := Fetcher{Cache: b.Cache, Apt: b.apt(), Logger: b.Logger}
	debs, err := f.Fetch(ctx, pkgs)
	if err != nil {
		return Prepared{}, err
	}
	tree, err := b.trees().PackageTree(ctx, role, pkgs, debs)
	if err != nil {
		return Prepared{}, err
	}
	k, err := b.trees().KernelTree(ctx, kpkg, debs[kpkg.Name])
	if err != nil {
		return Prepared{}, err
	}
	return Prepared{Role: role, Packages: pkgs, Tree: tree, Kernel: k}, nil
}

// ModuleList reads configs/modules/<name>.txt.
func (b *Builder) ModuleList(name string) ([]string, error) {
	return ReadNameList(filepath.Join(b.Repo, "configs/modules", name+".txt"))
}

// StageFormat names what StageRoot makes; change it when that changes, so that
// images cached from a staged root (the compute package part) are made again.
const StageFormat = "cairn-stage-2"

// StageRoot makes dir a root tree for p's role: the package tree linked in, the
// given kernel modules with a modules.dep, /etc/cairn/modules listing load, and the
// system files of SystemFiles. The caller adds /etc/cairn-release.
func (b *Builder) StageRoot(ctx context.Context, p Prepared, dir string, moduleFiles, load []string) error {
	start := time.Now()
	if err := LinkTree(p.Tree, dir); err != nil {
		return fmt.Errorf("stage %s root: %w", p.Role, err)
	}
	if err := InstallModules(ctx, b.Runner, p.Kernel, dir, moduleFiles); err != nil {
		return err
	}
	files := SystemFiles(p.Role, load)
	for _, name := range sortedPaths(files) {
		mode := fs.FileMode(0o644)
		if m, ok := fileModes[name]; ok {
			mode = fs.FileMode(m)
		}
		if err := WriteFile(filepath.Join(dir, name), []byte(files[name]), mode); err != nil {
			return err
		}
	}
	// mount and mount.nfs keep /etc/mtab only when it is not the kernel's table.
	os.Remove(filepath.Join(dir, "etc/mtab"))
	if err := os.Symlink("../proc/self/mounts", filepath.Join(dir, "etc/mtab")); err != nil {
		return fmt.Errorf("stage %s root: %w", p.Role, err)
	}
	for _, d := range []string{"proc", "sys", "dev", "run", "tmp", "root", "var/log", "var/lib", "var/tmp", "mnt"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return fmt.Errorf("stage %s root: %w", p.Role, err)
		}
	}
	// base-files would make these (it is not in the closure): daemons use /var/run
	// and /run interchangeably, and /run is a tmpfs.
	for link, to := range map[string]string{"var/run": "../run", "var/lock": "../run/lock"} {
		os.RemoveAll(filepath.Join(dir, link))
		if err := os.Symlink(to, filepath.Join(dir, link)); err != nil {
			return fmt.Errorf("stage %s root: %w", p.Role, err)
		}
	}
	for _, d := range []string{"tmp", "var/tmp"} {
		if err := os.Chmod(filepath.Join(dir, d), 0o777|fs.ModeSticky); err != nil {
			return fmt.Errorf("stage %s root: %w", p.Role, err)
		}
	}
	b.Logger.Info("staged root", "role", p.Role, "modules", len(moduleFiles), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// RoleModules resolves configs/modules/<role>.txt against the kernel: the files to
// install and the names to load at boot.
func (b *Builder) RoleModules(p Prepared, list string) (ModuleSet, error) {
	names, err := b.ModuleList(list)
	if err != nil {
		return ModuleSet{}, err
	}
	set, err := p.Kernel.Modules.Resolve(names)
	if err != nil {
		return ModuleSet{}, fmt.Errorf("configs/modules/%s.txt: %w", list, err)
	}
	if len(set.Builtin) > 0 {
		b.Logger.Debug("modules built into the kernel", "list", list, "modules", set.Builtin)
	}
	return set, nil
}

// MiB formats a size for the build's report.
func MiB(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// FileSize returns a file's size, or 0.
func FileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}
