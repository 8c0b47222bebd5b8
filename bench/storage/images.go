package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/supervisor/hostcmd"
)

// ImageFigures are the figures of one big master image in pool 0 on one filesystem.
type ImageFigures struct {
	// Label names the case in headings: "ext4", "btrfs".
	Label string
	// FS and Device are the filesystem pool 0 was on and its source; Driver is pool
	// 0's driver and Setup says how the filesystem was made.
	FS, Device, Driver, Setup string
	// VirtualBytes is the master's virtual size, DataBytes how much was written into
	// it, FileBytes the size of its qcow2 file: the bytes every copy moves.
	VirtualBytes, DataBytes, FileBytes int64
	// Method is how Cairn's copy routine copied the file (from the backup's record):
	// reflink or rsync.
	Method string
	// Reflinked says whether the cp --reflink baseline was measured.
	Reflinked bool

	Linked, Child   Series // Cairn's linked clone; qemu-img create -b
	Copy            Series // Cairn's full copy
	Rsync, CpReflnk Series // rsync --sparse + sync; cp --reflink=always + sync
	Backup, Restore Series // Cairn's backup; restoring it as a new image

	// Err is why nothing was measured.
	Err string
}

// measureImages makes a big qcow2 master in pool 0 of l and measures, runs times
// each, alternating with the baselines: a linked clone, a full copy, a backup and a
// restore. reflink adds the cp --reflink baseline (on filesystems that share extents).
func measureImages(ctx context.Context, log *slog.Logger, l *lab, label, setup string, o options, reflink bool) ImageFigures {
	f := ImageFigures{
		Label: label, Setup: setup, Driver: l.pool0Driver, Reflinked: reflink,
		VirtualBytes: int64(o.sizeGiB) << 30, DataBytes: int64(o.dataMiB) << 20,
	}
	f.FS, f.Device = mountOf(l.pool0)
	run := hostcmd.Exec{}.Run

	pool := 0
	var master engine.Image
	if err := l.call(ctx, "POST", "/images", engine.ImageRequest{Name: "bench-big-" + randomHex(3), Format: "qcow2", Size: f.VirtualBytes, Pool: &pool}, &master); err != nil {
		f.Err = firstLine(err.Error())
		return f
	}
	defer func() {
		ctx := context.WithoutCancel(ctx)
		l.setMaster(ctx, master.ID, false)
		if err := l.deleteImage(ctx, master.ID); err != nil {
			log.Warn("delete the big master", "image", master.ID, "err", err)
		}
	}()
	if err := writeData(ctx, master.Path, f.DataBytes); err != nil {
		f.Err = firstLine(err.Error())
		return f
	}
	if err := l.setMaster(ctx, master.ID, true); err != nil {
		f.Err = firstLine(err.Error())
		return f
	}
	fi, err := os.Stat(master.Path)
	if err != nil {
		f.Err = err.Error()
		return f
	}
	f.FileBytes = fi.Size()
	// The baseline's copies go to a folder of pool 0, beside Cairn's images folder.
	dir := filepath.Join(l.pool0, "bench-baseline-"+randomHex(3))
	if err := os.Mkdir(dir, 0o755); err != nil {
		f.Err = err.Error()
		return f
	}
	defer os.RemoveAll(dir)
	log.Info("big master ready", "pool0", l.pool0, "fs", f.FS, "file_bytes", f.FileBytes)

	for i := range o.runs {
		timeOp := func(s *Series, fn func() error) {
			load := loadAverage()[0]
			start := time.Now()
			err := fn()
			s.add(time.Since(start), load, err)
		}
		baseCopy := func(s *Series, args ...string) {
			dst := filepath.Join(dir, fmt.Sprintf("copy-%d.qcow2", i))
			timeOp(s, func() error {
				if _, err := run(ctx, args[0], append(args[1:], master.Path, dst)...); err != nil {
					return err
				}
				// Cairn flushes its copy to disk before it says it is done; so does the baseline.
				_, err := run(ctx, "sync", dst)
				return err
			})
			os.Remove(dst)
		}

		alternate(i, func() {
			var res struct{ Image *engine.Image }
			timeOp(&f.Linked, func() error {
				linked := true
				return l.call(ctx, "POST", "/images/"+master.ID+"/clone", engine.CloneRequest{Name: fmt.Sprintf("linked-%d-%s", i, randomHex(2)), Linked: &linked}, &res)
			})
			if res.Image != nil {
				f.Linked.note(l.deleteImage(ctx, res.Image.ID))
			}
		}, func() {
			dst := filepath.Join(dir, fmt.Sprintf("child-%d.qcow2", i))
			timeOp(&f.Child, func() error {
				_, err := run(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-b", master.Path, "-F", "qcow2", dst)
				return err
			})
			os.Remove(dst)
		})

		// Each of Cairn's copies has a baseline copy beside it, so that none of them
		// always follows the others' writes.
		baseline := func() {
			baseCopy(&f.Rsync, "rsync", "--sparse")
			if reflink {
				baseCopy(&f.CpReflnk, "cp", "--reflink=always")
			}
		}
		alternate(i, func() { cairnCopy(ctx, l, &f, master, i, o.timeout, timeOp) }, baseline)
		var backup engine.Backup
		alternate(i, func() { backup = cairnBackup(ctx, l, &f, master, o.timeout, timeOp) }, baseline)
		if backup.ID != "" {
			if backup.Method != "" {
				f.Method = backup.Method
			}
			alternate(i, func() { cairnRestore(ctx, l, &f, backup, i, o.timeout, timeOp) }, baseline)
			f.Backup.note(l.call(context.WithoutCancel(ctx), "DELETE", "/backups/"+backup.ID, nil, nil))
		}
		log.Info("image figures", "fs", label, "run", i+1,
			"linked", last(f.Linked), "child", last(f.Child), "copy", last(f.Copy), "rsync", last(f.Rsync),
			"cp_reflink", last(f.CpReflnk), "backup", last(f.Backup), "restore", last(f.Restore))
		if ctx.Err() != nil {
			break
		}
	}
	return f
}

// cairnCopy times a full copy of master through the API and deletes the copy.
func cairnCopy(ctx context.Context, l *lab, f *ImageFigures, master engine.Image, i int, within time.Duration, timeOp func(*Series, func() error)) {
	var op engine.Operation
	timeOp(&f.Copy, func() error {
		linked := false
		var res struct{ Operation *engine.Operation }
		err := l.call(ctx, "POST", "/images/"+master.ID+"/clone", engine.CloneRequest{Name: fmt.Sprintf("copy-%d-%s", i, randomHex(2)), Linked: &linked}, &res)
		if err != nil {
			return err
		}
		if res.Operation == nil {
			return fmt.Errorf("clone with linked false answered without an operation")
		}
		op, err = l.wait(ctx, *res.Operation, within)
		return err
	})
	if op.Result != "" {
		f.Copy.note(l.deleteImage(ctx, op.Result))
	}
}

// cairnBackup times a backup of master through the API and returns the backup's
// record (empty when there is none).
func cairnBackup(ctx context.Context, l *lab, f *ImageFigures, master engine.Image, within time.Duration, timeOp func(*Series, func() error)) engine.Backup {
	var op engine.Operation
	timeOp(&f.Backup, func() error {
		err := l.call(ctx, "POST", "/images/"+master.ID+"/backup", nil, &op)
		if err != nil {
			return err
		}
		op, err = l.wait(ctx, op, within)
		return err
	})
	if op.Result == "" {
		return engine.Backup{}
	}
	b := engine.Backup{ID: op.Result}
	f.Backup.note(l.call(ctx, "GET", "/backups/"+op.Result, nil, &b))
	return b
}

// cairnRestore times restoring a backup as a new image through the API and deletes
// the image.
func cairnRestore(ctx context.Context, l *lab, f *ImageFigures, b engine.Backup, i int, within time.Duration, timeOp func(*Series, func() error)) {
	var op engine.Operation
	timeOp(&f.Restore, func() error {
		err := l.call(ctx, "POST", "/backups/"+b.ID+"/restore", engine.RestoreRequest{Name: fmt.Sprintf("restored-%d-%s", i, randomHex(2))}, &op)
		if err != nil {
			return err
		}
		op, err = l.wait(ctx, op, within)
		return err
	})
	if op.Result != "" {
		f.Restore.note(l.deleteImage(ctx, op.Result))
	}
}

// writeData writes n bytes of the pattern 0xab from the start of a qcow2 image with
// qemu-io, in 64 MiB requests, and flushes the file so that no copy pays for it.
func writeData(ctx context.Context, path string, n int64) error {
	const chunk = 64 << 20
	args := []string{"-f", "qcow2"}
	for off := int64(0); off < n; off += chunk {
		args = append(args, "-c", fmt.Sprintf("write -q -P 0xab %d %d", off, min(chunk, n-off)))
	}
	if _, err := (hostcmd.Exec{}).Run(ctx, "qemu-io", append(args, path)...); err != nil {
		return fmt.Errorf("write %d bytes into %s: %w", n, path, err)
	}
	fh, err := os.Open(path)
	if err != nil {
		return err
	}
	defer fh.Close()
	return fh.Sync()
}

// last is the latest sample of s in seconds, for the log; -1 when there is none.
func last(s Series) float64 {
	if len(s.Samples) == 0 {
		return -1
	}
	return s.Samples[len(s.Samples)-1].Seconds
}
