package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/cairn-os/cairn/internal/testimage"
	"github.com/cairn-os/cairn/supervisor/virt"
)

// run measures everything and writes the report's section.
func run(ctx context.Context, log *slog.Logger, o options) error {
	if os.Geteuid() != 0 {
		return errNoRoot
	}
	if o.runs < 1 {
		return fmt.Errorf("-runs %d: give at least 1", o.runs)
	}
	if o.sizeGiB < 1 || o.dataMiB < 1 || int64(o.dataMiB) > int64(o.sizeGiB)<<10 {
		return fmt.Errorf("-size-gib %d -data-mib %d: give a size of at least 1 GiB and at least 1 MiB of data that fits in it", o.sizeGiB, o.dataMiB)
	}
	for _, p := range []string{"qemu-img", "qemu-io", "qemu-system-x86_64", "virsh", "rsync", "sync", "cp"} {
		if _, err := exec.LookPath(p); err != nil {
			return fmt.Errorf("%s is not installed: install the build's host packages (make deps)", p)
		}
	}
	if _, err := os.Stat(virt.DefaultSocket); err != nil {
		return fmt.Errorf("no libvirtd socket at %s: start libvirtd (make libvirtd): %w", virt.DefaultSocket, err)
	}
	out, err := filepath.Abs(o.out)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Dir(out)); err != nil {
		return fmt.Errorf("report %s: %w: run from the repository's root or give -out", o.out, err)
	}
	if fi, err := os.Stat(o.dir); err != nil {
		return fmt.Errorf("-dir %s: %w", o.dir, err)
	} else if fi.Mode().Perm()&0o001 == 0 {
		return fmt.Errorf("-dir %s: qemu runs as %s and must pass through it to reach the disks: choose a folder others may enter (chmod o+x)", o.dir, virt.QemuUser)
	}

	r := Report{Date: time.Now(), Machine: readMachine(ctx), Runs: o.runs}
	repo, err := testimage.RepoRoot()
	if err != nil {
		return err
	}
	img, err := testimage.Build(ctx, repo)
	if err != nil {
		return fmt.Errorf("build the test image: %w", err)
	}

	dir, err := os.MkdirTemp(o.dir, "cairn-bench-storage-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	consoles, logs := filepath.Join(dir, "consoles"), filepath.Join(dir, "console-logs")
	state, baseline := filepath.Join(dir, "state"), filepath.Join(dir, "baseline")
	for _, d := range []string{dir, state, baseline} {
		// qemu (libvirt-qemu) passes through these folders to the disks.
		if err := os.MkdirAll(d, 0o711); err != nil {
			return err
		}
		if err := os.Chmod(d, 0o711); err != nil {
			return err
		}
	}
	if err := virt.PrepareDirs(consoles, logs); err != nil {
		return err
	}
	engineLog := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	l, err := openLab(ctx, engineLog, labConfig{stateDir: state, consoles: consoles, logs: logs})
	if err != nil {
		return err
	}
	log.Info("engine open", "state", state, "pool0", l.pool0)
	r.Servers = measureServers(ctx, log, l, img, baseline, consoles, logs, o.runs)
	fs, dev := mountOf(l.pool0)
	r.Images = append(r.Images, measureImages(ctx, log, l, fs,
		fmt.Sprintf("a folder in the run's temporary folder, on %s (`%s`), driver `dir`", fs, dev), o, fs == "btrfs" || fs == "xfs"))
	l.close(ctx)

	if o.btrfs && ctx.Err() == nil && fs != "btrfs" {
		if f, err := measureBtrfs(ctx, log, engineLog, dir, consoles, logs, o); err != nil {
			r.Notes = append(r.Notes, "The btrfs case was not measured: "+err.Error())
			log.Warn("btrfs case not measured", "err", err)
		} else {
			r.Images = append(r.Images, f)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("interrupted, report not written: %w", err)
	}
	r.Machine.LoadEnd = loadAverage()
	if err := writeSection(out, r.Markdown()); err != nil {
		return err
	}
	log.Info("report written", "file", out)
	return nil
}

// measureBtrfs measures the images again with pool 0 on a btrfs subvolume of a loop
// device, with an engine of its own.
func measureBtrfs(ctx context.Context, log, engineLog *slog.Logger, dir, consoles, logs string, o options) (ImageFigures, error) {
	// Room for the master and, should reflinks fail, three full copies beside it.
	size := 4*(int64(o.dataMiB)<<20) + 4<<30
	pools, _, undo, err := btrfsPools(ctx, dir, size)
	if err != nil {
		return ImageFigures{}, err
	}
	defer undo()
	state := filepath.Join(dir, "state-btrfs")
	if err := os.Mkdir(state, 0o711); err != nil {
		return ImageFigures{}, err
	}
	os.Chmod(state, 0o711)
	l, err := openLab(ctx, engineLog, labConfig{stateDir: state, poolsDir: pools, pool0Driver: "btrfs", consoles: consoles, logs: logs})
	if err != nil {
		return ImageFigures{}, err
	}
	defer l.close(ctx)
	setup := fmt.Sprintf("the subvolume `pools/0` of a btrfs filesystem, driver `btrfs`, as on the appliance's data disk. "+
		"The filesystem is on a loop device over a sparse file of %d GiB in the run's temporary folder, so a copy that moves "+
		"data writes it twice (btrfs, then the file under it) and is slower than on a disk of its own", size>>30)
	return measureImages(ctx, log, l, "btrfs", setup, o, true), nil
}
