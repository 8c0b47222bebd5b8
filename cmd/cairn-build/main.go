// Command cairn-build builds Cairn's images from pinned Debian packages:
//
//	cairn-build lock                                     configs/packages/*.txt → configs/packages.lock
//	cairn-build initramfs --supervisor BIN --out DIR     the compute node's vmlinuz + initramfs
//	cairn-build iso --supervisor BIN --compute DIR --version V --out FILE
//
// Downloads and extracted trees are cached in $CAIRN_CACHE (default ~/.cache/cairn).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cairn-os/cairn/image"
	"github.com/cairn-os/cairn/initramfs"
)

const usage = `usage: cairn-build [-C repo] [-v] <command> [flags]

commands:
  lock        resolve configs/packages/*.txt into configs/packages.lock
  initramfs   --supervisor BIN --out DIR [--version V]: compute vmlinuz + initramfs
  iso         --supervisor BIN --compute DIR --version V --out FILE: the admin ISO
`

func main() {
	global := flag.NewFlagSet("cairn-build", flag.ExitOnError)
	global.Usage = func() { fmt.Fprint(os.Stderr, usage) }
	repo := global.String("C", ".", "the clone's root (holds configs/)")
	verbose := global.Bool("v", false, "log every command")
	global.Parse(os.Args[1:])
	if global.NArg() < 1 {
		global.Usage()
		os.Exit(2)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	start := time.Now()
	err := run(ctx, logger, *repo, global.Arg(0), global.Args()[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "cairn-build:", err)
		os.Exit(1)
	}
	logger.Info("done", "command", global.Arg(0), "took", time.Since(start).Round(100*time.Millisecond))
}

func run(ctx context.Context, logger *slog.Logger, repo, cmd string, args []string) error {
	abs, err := filepath.Abs(repo)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(abs, "configs/packages")); err != nil {
		return fmt.Errorf("%s is not a Cairn clone (no configs/packages): use -C", abs)
	}
	cacheDir, err := image.DefaultCacheDir()
	if err != nil {
		return err
	}
	r := &image.Runner{Logger: logger}
	b := &image.Builder{
		Repo:   abs,
		Cache:  image.Cache{Dir: cacheDir},
		Runner: r,
		Logger: logger,
		Epoch:  epoch(ctx, r, abs),
	}
	switch cmd {
	case "lock":
		return lock(ctx, b, args)
	case "initramfs":
		return computeImage(ctx, b, args)
	case "iso":
		return iso(ctx, b, args)
	default:
		return fmt.Errorf("unknown command %q\n%s", cmd, usage)
	}
}

// epoch is SOURCE_DATE_EPOCH, else the time of the clone's last commit, else now.
func epoch(ctx context.Context, r *image.Runner, repo string) time.Time {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return time.Unix(n, 0).UTC()
		}
	}
	if out, err := r.Run(ctx, "git", "-C", repo, "log", "-1", "--format=%ct"); err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil {
			return time.Unix(n, 0).UTC()
		}
	}
	return time.Now().UTC().Truncate(time.Second)
}

func lock(ctx context.Context, b *image.Builder, args []string) error {
	fs := flag.NewFlagSet("lock", flag.ExitOnError)
	fs.Parse(args)
	l, err := b.Lock(ctx)
	if err != nil {
		return err
	}
	for _, role := range image.Roles {
		b.Logger.Info("locked", "role", role, "packages", len(l.Role(role)))
	}
	fmt.Printf("wrote %s: %d packages\n", b.LockPath(), len(l.Packages))
	return nil
}

func computeImage(ctx context.Context, b *image.Builder, args []string) error {
	fs := flag.NewFlagSet("initramfs", flag.ExitOnError)
	supervisor := fs.String("supervisor", "", "the supervisor binary (CGO_ENABLED=0 GOAMD64=v1)")
	out := fs.String("out", "", "output folder")
	version := fs.String("version", "dev", "the build's version")
	fs.Parse(args)
	if *supervisor == "" || *out == "" {
		return errors.New("initramfs: --supervisor and --out are required")
	}
	res, err := initramfs.BuildCompute(ctx, b, initramfs.ComputeInput{Version: *version, Supervisor: *supervisor, OutDir: *out})
	if err != nil {
		return err
	}
	fmt.Printf("compute kernel     %s  %s\n", res.Vmlinuz, image.MiB(image.FileSize(res.Vmlinuz)))
	fmt.Printf("compute initramfs  %s  %s (packages %s + cairn %s)\n", res.Initramfs,
		image.MiB(image.FileSize(res.Initramfs)), image.MiB(res.Packages), image.MiB(res.Cairn))
	return nil
}

func iso(ctx context.Context, b *image.Builder, args []string) error {
	fs := flag.NewFlagSet("iso", flag.ExitOnError)
	supervisor := fs.String("supervisor", "", "the supervisor binary (CGO_ENABLED=0 GOAMD64=v1)")
	compute := fs.String("compute", "", "folder with the compute vmlinuz and initramfs (cairn-build initramfs)")
	version := fs.String("version", "dev", "the build's version")
	out := fs.String("out", "", "the ISO to write")
	fs.Parse(args)
	if *supervisor == "" || *compute == "" || *out == "" {
		return errors.New("iso: --supervisor, --compute and --out are required")
	}
	p, err := b.Prepare(ctx, "admin")
	if err != nil {
		return err
	}
	stage, err := b.Cache.TempDir("admin")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	if err := b.StageAdminRoot(ctx, p, image.AdminInput{Version: *version, Supervisor: *supervisor, ComputeDir: *compute}, stage); err != nil {
		return err
	}
	rootSize := image.TreeSize(stage)
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return err
	}
	work, err := os.MkdirTemp(filepath.Dir(*out), ".cairn-iso-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	squash := filepath.Join(work, "root.squashfs")
	if err := b.Squashfs(ctx, stage, squash); err != nil {
		return err
	}
	initrd := filepath.Join(work, "initrd.img")
	if err := initramfs.BuildStage1(ctx, b, p.Kernel, *version, *supervisor, initrd); err != nil {
		return err
	}
	if err := b.ISO(ctx, image.ISOInput{Version: *version, Vmlinuz: p.Kernel.Vmlinuz(), Initrd: initrd, Squashfs: squash, Out: *out}); err != nil {
		return err
	}
	computeInitrd := filepath.Join(*compute, "initramfs"+initramfs.CompressedExt)
	fmt.Printf("iso                %s  %s\n", *out, image.MiB(image.FileSize(*out)))
	fmt.Printf("  root.squashfs    %s (%s unpacked)\n", image.MiB(image.FileSize(squash)), image.MiB(rootSize))
	fmt.Printf("  stage-1 initrd   %s\n", image.MiB(image.FileSize(initrd)))
	fmt.Printf("  vmlinuz          %s\n", image.MiB(image.FileSize(p.Kernel.Vmlinuz())))
	fmt.Printf("  compute initrd   %s\n", image.MiB(image.FileSize(computeInitrd)))
	return nil
}
