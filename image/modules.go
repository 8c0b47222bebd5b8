package image

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// Kernel is the extracted kernel image package: vmlinuz, its config and every module,
// with a modules.dep made by depmod.
type Kernel struct {
	// Dir is the cached tree of the package.
	Dir string
	// Version is what `uname -r` says, the folder name under /lib/modules.
	Version string
	// Modules indexes the modules.
	Modules *ModuleIndex
}

// Vmlinuz is the path of the kernel image.
func (k Kernel) Vmlinuz() string { return filepath.Join(k.Dir, "boot", "vmlinuz-"+k.Version) }

// Config is the path of the kernel's build configuration.
func (k Kernel) Config() string { return filepath.Join(k.Dir, "boot", "config-"+k.Version) }

// ModulesDir is /lib/modules/<version> in the kernel's tree.
func (k Kernel) ModulesDir() string { return filepath.Join(k.Dir, "usr/lib/modules", k.Version) }

// KernelTree extracts the kernel image package (cached) and indexes its modules.
func (t TreeBuilder) KernelTree(ctx context.Context, p Package, deb string) (Kernel, error) {
	dir, err := t.cached("kernel", treeKey([]Package{p}), func(dir string) error {
		if err := MakeMergedUsr(dir); err != nil {
			return err
		}
		if err := t.extract(ctx, deb, dir); err != nil {
			return fmt.Errorf("extract %s: %w", p.Name, err)
		}
		kver, err := kernelVersion(dir)
		if err != nil {
			return err
		}
		return Depmod(ctx, t.Runner, dir, kver)
	})
	if err != nil {
		return Kernel{}, err
	}
	kver, err := kernelVersion(dir)
	if err != nil {
		return Kernel{}, err
	}
	k := Kernel{Dir: dir, Version: kver}
	k.Modules, err = ReadModuleIndex(k.ModulesDir())
	if err != nil {
		return Kernel{}, err
	}
	return k, nil
}

func kernelVersion(dir string) (string, error) {
	ents, err := os.ReadDir(filepath.Join(dir, "usr/lib/modules"))
	if err != nil {
		return "", fmt.Errorf("kernel version: %w", err)
	}
	if len(ents) != 1 {
		return "", fmt.Errorf("kernel version: want one folder in /lib/modules, found %d", len(ents))
	}
	return ents[0].Name(), nil
}

// Depmod runs depmod for the modules under root/lib/modules/<kver> and then removes
// trailing blanks from modules.dep lines: u-root's kmodule reads "x.ko: " as a
// dependency on the modules folder itself and fails.
func Depmod(ctx context.Context, r *Runner, root, kver string) error {
	if _, err := r.Run(ctx, "depmod", "-b", root, kver); err != nil {
		return fmt.Errorf("depmod %s: %w", kver, err)
	}
	p := filepath.Join(root, "usr/lib/modules", kver, "modules.dep")
	b, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("depmod %s: %w", kver, err)
	}
	return WriteFile(p, TrimModulesDep(b), 0o644)
}

// TrimModulesDep removes blanks at the end of each modules.dep line.
func TrimModulesDep(b []byte) []byte {
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		out.WriteString(strings.TrimRight(sc.Text(), " \t"))
		out.WriteByte('\n')
	}
	return out.Bytes()
}

// ModuleIndex is a kernel's modules.dep and modules.builtin.
type ModuleIndex struct {
	// paths maps a module name (with "_", not "-") to its path under the modules folder.
	paths map[string]string
	// deps maps a module path to the paths it needs.
	deps    map[string][]string
	builtin map[string]bool
	// soft maps a module path to the paths of its soft dependencies (modules.softdep,
	// names resolved through modules.alias): modules it asks the kernel for at init,
	// like libcrc32c's crc32c implementation. modprobe loads them, and nothing works
	// when their files are missing.
	soft map[string][]string
}

// ModuleName is a module's canonical name: the file name without .ko*, "-" as "_".
func ModuleName(s string) string {
	s = path.Base(s)
	if i := strings.Index(s, ".ko"); i >= 0 {
		s = s[:i]
	}
	return strings.ReplaceAll(s, "-", "_")
}

// ReadModuleIndex reads modules.dep and modules.builtin in dir.
func ReadModuleIndex(dir string) (*ModuleIndex, error) {
	dep, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("module index: %w", err)
	}
	defer dep.Close()
	builtin, err := os.Open(filepath.Join(dir, "modules.builtin"))
	if err != nil {
		return nil, fmt.Errorf("module index: %w", err)
	}
	defer builtin.Close()
	m, err := ParseModuleIndex(dep, builtin)
	if err != nil {
		return nil, err
	}
	soft, err := os.ReadFile(filepath.Join(dir, "modules.softdep"))
	if err != nil {
		return nil, fmt.Errorf("module index: %w", err)
	}
	alias, err := os.ReadFile(filepath.Join(dir, "modules.alias"))
	if err != nil {
		return nil, fmt.Errorf("module index: %w", err)
	}
	m.ParseSoftdeps(bytes.NewReader(soft), bytes.NewReader(alias))
	return m, nil
}

