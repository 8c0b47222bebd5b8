package engine

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/cairn-os/cairn/supervisor/filecopy"
	"github.com/cairn-os/cairn/supervisor/store"
)

// Removal of the temporary folders that a power cut or a crash left behind.
//
// Packages filecopy and qimg write a file into a hidden folder beside its destination
// (filecopy.TempPrefix) and rename it into place when it is complete. Work that dies
// on the way leaves that folder, which holds disk space until someone removes it.
// The engine is the only writer of such folders in the places below:
//
//   - <pool>/images: new, converted, cloned, copied and restored images, and images
//     rewritten in place (flatten, in-place restore);
//   - <pool>/backups/<image-id>: backups, in whichever pool was the backup pool then.
//
// Uploads in progress are not temporary folders (<pool>/images/.<id>.upload is a
// file, resumed after a restart) and stay.

// sweepTemp removes the temporary folders in the images and backup folders of every
// ready pool. It must run in Open after failInterrupted and before Open returns: at
// that point no operation or request of this engine runs, so every such folder is
// left over, whereas later one may belong to a copy under way. A pool that is not
// available is skipped (its leftovers go at the first start that finds it ready).
// Errors are logged and the sweep goes on: leftovers cost space, not correctness.
func (e *Engine) sweepTemp() {
	pools, err := store.List[Pool](e.store, bucketPools)
	if err != nil {
		e.log.Warn("sweep temporary folders failed", "err", err)
		return
	}
	for _, p := range pools {
		if p.State != PoolReady {
			continue
		}
		if _, err := e.openedPool(p.ID); err != nil {
			continue
		}
		e.sweepTempIn(filepath.Join(p.Path, "images"))
		// Every pool, not only the current backup pool: the setting may have
		// changed since the backup that was cut off.
		backups := filepath.Join(p.Path, "backups")
		entries, err := os.ReadDir(backups)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				e.log.Warn("sweep temporary folders failed", "path", backups, "err", err)
			}
			continue
		}
		for _, d := range entries {
			// ReadDir's type is the entry's own (Lstat): a symlink is not followed.
			if d.IsDir() {
				e.sweepTempIn(filepath.Join(backups, d.Name()))
			}
		}
	}
}

// sweepTempIn removes the temporary folders directly in dir; it does not descend into
// anything else. Files and symlinks with the prefix are left alone: NewTemp only
// makes folders.
func (e *Engine) sweepTempIn(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			e.log.Warn("sweep temporary folders failed", "path", dir, "err", err)
		}
		return
	}
	for _, d := range entries {
		if !filecopy.IsTemp(d.Name()) {
			continue
		}
		path := filepath.Join(dir, d.Name())
		fi, err := os.Lstat(path)
		if err != nil {
			e.log.Warn("remove temporary folder failed", "path", path, "err", err)
			continue
		}
		if !fi.IsDir() {
			continue
		}
		n := treeBytes(path)
		// RemoveAll does not follow symlinks inside the folder either.
		if err := os.RemoveAll(path); err != nil {
			e.log.Warn("remove temporary folder failed", "path", path, "err", err)
			continue
		}
		e.log.Info("temporary folder left by a crash removed", "path", path, "bytes", n)
	}
}

// treeBytes is what the files under dir take on disk (allocated blocks, so a sparse
// image counts what it holds), without following symlinks.
func treeBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			n += st.Blocks * 512
		} else {
			n += fi.Size()
		}
		return nil
	})
	return n
}
