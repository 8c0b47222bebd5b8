package testimage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cairn-os/cairn/image"
	"github.com/cairn-os/cairn/supervisor/hostcmd"
)

// builder makes the image. Build and BuildRaw use the image cache for both the
// packages and the finished images; a test may send the images to a folder of its own.
type builder struct {
	repo   string
	cache  image.Cache
	out    string // where finished images go: <cache>/testimage
	run    hostcmd.Runner
	logger *slog.Logger
}

func newBuilder(repo string) (*builder, error) {
	dir, err := image.DefaultCacheDir()
	if err != nil {
		return nil, err
	}
	return &builder{
		repo:   repo,
		cache:  image.Cache{Dir: dir},
		out:    filepath.Join(dir, "testimage"),
		run:    runner,
		logger: slog.Default().With("component", "testimage"),
	}, nil
}

// runner runs the host programs (mkfs.vfat, syslinux, mtools, qemu-img, qemu-io).
var runner hostcmd.Runner = hostcmd.Exec{}

// inputs are what the image is made of: the cache key hashes their text.
type inputs struct {
	kernel  image.Package
	busybox image.Package // from the lock; Name is empty when the host's is used
	// busyboxHost is the host's busybox-static version when the lock has none.
	busyboxHost string
	syslinux    string // the host's syslinux package version
}

// lines lists the inputs one a line, as the key hashes them.
func (in inputs) lines() []string {
	bb := "busybox-static host " + in.busyboxHost
	if in.busybox.Name != "" {
		bb = lockLine(in.busybox)
	}
	return []string{
		recipeVersion,
		"kernel " + lockLine(in.kernel),
		"busybox " + bb,
		"syslinux " + in.syslinux,
		"recipe sha256 " + sha256Hex(recipeText()),
	}
}

func lockLine(p image.Package) string {
	return p.Name + " " + p.Version + " " + p.Arch + " " + p.SHA256
}

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// key is the image's cache key: 16 hex digits of the inputs' hash.
func (in inputs) key() string {
	return sha256Hex(strings.Join(in.lines(), "\n") + "\n")[:16]
}

// inputs reads the lock and asks dpkg for the host's package versions.
func (b *builder) inputs(ctx context.Context) (inputs, error) {
	lockPath := filepath.Join(b.repo, "configs/packages.lock")
	lock, err := image.ReadLock(lockPath)
	if err != nil {
		return inputs{}, fmt.Errorf("test image: %w", err)
	}
	pkgs := lock.Role("compute")
	var in inputs
	in.kernel, err = image.KernelPackage(pkgs)
	if err != nil {
		return inputs{}, fmt.Errorf("test image: %s: %w", lockPath, err)
	}
	for _, p := range pkgs {
		if p.Name == "busybox-static" {
			in.busybox = p
		}
	}
	if in.busybox.Name == "" {
		if in.busyboxHost, err = b.hostVersion(ctx, "busybox-static"); err != nil {
			return inputs{}, err
		}
	}
	if in.syslinux, err = b.hostVersion(ctx, "syslinux"); err != nil {
		return inputs{}, err
	}
	return in, nil
}

func (b *builder) hostVersion(ctx context.Context, pkg string) (string, error) {
	out, err := b.run.Run(ctx, "dpkg-query", "-W", "-f", "${Version}", pkg)
	v := strings.TrimSpace(string(out))
	if err == nil && v == "" {
		err = errors.New("not installed")
	}
	if err != nil {
		return "", fmt.Errorf("test image: host package %s: %w: install it (apt-get install %s, or `make deps`)", pkg, err, pkg)
	}
	return v, nil
}

// raw returns the cached raw image, building it when it is missing.
func (b *builder) raw(ctx context.Context) (string, error) {
	in, err := b.inputs(ctx)
	if err != nil {
		return "", err
	}
	path := filepath.Join(b.out, in.key()+".raw")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	b.logger.Info("building test image", "key", in.key(), "inputs", strings.Join(in.lines(), "; "))
	start := time.Now()
	if err := b.buildRaw(ctx, in, path); err != nil {
		return "", err
	}
	b.logger.Info("built test image", "path", path, "size", image.MiB(image.FileSize(path)), "took", time.Since(start).Round(time.Millisecond))
	b.prune()
	return path, nil
}

// keepImages is how many images (by key) the cache keeps: other clones or branches on
// the machine may use older recipes.
const keepImages = 4

// prune removes all but the newest keepImages images from the cache.
func (b *builder) prune() {
	raws, _ := filepath.Glob(filepath.Join(b.out, "????????????????.raw"))
	if len(raws) <= keepImages {
		return
	}
	mtime := func(p string) time.Time {
		st, err := os.Stat(p)
		if err != nil {
			return time.Time{}
		}
		return st.ModTime()
	}
	slices.SortFunc(raws, func(x, y string) int { return mtime(y).Compare(mtime(x)) })
	for _, p := range raws[keepImages:] {
		b.logger.Debug("removing old test image", "path", p)
		os.Remove(p)
		os.Remove(strings.TrimSuffix(p, ".raw") + ".qcow2")
	}
}

