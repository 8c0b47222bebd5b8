package pool

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// btrfsEmptySubvolIno is the inode of the empty folder that stands for a nested
// subvolume inside a snapshot (BTRFS_EMPTY_SUBVOL_DIR_OBJECTID).
const btrfsEmptySubvolIno = 2

// syncTree makes the tree at dst the same as the tree at src, in place: what src lacks
// is deleted from dst, and every file of src is cloned into dst (FICLONE, a reflink:
// only metadata is written), or copied where the file system cannot clone. Each file
// is cloned to a temporary name and renamed over the old one, so a file is always
// either the old or the new one. dst itself, and the mount it is on, stay: this is how
// a pool is rolled back while it is mounted and exported over NFS.
//
// Top-level names in skip (".snapshots") are left alone on both sides, and so are
// folders below dst on another device (nested subvolumes, mounts). Mode, owner and
// times are copied; hard links, extended attributes and sockets are not (a pool holds
// images, not system trees). Coreutils' `cp --reflink` is not used because the admin
// image has no coreutils.
func syncTree(ctx context.Context, src, dst string, skip map[string]bool) error {
	var srcRoot, dstRoot unix.Stat_t
	if err := unix.Lstat(src, &srcRoot); err != nil {
		return fmt.Errorf("read %s: %w", src, err)
	}
	if err := unix.Lstat(dst, &dstRoot); err != nil {
		return fmt.Errorf("read %s: %w", dst, err)
	}
	magic, err := fsMagic(src)
	if err != nil {
		return fmt.Errorf("read %s: %w", src, err)
	}
	t := treeSync{ctx: ctx, skip: skip, srcDev: srcRoot.Dev, dstDev: dstRoot.Dev, srcBtrfs: magic == unix.BTRFS_SUPER_MAGIC}
	if err := t.prune(src, dst, true); err != nil {
		return err
	}
	if err := t.copyDir(src, dst, true); err != nil {
		return err
	}
	return copyMeta(&srcRoot, dst)
}

type treeSync struct {
	ctx            context.Context
	skip           map[string]bool
	srcDev, dstDev uint64
	srcBtrfs       bool
}

// leaveSrc reports whether a folder in src is a stand-in for a nested subvolume or
// on another file system.
func (t *treeSync) leaveSrc(st *unix.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFDIR && (st.Dev != t.srcDev || (t.srcBtrfs && st.Ino == btrfsEmptySubvolIno))
}

// prune deletes from dst what src lacks or has as another kind of file.
func (t *treeSync) prune(src, dst string, top bool) error {
	entries, err := os.ReadDir(dst)
	if err != nil {
		return fmt.Errorf("read %s: %w", dst, err)
	}
	for _, e := range entries {
		if err := t.ctx.Err(); err != nil {
			return err
		}
		if top && t.skip[e.Name()] {
			continue
		}
		s, d := filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())
		var dt unix.Stat_t
		if err := unix.Lstat(d, &dt); err != nil {
			return fmt.Errorf("read %s: %w", d, err)
		}
		if dt.Dev != t.dstDev {
			continue // a nested subvolume or a mount: not part of any snapshot
		}
		var st unix.Stat_t
		err := unix.Lstat(s, &st)
		switch {
		case errors.Is(err, unix.ENOENT):
		case err != nil:
			return fmt.Errorf("read %s: %w", s, err)
		case st.Mode&unix.S_IFMT == dt.Mode&unix.S_IFMT && !t.leaveSrc(&st):
			if dt.Mode&unix.S_IFMT == unix.S_IFDIR {
				if err := t.prune(s, d, false); err != nil {
					return err
				}
			}
			continue
		}
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("remove %s: %w", d, err)
		}
	}
	return nil
}

// copyDir clones the entries of src into dst, which exists.
func (t *treeSync) copyDir(src, dst string, top bool) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return fmt.Errorf("read %s: %w", src, err)
	}
	for _, e := range entries {
		if err := t.ctx.Err(); err != nil {
			return err
		}
		if top && t.skip[e.Name()] {
			continue
		}
		s, d := filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())
		var st unix.Stat_t
		if err := unix.Lstat(s, &st); err != nil {
			return fmt.Errorf("read %s: %w", s, err)
		}
		if t.leaveSrc(&st) {
			continue
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			var dt unix.Stat_t
			if err := unix.Lstat(d, &dt); err == nil && dt.Dev != t.dstDev {
				continue // a nested subvolume or mount in dst, left alone by prune too
			}
			if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
				return fmt.Errorf("make %s: %w", d, err)
			}
			if err := t.copyDir(s, d, false); err != nil {
				return err
			}
			// After the entries: adding them changed the folder's times.
			if err := copyMeta(&st, d); err != nil {
				return err
			}
		case unix.S_IFREG:
			if err := cloneFile(s, d, &st); err != nil {
				return err
			}
		case unix.S_IFLNK:
			target, err := os.Readlink(s)
			if err != nil {
				return fmt.Errorf("read %s: %w", s, err)
			}
			if err := replaceWith(d, &st, func(tmp string) error { return os.Symlink(target, tmp) }); err != nil {
				return err
			}
		case unix.S_IFIFO, unix.S_IFCHR, unix.S_IFBLK:
			if err := replaceWith(d, &st, func(tmp string) error { return unix.Mknod(tmp, st.Mode, int(st.Rdev)) }); err != nil {
				return err
			}
		}
	}
	return nil
}

// tmpName returns a hidden name beside path for a file being made.
func tmpName(path string) string {
	var b [6]byte
	rand.Read(b[:])
	return filepath.Join(filepath.Dir(path), ".cairn-rollback-"+hex.EncodeToString(b[:]))
}

// replaceWith makes a new file with make at a temporary name, gives it st's owner,
// mode and times, and renames it over path.
func replaceWith(path string, st *unix.Stat_t, make func(tmp string) error) error {
	tmp := tmpName(path)
	if err := make(tmp); err != nil {
		return fmt.Errorf("make %s: %w", path, err)
	}
	if err := copyMeta(st, tmp); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("replace %s: %w", path, err)
	}
	return nil
}

// cloneFile replaces dst with a clone of the regular file src.
func cloneFile(src, dst string, st *unix.Stat_t) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("read %s: %w", src, err)
	}
	defer in.Close()
	return replaceWith(dst, st, func(tmp string) error {
		out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		err = unix.IoctlFileClone(int(out.Fd()), int(in.Fd()))
		if err != nil {
			// No reflinks here (another file system, ZFS without block cloning):
			// copy. io.Copy uses copy_file_range, which still shares blocks where
			// the file system can.
			if _, err = in.Seek(0, io.SeekStart); err == nil {
				_, err = io.Copy(out, in)
			}
		}
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(tmp)
		}
		return err
	})
}

// copyMeta gives path st's owner, mode and times, without following a symlink.
func copyMeta(st *unix.Stat_t, path string) error {
	// Owner first: chown clears the set-user-ID and set-group-ID bits.
	if err := unix.Lchown(path, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("set owner of %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		if err := unix.Chmod(path, st.Mode&0o7777); err != nil {
			return fmt.Errorf("set mode of %s: %w", path, err)
		}
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times of %s: %w", path, err)
	}
	return nil
}
