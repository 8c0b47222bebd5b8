package initramfs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cairn-os/cairn/image"
)

// ComputeMarker marks the compute node's initramfs (the supervisor reads it).
const ComputeMarker = "etc/cairn-compute"

// computeFormat names the way the compute image's package part is made; change it
// when that changes, so that cached parts made the old way are not reused.
const computeFormat = "cairn-compute-1"

// ComputeInput is what the compute image is made of besides its packages.
type ComputeInput struct {
	Version    string
	Supervisor string
	// OutDir gets vmlinuz and initramfs.cpio.zst.
	OutDir string
}

// ComputeResult names the files written.
type ComputeResult struct {
	Vmlinuz   string
	Initramfs string
	// Packages and Cairn are the sizes of the two compressed parts.
	Packages, Cairn int64
}

// BuildCompute writes the compute node's kernel and initramfs.
//
// The initramfs is two zstd-compressed cpio archives one after the other, which the
// kernel unpacks in turn into the same root. The first holds the compute package tree
// (Debian's paths kept, so that qemu finds its modules and firmware), the modules of
// configs/modules/compute.txt with modules.dep, and the /etc files; it only changes
// with the lock, so it is compressed hard once and cached. The second holds what
// changes with every build: the supervisor as /init, /etc/cairn-compute and
// /etc/cairn-release.
func BuildCompute(ctx context.Context, b *image.Builder, in ComputeInput) (ComputeResult, error) {
	p, err := b.Prepare(ctx, "compute")
	if err != nil {
		return ComputeResult{}, err
	}
	set, err := b.RoleModules(p, "compute")
	if err != nil {
		return ComputeResult{}, err
	}
	pkgPart, err := computePackagePart(ctx, b, p, set)
	if err != nil {
		return ComputeResult{}, err
	}

	stage, err := b.Cache.TempDir("compute")
	if err != nil {
		return ComputeResult{}, err
	}
	defer os.RemoveAll(stage)
	if err := image.CopyFile(in.Supervisor, filepath.Join(stage, "init"), 0o755); err != nil {
		return ComputeResult{}, err
	}
	if err := image.WriteFile(filepath.Join(stage, ComputeMarker), []byte(in.Version+"\n"), 0o644); err != nil {
		return ComputeResult{}, err
	}
	rel := image.CairnRelease(image.Release{Version: in.Version, Role: p.Role})
	if err := image.WriteFile(filepath.Join(stage, image.ReleasePath), []byte(rel), 0o644); err != nil {
		return ComputeResult{}, err
	}
	if err := os.MkdirAll(in.OutDir, 0o755); err != nil {
		return ComputeResult{}, fmt.Errorf("compute image: %w", err)
	}
	cairnPart := filepath.Join(in.OutDir, ".cairn-part"+CompressedExt)
	defer os.Remove(cairnPart)
	if err := writeArchive(ctx, b, stage, cairnPart, fastZstd); err != nil {
		return ComputeResult{}, err
	}

	res := ComputeResult{
		Vmlinuz:   filepath.Join(in.OutDir, "vmlinuz"),
		Initramfs: filepath.Join(in.OutDir, "initramfs"+CompressedExt),
		Packages:  image.FileSize(pkgPart),
		Cairn:     image.FileSize(cairnPart),
	}
	if err := concat(res.Initramfs, pkgPart, cairnPart); err != nil {
		return ComputeResult{}, err
	}
	if err := image.CopyFile(p.Kernel.Vmlinuz(), res.Vmlinuz, 0o644); err != nil {
		return ComputeResult{}, err
	}
	// An initramfs of another compression from an earlier build would confuse the
	// admin's boot server.
	for _, old := range []string{"initramfs.cpio.gz", "initramfs.cpio.xz"} {
		os.Remove(filepath.Join(in.OutDir, old))
	}
	return res, nil
}

// computePackagePart returns the cached package part of the compute initramfs,
// making it when the lock, the module list or the /etc files changed.
func computePackagePart(ctx context.Context, b *image.Builder, p image.Prepared, set image.ModuleSet) (string, error) {
	h := sha256.New()
	fmt.Fprintln(h, computeFormat, image.StageFormat, filepath.Base(p.Tree), filepath.Base(p.Kernel.Dir))
	fmt.Fprintln(h, strings.Join(set.Files, " "))
	files := image.SystemFiles(p.Role, set.Load)
	for _, k := range sortedKeys(files) {
		fmt.Fprintln(h, k, len(files[k]), files[k])
	}
	key := hex.EncodeToString(h.Sum(nil))[:16]
	dir := b.Cache.Path("images")
	out := filepath.Join(dir, "compute-packages-"+key+CompressedExt)
	if _, err := os.Stat(out); err == nil {
		b.Logger.Info("compute package part cached", "key", key, "size", image.MiB(image.FileSize(out)))
		return out, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("compute image: %w", err)
	}
	stage, err := b.Cache.TempDir("compute-packages")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(stage)
	if err := b.StageRoot(ctx, p, stage, set.Files, set.Load); err != nil {
		return "", err
	}
	start := time.Now()
	if err := writeArchive(ctx, b, stage, out, smallZstd); err != nil {
		return "", err
	}
	b.Logger.Info("wrote compute package part", "files", image.MiB(image.TreeSize(stage)), "size", image.MiB(image.FileSize(out)), "took", time.Since(start).Round(time.Millisecond))
	old, _ := filepath.Glob(filepath.Join(dir, "compute-packages-*"))
	for _, o := range old {
		if o != out {
			os.Remove(o)
		}
	}
	return out, nil
}

// concat writes the parts one after the other into out.
func concat(out string, parts ...string) error {
	tmp := out + ".part"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("initramfs %s: %w", out, err)
	}
	for _, p := range parts {
		in, err := os.Open(p)
		if err != nil {
			f.Close()
			return fmt.Errorf("initramfs %s: %w", out, err)
		}
		_, err = io.Copy(f, in)
		in.Close()
		if err != nil {
			f.Close()
			return fmt.Errorf("initramfs %s: %w", out, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("initramfs %s: %w", out, err)
	}
	return os.Rename(tmp, out)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
