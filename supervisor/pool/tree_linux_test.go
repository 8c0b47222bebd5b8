package pool

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// syncTree on any file system (cloning where it can, copying where not): dst ends
// up as src, kinds of files that changed are replaced, and skipped names stay.
func TestSyncTree(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	old := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

	writeFile(t, filepath.Join(src, "images", "a.qcow2"), "snapshot content")
	os.Chmod(filepath.Join(src, "images", "a.qcow2"), 0o640)
	os.Chtimes(filepath.Join(src, "images", "a.qcow2"), old, old)
	writeFile(t, filepath.Join(src, "was-dir"), "now a file")
	writeFile(t, filepath.Join(src, "was-file", "inner"), "now a folder")
	os.Symlink("images/a.qcow2", filepath.Join(src, "link"))
	os.Mkdir(filepath.Join(src, "empty"), 0o750)
	unix.Mkfifo(filepath.Join(src, "fifo"), 0o600)
	writeFile(t, filepath.Join(src, ".snapshots", "ignored"), "in the snapshot")
	os.Chmod(filepath.Join(src, "images"), 0o711)
	os.Chtimes(filepath.Join(src, "images"), old, old)

	writeFile(t, filepath.Join(dst, "images", "a.qcow2"), "live content, longer than before")
	writeFile(t, filepath.Join(dst, "images", "b.qcow2"), "made after the snapshot")
	writeFile(t, filepath.Join(dst, "was-dir", "x", "y"), "deep")
	writeFile(t, filepath.Join(dst, "was-file"), "a file")
	os.Symlink("elsewhere", filepath.Join(dst, "link"))
	writeFile(t, filepath.Join(dst, ".snapshots", "s1", "keep"), "the pool's snapshots")

	if err := syncTree(context.Background(), src, dst, map[string]bool{".snapshots": true}); err != nil {
		t.Fatalf("syncTree: %v", err)
	}
	if got := readFile(t, filepath.Join(dst, "images", "a.qcow2")); got != "snapshot content" {
		t.Errorf("a.qcow2 = %q", got)
	}
	fi, err := os.Stat(filepath.Join(dst, "images", "a.qcow2"))
	if err != nil || fi.Mode().Perm() != 0o640 || !fi.ModTime().Equal(old) {
		t.Errorf("a.qcow2: %v, %v; want mode 0640 and the snapshot's time", fi, err)
	}
	if fi, err := os.Stat(filepath.Join(dst, "images")); err != nil || fi.Mode().Perm() != 0o711 || !fi.ModTime().Equal(old) {
		t.Errorf("images/: %v, %v; want mode 0711 and the snapshot's time", fi, err)
	}
	if got := readFile(t, filepath.Join(dst, "was-dir")); got != "now a file" {
		t.Errorf("was-dir = %q", got)
	}
	if got := readFile(t, filepath.Join(dst, "was-file", "inner")); got != "now a folder" {
		t.Errorf("was-file/inner = %q", got)
	}
	if target, err := os.Readlink(filepath.Join(dst, "link")); err != nil || target != "images/a.qcow2" {
		t.Errorf("link → %q, %v", target, err)
	}
	if fi, err := os.Stat(filepath.Join(dst, "empty")); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o750 {
		t.Errorf("empty/: %v, %v", fi, err)
	}
	if fi, err := os.Lstat(filepath.Join(dst, "fifo")); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("fifo: %v, %v", fi, err)
	}
	if _, err := os.Stat(filepath.Join(dst, "images", "b.qcow2")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("b.qcow2, which the snapshot lacks, is still there: %v", err)
	}
	if got := readFile(t, filepath.Join(dst, ".snapshots", "s1", "keep")); got != "the pool's snapshots" {
		t.Errorf(".snapshots was touched: %q", got)
	}
	if _, err := os.Stat(filepath.Join(dst, ".snapshots", "ignored")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the snapshot's .snapshots was copied: %v", err)
	}
	entries, _ := os.ReadDir(dst)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".cairn-rollback-") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

// A cancelled rollback stops and says so.
func TestSyncTreeCancelled(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(src, "a"), "x")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := syncTree(ctx, src, dst, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("syncTree with a cancelled context = %v", err)
	}
}