// qcow2 returns the cached qcow2 image, converting the raw one when it is missing.
func (b *builder) qcow2(ctx context.Context) (string, error) {
	raw, err := b.raw(ctx)
	if err != nil {
		return "", err
	}
	path := strings.TrimSuffix(raw, ".raw") + ".qcow2"
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	err = b.publish(path, func(tmp string) error {
		if _, err := b.run.Run(ctx, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, tmp); err != nil {
			return fmt.Errorf("test image: convert to qcow2: %w (install qemu-utils)", err)
		}
		return nil
	})
	return path, err
}

// publish makes path by having fill write a temporary file beside it and renaming
// that into place, so that two processes building at once each publish a whole image
// and a reader never sees half of one.
func (b *builder) publish(path string, fill func(tmp string) error) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("test image cache: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-")
	if err != nil {
		return fmt.Errorf("test image cache: %w", err)
	}
	tmp := f.Name()
	f.Close()
	os.Remove(tmp) // mkfs.vfat -C and qemu-img create the file themselves
	if err := fill(tmp); err != nil {
		os.Remove(tmp)
		return err
	}
	// libvirt's qemu runs as another user: the cached image must be readable.
	if err := os.Chmod(tmp, 0o644); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("test image cache: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("test image cache: %w", err)
	}
	return nil
}

// buildRaw makes the FAT disk: syslinux's boot sector and files, syslinux.cfg, the
// kernel, the initrd, the marker and the boot counter.
func (b *builder) buildRaw(ctx context.Context, in inputs, path string) error {
	work, err := b.cache.TempDir("testimage")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	kernel, busybox, err := b.packages(ctx, in, work)
	if err != nil {
		return err
	}
	initrd := filepath.Join(work, "initrd")
	if err := b.writeInitrd(ctx, kernel, busybox, initrd); err != nil {
		return err
	}
	texts := map[string]string{
		"syslinux.cfg": syslinuxCfg(),
		markerFile:     DefaultMarker + "\n",
		bootsFile:      "0\n",
	}
	for name, s := range texts {
		if err := os.WriteFile(filepath.Join(work, name), []byte(s), 0o644); err != nil {
			return fmt.Errorf("test image: %w", err)
		}
	}
	return b.publish(path, func(tmp string) error {
		if _, err := b.run.Run(ctx, "mkfs.vfat", "-C", "-n", Label, "-i", volumeID, tmp, fmt.Sprint(diskMiB*1024)); err != nil {
			return fmt.Errorf("test image: make FAT file system: %w (install dosfstools)", err)
		}
		if _, err := b.run.Run(ctx, "syslinux", "--install", tmp); err != nil {
			return fmt.Errorf("test image: install syslinux: %w (install syslinux and mtools)", err)
		}
		files := [][2]string{
			{kernel.Vmlinuz(), "vmlinuz"},
			{initrd, "initrd"},
			{filepath.Join(work, "syslinux.cfg"), "syslinux.cfg"},
			{filepath.Join(work, markerFile), markerFile},
			{filepath.Join(work, bootsFile), bootsFile},
		}
		for _, f := range files {
			if _, err := b.run.Run(ctx, "mcopy", "-i", tmp, f[0], "::"+f[1]); err != nil {
				return fmt.Errorf("test image: copy %s: %w (install mtools)", f[1], err)
			}
		}
		return nil
	})
}

// packages returns the kernel (fetched and extracted through package image's cache,
// the tree Builder.Prepare makes too) and the path of busybox.
func (b *builder) packages(ctx context.Context, in inputs, work string) (image.Kernel, string, error) {
	runner := &image.Runner{Logger: b.logger}
	pkgs := []image.Package{in.kernel}
	if in.busybox.Name != "" {
		pkgs = append(pkgs, in.busybox)
	}
	f := image.Fetcher{Cache: b.cache, Apt: image.Apt{Dir: b.cache.Path("apt"), Runner: runner}, Logger: b.logger}
	debs, err := f.Fetch(ctx, pkgs)
	if err != nil {
		return image.Kernel{}, "", fmt.Errorf("test image: %w", err)
	}
	trees := image.TreeBuilder{Cache: b.cache, Runner: runner, Logger: b.logger}
	k, err := trees.KernelTree(ctx, in.kernel, debs[in.kernel.Name])
	if err != nil {
		return image.Kernel{}, "", fmt.Errorf("test image: %w", err)
	}
	if in.busybox.Name == "" {
		return k, "/bin/busybox", nil
	}
	dir := filepath.Join(work, "busybox-deb")
	if _, err := b.run.Run(ctx, "dpkg-deb", "-x", debs[in.busybox.Name], dir); err != nil {
		return image.Kernel{}, "", fmt.Errorf("test image: extract busybox-static: %w", err)
	}
	for _, p := range []string{"bin/busybox", "usr/bin/busybox"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err == nil {
			return k, filepath.Join(dir, p), nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return image.Kernel{}, "", fmt.Errorf("test image: %w", err)
		}
	}
	return image.Kernel{}, "", fmt.Errorf("test image: %s has no busybox binary", filepath.Base(debs[in.busybox.Name]))
}
