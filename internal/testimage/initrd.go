package testimage

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cairn-os/cairn/image"
	"github.com/klauspost/compress/zstd"
	"github.com/u-root/mkuimage/cpio"
)

// writeInitrd writes the guest's initrd to out: busybox with a link for each applet,
// the recipe's files, and the kernel modules with their dependencies, a modules.dep
// for busybox modprobe and the lists of modules to load. It is a zstd-compressed newc
// cpio (the kernel unpacks zstd faster than gzip, which shows under TCG) with times
// and owners cleared.
func (b *builder) writeInitrd(ctx context.Context, k image.Kernel, busybox, out string) error {
	mods, err := resolveModules(k)
	if err != nil {
		return err
	}
	applets, err := b.run.Run(ctx, busybox, "--list-full")
	if err != nil {
		return fmt.Errorf("test image: list busybox applets: %w", err)
	}
	bin, err := os.ReadFile(busybox)
	if err != nil {
		return fmt.Errorf("test image: %w", err)
	}

	recs := map[string]cpio.Record{}
	add := func(r cpio.Record) {
		// Every parent folder comes first: the kernel does not make missing ones.
		for d := path.Dir(r.Name); d != "."; d = path.Dir(d) {
			if _, ok := recs[d]; !ok {
				recs[d] = cpio.Directory(d, 0o755)
			}
		}
		recs[r.Name] = r
	}
	for _, d := range []string{"proc", "sys", "run", "mnt/disk", "root", "var/log"} {
		add(cpio.Directory(d, 0o755))
	}
	add(cpio.Directory("tmp", 0o1777))
	add(cpio.CharDev("dev/console", 0o600, 5, 1))
	add(cpio.CharDev("dev/null", 0o666, 1, 3))
	add(cpio.Symlink("var/run", "../run"))
	add(cpio.StaticRecord(bin, cpio.Info{Name: "bin/busybox", Mode: cpio.S_IFREG | 0o755}))
	for _, a := range strings.Fields(string(applets)) {
		a = strings.TrimPrefix(a, "/")
		// linuxrc, the one applet at the root, is for old-style initrds.
		if a == "bin/busybox" || !strings.Contains(a, "/") {
			continue
		}
		add(cpio.Symlink(a, "/bin/busybox"))
	}
	for name, f := range guestFiles() {
		add(cpio.StaticFile(name, f.content, f.mode))
	}
	modDir := "lib/modules/" + k.Version
	for _, f := range mods.files {
		data, err := os.ReadFile(filepath.Join(k.ModulesDir(), f))
		if err != nil {
			return fmt.Errorf("test image: module %s: %w", f, err)
		}
		add(cpio.StaticRecord(data, cpio.Info{Name: modDir + "/" + f, Mode: cpio.S_IFREG | 0o644}))
	}
	add(cpio.StaticFile(modDir+"/modules.dep", mods.dep, 0o644))
	add(cpio.StaticFile("etc/cairn/modules", strings.Join(mods.load, "\n")+"\n", 0o644))
	add(cpio.StaticFile("etc/cairn/modules-optional", strings.Join(mods.optional, "\n")+"\n", 0o644))

	names := make([]string, 0, len(recs))
	for n := range recs {
		names = append(names, n)
	}
	// A parent's name is a prefix of its children's, so it sorts first.
	slices.Sort(names)

	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("test image: %w", err)
	}
	defer f.Close()
	enc, err := zstd.NewWriter(f, zstd.WithEncoderLevel(zstd.SpeedBestCompression),
		zstd.WithWindowSize(8<<20), zstd.WithEncoderCRC(true))
	if err != nil {
		return fmt.Errorf("test image: initrd: %w", err)
	}
	buf := bufio.NewWriterSize(enc, 1<<20)
	w := cpio.Newc.Writer(buf)
	for _, n := range names {
		if err := w.WriteRecord(cpio.MakeReproducible(recs[n])); err != nil {
			return fmt.Errorf("test image: initrd %s: %w", n, err)
		}
	}
	if err := cpio.WriteTrailer(w); err != nil {
		return fmt.Errorf("test image: initrd: %w", err)
	}
	if err := buf.Flush(); err != nil {
		return fmt.Errorf("test image: initrd: %w", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("test image: initrd: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("test image: initrd: %w", err)
	}
	return nil
}

// modules is what the initrd carries of the kernel's modules.
type modules struct {
	// files are the module files, paths under the modules folder, with every
	// dependency and soft dependency.
	files []string
	// dep is modules.dep for files.
	dep string
	// load are the listed modules that are not built in, in the list's order;
	// modprobe loads each one's dependencies.
	load []string
	// optional are the soft dependencies no listed module needs outright (crc
	// implementations some of which need CPU features qemu's CPU lacks): loaded first
	// so that the modules asking for them find them, and allowed to fail.
	optional []string
}

// resolveModules resolves moduleNames against the kernel.
func resolveModules(k image.Kernel) (modules, error) {
	set, err := k.Modules.Resolve(moduleNames)
	if err != nil {
		return modules{}, fmt.Errorf("test image: %w", err)
	}
	deps, err := readModulesDep(filepath.Join(k.ModulesDir(), "modules.dep"))
	if err != nil {
		return modules{}, err
	}
	m := modules{files: set.Files, load: set.Load}
	byName := map[string]string{}
	for _, f := range set.Files {
		byName[image.ModuleName(f)] = f
	}
	hard := map[string]bool{}
	var reach func(f string)
	reach = func(f string) {
		if hard[f] {
			return
		}
		hard[f] = true
		for _, d := range deps[f] {
			reach(d)
		}
	}
	for _, n := range set.Load {
		reach(byName[n])
	}
	var dep strings.Builder
	for _, f := range set.Files {
		if !hard[f] {
			m.optional = append(m.optional, image.ModuleName(f))
		}
		fmt.Fprintf(&dep, "%s:", f)
		for _, d := range deps[f] {
			fmt.Fprintf(&dep, " %s", d)
		}
		dep.WriteString("\n")
	}
	m.dep = dep.String()
	return m, nil
}

// readModulesDep reads modules.dep: each module's path and the paths it needs.
func readModulesDep(p string) (map[string][]string, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("test image: %w", err)
	}
	defer f.Close()
	deps := map[string][]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		mod, ds, ok := strings.Cut(sc.Text(), ":")
		if ok {
			deps[strings.TrimSpace(mod)] = strings.Fields(ds)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("test image: %s: %w", p, err)
	}
	return deps, nil
}
