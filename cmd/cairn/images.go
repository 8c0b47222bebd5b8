package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-os/cairn/supervisor/apiclient"
	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/spf13/cobra"
)

func (a *app) imagesCmd() *cobra.Command {
	cmd := group("images", "Disk images: create, upload, download, clone, convert, back up")
	cmd.AddCommand(a.command("list", "List your images (admins: all)", exactArgs(),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			images, err := c.Images(ctx)
			if err != nil {
				return err
			}
			return printList(a, images, []string{"ID", "NAME", "FORMAT", "STATE", "WHERE", "SIZE", "USED", "MASTER", "BACKING"}, func(im engine.Image) []string {
				return []string{im.ID, im.Name, im.Format, imageState(im), imageWhere(im), bytesText(uint64(max(im.VirtualSize, 0))),
					bytesText(uint64(max(im.ActualSize, 0))), yesNo(im.Master), orDash(im.Backing)}
			})
		}))
	cmd.AddCommand(a.command("show ID", "Show an image (by ID or name)", exactArgs("ID"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			im, err := c.Image(ctx, args[0])
			if err != nil {
				return err
			}
			return printImage(a, im)
		}))
	cmd.AddCommand(a.imageCreateCmd(), a.imageUploadCmd(), a.imageDownloadCmd())
	cmd.AddCommand(a.command("info ID", "qemu-img's view of an image: sizes and backing chain", exactArgs("ID"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			info, err := c.ImageInfo(ctx, args[0])
			if err != nil {
				return err
			}
			if a.output == "json" {
				return printJSON(a.stdout, info)
			}
			fmt.Fprintf(a.stdout, "image %s (%s), %s, %s\n", info.Image.ID, info.Image.Name, info.Image.Format, imageWhere(info.Image))
			return printList(a, info.Chain, []string{"FILE", "FORMAT", "SIZE", "USED", "BACKING FILE"}, func(l engine.ChainLink) []string {
				return []string{l.Path, l.Format, bytesText(uint64(max(l.VirtualSize, 0))), bytesText(uint64(max(l.ActualSize, 0))), orDash(l.BackingFile)}
			})
		}))
	cmd.AddCommand(a.command("resize ID SIZE", "Grow an image to SIZE (like 20G)", exactArgs("ID", "SIZE"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			size, err := parseSize(args[1])
			if err != nil {
				return usageErr("%v", err)
			}
			im, err := c.ResizeImage(ctx, args[0], size)
			if err != nil {
				return err
			}
			return printImage(a, im)
		}))

	var convertName string
	var noWait bool
	convert := a.command("convert ID FORMAT", "Convert an image into a new image of another format", exactArgs("ID", "FORMAT"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			op, err := c.ConvertImage(ctx, args[0], args[1], convertName)
			if err != nil {
				return err
			}
			return a.finishOp(ctx, c, op, noWait)
		})
	convert.Flags().StringVar(&convertName, "name", "", "the new image's name")
	noWaitFlag(convert, &noWait)
	cmd.AddCommand(convert, a.imageCloneCmd())
	for _, v := range []struct {
		use, short string
		start      func(c *apiclient.Client, ctx context.Context, id string) (engine.Operation, error)
	}{
		{"flatten ID", "Make a child image independent of its master", (*apiclient.Client).FlattenImage},
		{"backup ID", "Back an image up into the backup pool now", (*apiclient.Client).BackupImage},
	} {
		var noWait bool
		sub := a.command(v.use, v.short, exactArgs("ID"),
			func(ctx context.Context, c *apiclient.Client, args []string) error {
				op, err := v.start(c, ctx, args[0])
				if err != nil {
					return err
				}
				return a.finishOp(ctx, c, op, noWait)
			})
		noWaitFlag(sub, &noWait)
		cmd.AddCommand(sub)
	}
	for _, v := range []struct {
		use, short string
		master     bool
	}{
		{"master ID", "Mark an image master: read-only, cloned into children", true},
		{"unmaster ID", "Take the master mark off an image (it must have no children)", false},
	} {
		cmd.AddCommand(a.command(v.use, v.short, exactArgs("ID"),
			func(ctx context.Context, c *apiclient.Client, args []string) error {
				im, err := c.UpdateImage(ctx, args[0], engine.ImageUpdate{Master: &v.master})
				if err != nil {
					return err
				}
				return printImage(a, im)
			}))
	}
	cmd.AddCommand(a.imageUpdateCmd())
	cmd.AddCommand(a.command("delete ID", "Delete an image (not a master with children, not one a server uses)", exactArgs("ID"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			if err := c.DeleteImage(ctx, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Deleted image %s\n", args[0])
			return nil
		}))
	return cmd
}

