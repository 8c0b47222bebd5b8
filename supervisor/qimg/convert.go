package qimg

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cairn-os/cairn/supervisor/filecopy"
	"github.com/cairn-os/cairn/supervisor/hostcmd"
)

// Convert writes the content of src (of format srcFmt) to a new image dst of format
// dstFmt with `qemu-img convert -p`; a backing chain is read through, so dst stands
// alone. progress, when not nil, gets the fraction done (0 to 1, never decreasing, 1
// at the end) as qemu-img reports it, from another goroutine but one call at a time.
// dst is written under a temporary name beside it and appears only when complete; it
// is never overwritten. Cancelling ctx kills qemu-img and removes what it wrote.
func (t Tool) Convert(ctx context.Context, src string, srcFmt Format, dst string, dstFmt Format, progress func(fraction float64)) error {
	src, err := filepath.Abs(src)
	if err != nil {
		return err
	}
	dst, err = filepath.Abs(dst)
	if err != nil {
		return err
	}
	op := fmt.Sprintf("convert %s (%s) to %s (%s)", src, srcFmt, dst, dstFmt)
	if err := srcFmt.check(); err != nil {
		return fmt.Errorf("%s: source: %w", op, err)
	}
	if err := dstFmt.check(); err != nil {
		return fmt.Errorf("%s: destination: %w", op, err)
	}
	if dstFmt == ISO && srcFmt != ISO {
		return fmt.Errorf("%s: %w: converting a disk does not make an ISO; convert it to raw or qcow2", op, ErrInvalid)
	}
	if src == dst {
		return fmt.Errorf("%s: %w: give a destination other than the source", op, ErrInvalid)
	}
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if err := mustNotExist(op, dst); err != nil {
		return err
	}
	tmp, err := filecopy.NewTemp(dst)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	defer tmp.Remove()
	if err := t.stream(ctx, op, progress, "convert", "-p", "-f", srcFmt.QemuName(), "-O", dstFmt.QemuName(), src, tmp.Path); err != nil {
		return err
	}
	// qemu-img convert writes with cache=unsafe (it never flushes): the fsync in
	// Commit is what puts the image on disk before it gets its name.
	return commit(op, tmp)
}

// Flatten makes a child image independent of its backing file: afterwards it has no
// backing file and the same content. It converts the image into a temporary file
// beside it and renames that over the original at the end (keeping its mode and
// owner), so a failed or cancelled Flatten leaves the child as it was. It needs free
// space for the flattened copy. An image without a backing file is left alone.
func (t Tool) Flatten(ctx context.Context, path string, progress func(float64)) error {
	path, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	op := "flatten image " + path
	in, err := t.Info(ctx, path)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if in.BackingFile == "" {
		if progress != nil {
			progress(1)
		}
		return nil
	}
	if !in.Format.Known() {
		return fmt.Errorf("%s: %w: it is a %s image, which Cairn does not handle", op, ErrInvalid, in.Format)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	tmp, err := filecopy.NewTemp(path)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	defer tmp.Remove()
	q := in.Format.QemuName()
	if err := t.stream(ctx, op, progress, "convert", "-p", "-f", q, "-O", q, path, tmp.Path); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Path, fi.Mode().Perm()); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if err := os.Lchown(tmp.Path, int(st.Uid), int(st.Gid)); err != nil && !errors.Is(err, fs.ErrPermission) {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	if err := tmp.CommitReplace(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// stream runs a qemu-img command that prints "(12.34/100%)" progress (with -p) and
// passes the fractions to progress as they arrive. It reads the pipe while qemu-img
// runs, which Runner cannot do, so it starts qemu-img through hostcmd.Start itself.
func (t Tool) stream(ctx context.Context, op string, progress func(float64), args ...string) error {
	if progress == nil {
		progress = func(float64) {}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	cmd := exec.CommandContext(ctx, t.bin(), args...)
	cmd.WaitDelay = 10 * time.Second
	last := -1.0
	cmd.Stdout = &hostcmd.LineWriter{Fn: func(line string) {
		f, ok := parseProgress(line)
		if ok && f > last {
			last = f
			progress(f)
		}
	}}
	var stderr hostcmd.Tail
	cmd.Stderr = &stderr
	p, err := hostcmd.Start(cmd)
	if err != nil {
		return fmt.Errorf("%s: start %s: %w (install qemu-utils)", op, t.bin(), err)
	}
	err = p.Wait()
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", op, ctx.Err())
	}
	if err != nil {
		err = fmt.Errorf("%s %s: %w: %s", t.bin(), strings.Join(args, " "), err, stderr.LastLine())
		return explain(op, err, stderr.String())
	}
	if last < 1 {
		progress(1)
	}
	return nil
}

// parseProgress reads qemu-img's "    (12.34/100%)" into 0.1234.
func parseProgress(line string) (float64, bool) {
	line = strings.TrimSpace(line)
	num, ok := strings.CutPrefix(line, "(")
	if !ok {
		return 0, false
	}
	num, ok = strings.CutSuffix(num, "/100%)")
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 || v > 100 {
		return 0, false
	}
	return v / 100, true
}
