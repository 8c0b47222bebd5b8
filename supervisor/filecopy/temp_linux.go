package filecopy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// TempPrefix begins the name of the hidden folders in which Copy (and package qimg)
// write an unfinished file beside its destination. A folder with this prefix left
// behind by a power cut holds nothing of value and can be removed; listings of a pool
// should skip such names (see IsTemp).
const TempPrefix = ".cairn-tmp-"

// IsTemp reports whether name (a base name) is an unfinished file's temporary folder.
func IsTemp(name string) bool { return strings.HasPrefix(name, TempPrefix) }

// Temp is a file being written beside its destination: Path is where to write it, in
// a hidden folder of its own in dst's folder (so on the same filesystem, and with the
// same base name as dst, which matters for formats that record their own name, such
// as a VMDK's descriptor). Commit moves it into place; Remove discards it.
type Temp struct {
	// Path is the file to write; it does not exist yet.
	Path string
	dir  string
	dst  string
}

// NewTemp makes the temporary folder for dst. It does not look at whether dst exists:
// Commit is what refuses to overwrite it.
func NewTemp(dst string) (*Temp, error) {
	dst, err := filepath.Abs(dst)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(filepath.Dir(dst), TempPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("make a temporary folder beside %s: %w", dst, err)
	}
	return &Temp{Path: filepath.Join(dir, filepath.Base(dst)), dir: dir, dst: dst}, nil
}

// Remove deletes the temporary folder and whatever is in it. It is safe to call after
// Commit (it then does nothing).
func (t *Temp) Remove() {
	if t.dir != "" {
		os.RemoveAll(t.dir)
	}
}

// Commit flushes the file to stable storage and moves it to its destination, failing
// with ErrExists when the destination exists (also when it appeared meanwhile).
func (t *Temp) Commit() error { return t.commit(false) }

// CommitReplace is Commit for rewriting a file in place: it replaces the destination
// atomically (a reader sees the old file or the new one, never a part).
func (t *Temp) CommitReplace() error { return t.commit(true) }

func (t *Temp) commit(replace bool) error {
	if err := syncPath(t.Path); err != nil {
		return fmt.Errorf("flush %s: %w", t.Path, err)
	}
	var err error
	if replace {
		err = os.Rename(t.Path, t.dst)
	} else {
		err = RenameNoReplace(t.Path, t.dst)
	}
	if err != nil {
		return err
	}
	// The rename must reach the disk too, or a power cut could bring back the old
	// directory entry (or none) after the caller was told the file is there.
	if err := syncPath(filepath.Dir(t.dst)); err != nil {
		return fmt.Errorf("flush folder of %s: %w", t.dst, err)
	}
	t.Remove()
	t.dir = ""
	return nil
}

func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// RenameNoReplace renames oldpath to newpath unless newpath exists, in which case it
// fails with an error that wraps ErrExists. It is atomic on filesystems that know
// renameat2(RENAME_NOREPLACE) (ext4, XFS, btrfs, tmpfs) and falls back to link +
// unlink, which is atomic too, where they do not (NFS).
func RenameNoReplace(oldpath, newpath string) error {
	err := unix.Renameat2(unix.AT_FDCWD, oldpath, unix.AT_FDCWD, newpath, unix.RENAME_NOREPLACE)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EEXIST):
		return existsError(newpath)
	case !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EOPNOTSUPP):
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
	err = os.Link(oldpath, newpath)
	switch {
	case err == nil:
		return os.Remove(oldpath)
	case errors.Is(err, fs.ErrExist):
		return existsError(newpath)
	}
	// No hard links either (vfat, some FUSE filesystems): check, then rename. Only here
	// is there a window in which a file made meanwhile would be replaced.
	if _, err := os.Lstat(newpath); err == nil {
		return existsError(newpath)
	}
	return os.Rename(oldpath, newpath)
}

func existsError(path string) error {
	return fmt.Errorf("%s: %w; choose another name or delete it first", path, ErrExists)
}