func (a *app) imageCreateCmd() *cobra.Command {
	var size, format, pool string
	var cmd *cobra.Command
	cmd = a.command("create NAME", "Create an empty image", exactArgs("NAME"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			n, err := parseSize(size)
			if err != nil {
				return usageErr("--size: %v", err)
			}
			p, err := poolFlag(ctx, c, cmd, pool)
			if err != nil {
				return err
			}
			im, err := c.CreateImage(ctx, engine.ImageRequest{Name: args[0], Format: format, Size: n, Pool: p})
			if err != nil {
				return err
			}
			return printImage(a, im)
		})
	cmd.Example = "  cairn images create data1 --size 20G\n  cairn images create scratch --size 512M --format raw --pool 1"
	cmd.Flags().StringVar(&size, "size", "", "the disk's size, like 10G (required)")
	cmd.Flags().StringVar(&format, "format", "qcow2", "qcow2, raw, vmdk, vdi or vhdx")
	cmd.Flags().StringVar(&pool, "pool", "0", "the pool, by number or name")
	cmd.MarkFlagRequired("size")
	return cmd
}

// formatOfFile tells an image file's format from its extension.
func formatOfFile(path string) (string, bool) {
	switch strings.ToLower(strings.TrimPrefix(filepath.Ext(path), ".")) {
	case "qcow2", "qcow":
		return "qcow2", true
	case "img", "raw":
		return "raw", true
	case "iso":
		return "iso", true
	case "vmdk":
		return "vmdk", true
	case "vdi":
		return "vdi", true
	case "vhdx":
		return "vhdx", true
	}
	return "", false
}

// extOfFormat is the file name extension of an image format.
func extOfFormat(format string) string {
	if format == "raw" {
		return "img"
	}
	return format
}

// imageNameOf makes an image name of a file name: "Debian-12.qcow2" → "debian-12".
func imageNameOf(path string) string {
	base := strings.ToLower(strings.TrimSuffix(filepath.Base(path), filepath.Ext(path)))
	var b strings.Builder
	for _, r := range base {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '_', r == '@', r == '-':
			b.WriteRune(r)
		default:
			b.WriteRune('-')
		}
	}
	name := strings.TrimLeft(b.String(), "._@-")
	if len(name) > 64 {
		name = name[:64]
	}
	if len(name) < 2 {
		name = "image-" + name
	}
	return name
}