// ParseSoftdeps reads modules.softdep ("softdep libcrc32c pre: crc32c") and the
// modules.alias lines that name its targets ("alias crc32c crc32c_generic"). Every
// module an alias stands for is kept: which one the kernel picks depends on the CPU.
func (m *ModuleIndex) ParseSoftdeps(softdep, alias io.Reader) {
	aliases := map[string][]string{}
	sc := bufio.NewScanner(alias)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && f[0] == "alias" && !strings.ContainsAny(f[1], "*?[") {
			aliases[f[1]] = append(aliases[f[1]], ModuleName(f[2]))
		}
	}
	sc = bufio.NewScanner(softdep)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 || f[0] != "softdep" {
			continue
		}
		p, ok := m.paths[ModuleName(f[1])]
		if !ok {
			continue
		}
		for _, name := range f[2:] {
			if strings.HasSuffix(name, ":") {
				continue // pre: / post:
			}
			targets := []string{ModuleName(name)}
			if a, ok := aliases[name]; ok {
				targets = a
			}
			for _, t := range targets {
				if tp, ok := m.paths[ModuleName(t)]; ok {
					m.soft[p] = append(m.soft[p], tp)
				}
			}
		}
	}
}

// ParseModuleIndex reads a modules.dep and a modules.builtin.
func ParseModuleIndex(dep, builtin io.Reader) (*ModuleIndex, error) {
	m := &ModuleIndex{paths: map[string]string{}, deps: map[string][]string{}, builtin: map[string]bool{}, soft: map[string][]string{}}
	sc := bufio.NewScanner(dep)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		p, deps, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		p = strings.TrimSpace(p)
		m.paths[ModuleName(p)] = p
		m.deps[p] = strings.Fields(deps)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("modules.dep: %w", err)
	}
	sc = bufio.NewScanner(builtin)
	for sc.Scan() {
		if s := strings.TrimSpace(sc.Text()); s != "" {
			m.builtin[ModuleName(s)] = true
		}
	}
	return m, sc.Err()
}

// ModuleSet is what a module list resolves to.
type ModuleSet struct {
	// Files are the module files to install, with every dependency, sorted.
	Files []string
	// Load are the listed modules that are loadable, in the list's order: what the
	// supervisor loads (it loads dependencies from modules.dep itself).
	Load []string
	// Builtin are the listed modules the kernel has built in; nothing to load.
	Builtin []string
}

// Resolve finds the listed modules and their dependencies. A name the kernel knows
// neither as a module nor as built in is an error: it is a typo or a module the
// kernel no longer has.
func (m *ModuleIndex) Resolve(names []string) (ModuleSet, error) {
	var set ModuleSet
	files := map[string]bool{}
	var unknown []string
	for _, n := range names {
		n = ModuleName(n)
		p, ok := m.paths[n]
		switch {
		case ok:
			if !slices.Contains(set.Load, n) {
				set.Load = append(set.Load, n)
			}
			m.closure(p, files)
		case m.builtin[n]:
			set.Builtin = append(set.Builtin, n)
		default:
			unknown = append(unknown, n)
		}
	}
	if len(unknown) > 0 {
		return set, fmt.Errorf("kernel has no module %s", strings.Join(unknown, ", "))
	}
	for f := range files {
		set.Files = append(set.Files, f)
	}
	slices.Sort(set.Files)
	return set, nil
}

// AllExcept returns every module file except those under the excluded folders
// (relative to the modules folder, e.g. "kernel/sound"), plus whatever the kept ones
// need from the excluded folders.
func (m *ModuleIndex) AllExcept(exclude []string) []string {
	files := map[string]bool{}
	for _, p := range m.paths {
		skip := false
		for _, e := range exclude {
			if strings.HasPrefix(p, strings.TrimSuffix(e, "/")+"/") {
				skip = true
				break
			}
		}
		if !skip {
			m.closure(p, files)
		}
	}
	out := make([]string, 0, len(files))
	for f := range files {
		out = append(out, f)
	}
	slices.Sort(out)
	return out
}

func (m *ModuleIndex) closure(p string, into map[string]bool) {
	if into[p] {
		return
	}
	into[p] = true
	for _, d := range m.deps[p] {
		m.closure(d, into)
	}
	for _, d := range m.soft[p] {
		m.closure(d, into)
	}
}

// ReadNameList reads a list file: one name per line, "#" starts a comment.
func ReadNameList(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read list: %w", err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		out = append(out, strings.Fields(line)...)
	}
	return out, nil
}

// InstallModules puts the given module files of k (paths under its modules folder)
// into root's /lib/modules/<version> as links, with the kernel's modules.order and
// modules.builtin, and runs depmod there. Root must have the merged-/usr links.
func InstallModules(ctx context.Context, r *Runner, k Kernel, root string, files []string) error {
	dst := filepath.Join(root, "usr/lib/modules", k.Version)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("install modules: %w", err)
	}
	extra := []string{"modules.order", "modules.builtin", "modules.builtin.modinfo"}
	for _, f := range append(slices.Clone(files), extra...) {
		target := filepath.Join(dst, f)
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return fmt.Errorf("install modules: %w", err)
		}
		os.Remove(target)
		if err := os.Link(filepath.Join(k.ModulesDir(), f), target); err != nil {
			if errors.Is(err, fs.ErrNotExist) && slices.Contains(extra, f) {
				continue
			}
			return fmt.Errorf("install module %s: %w", f, err)
		}
	}
	return Depmod(ctx, r, root, k.Version)
}
