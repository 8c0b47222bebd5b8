package pid1

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
)

// moduleIndex is what depmod wrote about a kernel's modules, read tolerantly: u-root's
// kmodule stops at a modules.dep line with a trailing space after the colon, which
// hand-made and filtered trees have (FIELD-NOTES), so Cairn resolves dependencies
// itself and uses kmodule only to load each file.
type moduleIndex struct {
	dir    string              // /lib/modules/<release>
	path   map[string]string   // module name → file, relative to dir as in modules.dep
	deps   map[string][]string // module name → the names it needs, in modules.dep order
	loaded map[string]bool     // built in, or already in the kernel
}

// modName returns the kernel's name for a module file or a name a person wrote:
// "kernel/drivers/net/virtio_net.ko.xz" → "virtio_net", "virtio-net" → "virtio_net".
// The kernel uses underscores; file names use either.
func modName(s string) string {
	s = filepath.Base(strings.TrimSpace(s))
	for _, ext := range []string{".gz", ".xz", ".zst"} {
		s = strings.TrimSuffix(s, ext)
	}
	s = strings.TrimSuffix(s, ".ko")
	return strings.ReplaceAll(s, "-", "_")
}

// parseModulesDep reads modules.dep: "kernel/a.ko: kernel/b.ko kernel/c.ko". Blank
// lines, trailing spaces, tabs and CRLF are tolerated; a line without a colon is an
// error that names the line but does not stop the parse.
func (ix *moduleIndex) parseModulesDep(r io.Reader) error {
	var errs []error
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		file, rest, ok := strings.Cut(line, ":")
		if !ok {
			errs = append(errs, fmt.Errorf("modules.dep line %d: no colon", n))
			continue
		}
		file = strings.TrimSpace(file)
		name := modName(file)
		ix.path[name] = file
		var deps []string
		for _, d := range strings.Fields(rest) {
			deps = append(deps, modName(d))
		}
		ix.deps[name] = deps
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("read modules.dep: %w", err))
	}
	return errors.Join(errs...)
}

// parseNames marks as loaded the module named by the first field of each line:
// modules.builtin ("kernel/fs/ext4/ext4.ko") and /proc/modules ("virtio_net 57344 0 -
// Live 0x0") both have that shape.
func (ix *moduleIndex) parseNames(r io.Reader) error {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 0 {
			ix.loaded[modName(f[0])] = true
		}
	}
	return sc.Err()
}

func newModuleIndex(dir string) *moduleIndex {
	return &moduleIndex{dir: dir, path: map[string]string{}, deps: map[string][]string{}, loaded: map[string]bool{}}
}

// load loads a module and what it needs with insmod, skipping what is built in or
// loaded. spec is a name, optionally followed by parameters ("kvm_intel nested=1").
// modules.dep lists every module needed, directly or not, deepest last, so loading
// the list backwards loads each before its users; the walk is recursive anyway, in
// case a list is not complete.
func (ix *moduleIndex) load(spec string, insmod func(path, params string) error) error {
	fields := strings.Fields(spec)
	if len(fields) == 0 {
		return nil
	}
	name, params := modName(fields[0]), strings.Join(fields[1:], " ")
	var walk func(name, params string, stack []string) error
	walk = func(name, params string, stack []string) error {
		if ix.loaded[name] {
			return nil
		}
		if slices.Contains(stack, name) {
			return fmt.Errorf("dependency cycle: %s", strings.Join(append(stack, name), " → "))
		}
		file, ok := ix.path[name]
		if !ok {
			return fmt.Errorf("module %s: not in %s", name, filepath.Join(ix.dir, "modules.dep"))
		}
		deps := ix.deps[name]
		for i := len(deps) - 1; i >= 0; i-- {
			if err := walk(deps[i], "", append(stack, name)); err != nil {
				return fmt.Errorf("module %s needs %s: %w", name, deps[i], err)
			}
		}
		if !filepath.IsAbs(file) {
			file = filepath.Join(ix.dir, file)
		}
		if err := insmod(file, params); err != nil {
			return fmt.Errorf("insmod %s: %w", file, err)
		}
		ix.loaded[name] = true
		return nil
	}
	return walk(name, params, nil)
}