func (a *app) imageUploadCmd() *cobra.Command {
	var name, format, pool, resume, chunk string
	var cmd *cobra.Command
	cmd = a.command("upload FILE", "Upload a disk image or ISO; an interrupted upload resumes", exactArgs("FILE"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			path := args[0]
			chunkSize, err := parseSize(chunk)
			if err != nil || chunkSize <= 0 {
				return usageErr("--chunk-size %s: give a size like 16M", chunk)
			}
			f, err := os.Open(path)
			if err != nil {
				return fmt.Errorf("upload %s: %w", path, err)
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				return fmt.Errorf("upload %s: %w", path, err)
			}
			if !fi.Mode().IsRegular() || fi.Size() == 0 {
				return usageErr("upload %s: give a regular, non-empty file", path)
			}
			id := resume
			if id == "" {
				if format == "" {
					detected, ok := formatOfFile(path)
					if !ok {
						return usageErr("upload %s: cannot tell the image format from the file name; give --format qcow2, raw, iso, vmdk, vdi or vhdx", path)
					}
					format = detected
				}
				if name == "" {
					name = imageNameOf(path)
				}
				p, err := poolFlag(ctx, c, cmd, pool)
				if err != nil {
					return err
				}
				im, err := c.CreateImage(ctx, engine.ImageRequest{Name: name, Format: format, Size: fi.Size(), Pool: p, Upload: true})
				if err != nil {
					return err
				}
				id = im.ID
				fmt.Fprintf(a.stderr, "Uploading %s (%s) as image %s (%s)\n", path, bytesText(uint64(fi.Size())), im.Name, im.ID)
			} else {
				if name != "" || format != "" || cmd.Flags().Changed("pool") {
					return usageErr("--resume takes the image's name, format and pool from the upload begun earlier; leave out --name, --format and --pool")
				}
				fmt.Fprintf(a.stderr, "Resuming the upload of %s into image %s\n", path, id)
			}
			ictx, stop := interruptible(ctx)
			defer stop()
			bar := a.byteProgress("uploading")
			im, err := c.Upload(ictx, id, f, fi.Size(), apiclient.Transfer{
				ChunkSize: chunkSize,
				Progress:  bar.set,
				Retrying: func(err error, wait time.Duration) {
					bar.line.clear()
					fmt.Fprintf(a.stderr, "Upload interrupted (%v); resuming in %s\n", err, wait.Round(10*time.Millisecond))
				},
			})
			bar.line.clear()
			if err != nil {
				return a.transferFailed("upload", err, fmt.Sprintf("cairn images upload --resume %s %s", id, path), ctx)
			}
			fmt.Fprintf(a.stderr, "Uploaded %s\n", path)
			return printImage(a, im)
		})
	cmd.Example = "  cairn images upload debian-12.qcow2\n" +
		"  cairn images upload installer.bin --format iso --name debian-installer\n" +
		"  cairn images upload --resume i-3f2a9c debian-12.qcow2"
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "the image's name (default: the file's name without its extension)")
	f.StringVar(&format, "format", "", "qcow2, raw, iso, vmdk, vdi or vhdx (default: from the file's extension); the engine checks it")
	f.StringVar(&pool, "pool", "0", "the pool, by number or name")
	f.StringVar(&resume, "resume", "", "resume the upload into image `ID`, begun earlier with the same FILE")
	f.StringVar(&chunk, "chunk-size", "16M", "how much one request sends")
	return cmd
}

// transferFailed explains a transfer that stopped: interrupted or given up, and
// how to go on.
func (a *app) transferFailed(verb string, err error, resume string, ctx context.Context) error {
	var te *apiclient.TransferError
	if !errors.As(err, &te) {
		return err
	}
	where := fmt.Sprintf("at %s of %s", bytesText(uint64(max(te.Offset, 0))), bytesText(uint64(max(te.Size, 0))))
	if te.Size < 0 {
		where = fmt.Sprintf("at %s", bytesText(uint64(max(te.Offset, 0))))
	}
	if errors.Is(err, context.Canceled) && ctx.Err() == nil {
		return &exitErr{code: exitInterrupted, err: fmt.Errorf("the %s was interrupted %s.\n  resume it with: %s", verb, where, resume)}
	}
	return fmt.Errorf("the %s stopped %s: %v\n  resume it with: %s", verb, where, te.Err, resume)
}

func (a *app) imageDownloadCmd() *cobra.Command {
	return a.command("download ID [FILE]", "Download an image's file; a partial FILE is completed", rangeArgs(1, "ID", "FILE"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			im, err := c.Image(ctx, args[0])
			if err != nil {
				return err
			}
			path := im.Name + "." + extOfFormat(im.Format)
			if len(args) > 1 {
				path = args[1]
			}
			f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
			if err != nil {
				return fmt.Errorf("download image %s: %w", im.ID, err)
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				return fmt.Errorf("download image %s: %w", im.ID, err)
			}
			have := fi.Size()
			if have > 0 {
				fmt.Fprintf(a.stderr, "Resuming the download into %s from byte %d\n", path, have)
			}
			ictx, stop := interruptible(ctx)
			defer stop()
			bar := a.byteProgress("downloading")
			size, err := c.Download(ictx, im.ID, f, have, apiclient.Transfer{
				Progress: bar.set,
				Retrying: func(err error, wait time.Duration) {
					bar.line.clear()
					fmt.Fprintf(a.stderr, "Download interrupted (%v); resuming in %s\n", err, wait.Round(10*time.Millisecond))
				},
			})
			bar.line.clear()
			if err != nil {
				return a.transferFailed("download", err, fmt.Sprintf("cairn images download %s %s", im.ID, path), ctx)
			}
			if err := f.Truncate(size); err != nil {
				return fmt.Errorf("download image %s: %w", im.ID, err)
			}
			if err := f.Close(); err != nil {
				return fmt.Errorf("download image %s: %w", im.ID, err)
			}
			if a.output == "json" {
				return printJSON(a.stdout, map[string]any{"image": im.ID, "file": path, "bytes": size})
			}
			fmt.Fprintf(a.stdout, "Downloaded image %s (%s) to %s, %s\n", im.Name, im.ID, path, bytesText(uint64(size)))
			return nil
		})
}

