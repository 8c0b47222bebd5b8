// Package filecopy copies big files — VM disk images — for backups, restores and full
// copies. Where source and destination share a filesystem that can share extents
// (btrfs, XFS with reflink) the copy is a clone made with the FICLONE ioctl: instant,
// and it takes no space until one side changes. Elsewhere the data is copied, with
// progress: only the source's data is read (its holes are skipped, not read as zeros)
// and runs of zeros are left as holes, so a thin image stays thin and costs what is
// written in it, not its size.
//
// Either way the file is written in a hidden folder beside the destination (see
// TempPrefix), flushed to disk, given the source's mode and owner, and only then
// renamed into place: a reader never sees half a file, an existing file is never
// overwritten, and a failed or cancelled copy leaves nothing behind.
package filecopy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Method is how a file was copied.
type Method string

const (
	// Reflink is a clone that shares the source's extents (FICLONE): no data moved.
	Reflink Method = "reflink"
	// DataCopy is a copy of the data, holes kept (see sparseCopy).
	DataCopy Method = "copy"
)

// ErrExists means the destination already exists. Copy never overwrites a file.
var ErrExists = errors.New("already exists")

// Copy copies the regular file src to dst, which must not exist, and returns how. It
// clones when the filesystem allows and copies the data otherwise. progress, when not
// nil, is called with the bytes done so far and the source's size, one call at a time;
// it ends with done == total on success. Cancelling ctx stops the copy and removes
// what was written.
func Copy(ctx context.Context, src, dst string, progress func(done, total int64)) (Method, error) {
	return copyFile(ctx, src, dst, progress, false)
}

// CopyReplace is Copy onto an existing file (restoring an image in place): the copy
// is made beside dst as Copy makes it and then replaces dst atomically, so a reader
// sees the old file or the new one, and a failed or cancelled copy leaves dst as it
// was. dst need not exist.
func CopyReplace(ctx context.Context, src, dst string, progress func(done, total int64)) (Method, error) {
	return copyFile(ctx, src, dst, progress, true)
}

func copyFile(ctx context.Context, src, dst string, progress func(done, total int64), replace bool) (Method, error) {
	report := progress
	var last int64 = -1
	progress = func(done, total int64) {
		// Never backwards and never twice the same: the copy's last call and our own
		// final one both say done == total.
		if report != nil && done > last {
			last = done
			report(done, total)
		}
	}
	op := fmt.Sprintf("copy %s to %s", src, dst)
	fail := func(err error) (Method, error) { return "", fmt.Errorf("%s: %w", op, err) }

	src, err := filepath.Abs(src)
	if err != nil {
		return fail(err)
	}
	// A clone needs the real file, and errors should name it.
	if src, err = filepath.EvalSymlinks(src); err != nil {
		return fail(err)
	}
	dst, err = filepath.Abs(dst)
	if err != nil {
		return fail(err)
	}
	si, err := os.Stat(src)
	if err != nil {
		return fail(err)
	}
	if !si.Mode().IsRegular() {
		return fail(fmt.Errorf("%s is not a regular file (%s); only image files can be copied", src, si.Mode().Type()))
	}
	if fi, err := os.Lstat(dst); err == nil {
		if !replace {
			return fail(existsError(dst))
		}
		if !fi.Mode().IsRegular() {
			return fail(fmt.Errorf("%s is not a regular file (%s); only a file is replaced", dst, fi.Mode().Type()))
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fail(err)
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}

	tmp, err := NewTemp(dst)
	if err != nil {
		return fail(err)
	}
	defer tmp.Remove()

	method := Reflink
	if err := clone(src, tmp.Path); err != nil {
		// Not the same filesystem, or one without shared extents: copy the data.
		os.Remove(tmp.Path)
		method = DataCopy
		if err := sparseCopy(ctx, src, tmp.Path, si.Size(), progress); err != nil {
			return fail(err)
		}
	}
	if err := keepMode(tmp.Path, si); err != nil {
		return fail(err)
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	commit := tmp.Commit
	if replace {
		commit = tmp.CommitReplace
	}
	if err := commit(); err != nil {
		return fail(err)
	}
	progress(si.Size(), si.Size())
	return method, nil
}

// keepMode gives path the mode of the source, and its owner when we may (as root).
func keepMode(path string, si fs.FileInfo) error {
	if err := os.Chmod(path, si.Mode().Perm()); err != nil {
		return err
	}
	if st, ok := si.Sys().(*syscall.Stat_t); ok {
		err := os.Lchown(path, int(st.Uid), int(st.Gid))
		if err != nil && !errors.Is(err, fs.ErrPermission) {
			return err
		}
	}
	return nil
}
