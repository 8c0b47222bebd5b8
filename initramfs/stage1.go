package initramfs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cairn-os/cairn/image"
)

// Files in the stage-1 image that the supervisor's stage 1 reads.
const (
	Stage1Marker  = "etc/cairn-stage1"
	Stage1Modules = "etc/cairn/modules-stage1"
)

// BuildStage1 writes the admin's stage-1 initramfs to out: the supervisor as /init,
// /etc/cairn-stage1, and the modules of configs/modules/stage1.txt (with their
// dependencies and a modules.dep) listed in /etc/cairn/modules-stage1.
func BuildStage1(ctx context.Context, b *image.Builder, k image.Kernel, version, supervisor, out string) error {
	names, err := b.ModuleList("stage1")
	if err != nil {
		return err
	}
	set, err := k.Modules.Resolve(names)
	if err != nil {
		return fmt.Errorf("configs/modules/stage1.txt: %w", err)
	}
	stage, err := b.Cache.TempDir("stage1")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	if err := image.MakeMergedUsr(stage); err != nil {
		return err
	}
	if err := image.InstallModules(ctx, b.Runner, k, stage, set.Files); err != nil {
		return err
	}
	if err := image.CopyFile(supervisor, filepath.Join(stage, "init"), 0o755); err != nil {
		return err
	}
	if err := image.WriteFile(filepath.Join(stage, Stage1Marker), []byte(version+"\n"), 0o644); err != nil {
		return err
	}
	if err := image.WriteFile(filepath.Join(stage, Stage1Modules), []byte(image.ModuleListFile(set.Load)), 0o644); err != nil {
		return err
	}
	start := time.Now()
	if err := writeArchive(ctx, b, stage, out, fastZstd); err != nil {
		return err
	}
	b.Logger.Info("wrote stage-1 initramfs", "modules", len(set.Files), "size", image.MiB(image.FileSize(out)), "took", time.Since(start).Round(time.Millisecond))
	return nil
}