func (a *app) imageCloneCmd() *cobra.Command {
	var name, pool, node string
	var full, noWait bool
	var cmd *cobra.Command
	cmd = a.command("clone ID", "Clone a master into a linked child (at once), or make a full copy", exactArgs("ID"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			p, err := poolFlag(ctx, c, cmd, pool)
			if err != nil {
				return err
			}
			req := engine.CloneRequest{Name: name, Pool: p, Node: node}
			if full {
				linked := false
				req.Linked = &linked
			}
			r, err := c.CloneImage(ctx, args[0], req)
			if err != nil {
				return err
			}
			if r.Operation != nil {
				return a.finishOp(ctx, c, *r.Operation, noWait)
			}
			if r.Image == nil {
				return fmt.Errorf("clone image %s: the engine answered with neither an image nor an operation", args[0])
			}
			return printImage(a, *r.Image)
		})
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "the new image's name (default: the source's name with a suffix)")
	f.StringVar(&pool, "pool", "", "the pool of the new image, by number or name")
	f.StringVar(&node, "node", "", "put a linked child on this node's local storage")
	f.BoolVar(&full, "full", false, "make a full, independent copy (the default for images that are not masters)")
	noWaitFlag(cmd, &noWait)
	return cmd
}

func (a *app) imageUpdateCmd() *cobra.Command {
	var name, backupAt string
	var backupKeep int
	var cmd *cobra.Command
	cmd = a.command("update ID", "Rename an image or set its daily backup", exactArgs("ID"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			var upd engine.ImageUpdate
			set := cmd.Flags().Changed
			if set("name") {
				upd.Name = &name
			}
			if set("backup-at") {
				upd.BackupAt = &backupAt
			}
			if set("backup-keep") {
				upd.BackupKeep = &backupKeep
			}
			if upd == (engine.ImageUpdate{}) {
				return usageErr("nothing to change: give --name, --backup-at or --backup-keep")
			}
			im, err := c.UpdateImage(ctx, args[0], upd)
			if err != nil {
				return err
			}
			return printImage(a, im)
		})
	cmd.Example = "  cairn images update web1-disk --backup-at 02:00 --backup-keep 7\n  cairn images update web1-disk --backup-at \"\"   # no more daily backups"
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "new name")
	f.StringVar(&backupAt, "backup-at", "", "daily backup time, HH:MM; \"\" stops daily backups")
	f.IntVar(&backupKeep, "backup-keep", 0, "how many daily backups to keep")
	return cmd
}

func imageState(im engine.Image) string {
	if im.State == engine.ImageUploading && im.Upload != nil && im.Upload.Size > 0 {
		return fmt.Sprintf("uploading %d%%", im.Upload.Offset*100/im.Upload.Size)
	}
	return string(im.State)
}

func imageWhere(im engine.Image) string {
	if im.Node != "" {
		return "node " + im.Node
	}
	return "pool " + strconv.Itoa(im.Pool)
}

func printImage(a *app, im engine.Image) error {
	fields := [][2]string{
		{"id", im.ID},
		{"name", im.Name},
		{"format", im.Format},
		{"state", imageState(im)},
		{"where", imageWhere(im)},
		{"size", bytesText(uint64(max(im.VirtualSize, 0)))},
		{"used", bytesText(uint64(max(im.ActualSize, 0)))},
		{"master", yesNo(im.Master)},
		{"backing", orDash(im.Backing)},
	}
	if im.Upload != nil {
		fields = append(fields, [2]string{"uploaded", fmt.Sprintf("%d of %d bytes", im.Upload.Offset, im.Upload.Size)})
	}
	backup := "-"
	if im.BackupAt != "" {
		backup = fmt.Sprintf("daily at %s, keep %d", im.BackupAt, im.BackupKeep)
	}
	fields = append(fields,
		[2]string{"backup", backup},
		[2]string{"used by", listOrDash(im.UsedBy)},
		[2]string{"children", listOrDash(im.Children)},
		[2]string{"path", im.Path},
		[2]string{"owner", im.Owner},
		[2]string{"created", im.CreatedAt.Local().Format("2006-01-02 15:04:05")},
	)
	return printObject(a, im, fields)
}
