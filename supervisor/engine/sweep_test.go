package engine

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cairn-os/cairn/internal/testutil"
)

// lockedBuffer is a log destination that background goroutines may write to while
// the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestOpenRemovesTempFolders: after a crash, the hidden folders in which unfinished
// image and backup files were written are gone when the engine opens again (with a
// log line each), while images, backups, an upload in progress and whatever else
// merely shares the prefix stay. A pool that went missing does not stop the engine.
func TestOpenRemovesTempFolders(t *testing.T) {
	testutil.RequireProgram(t, "qemu-img")
	te := openTest(t, "", nil)
	u := te.admin(t)
	ctx := context.Background()
	im, err := te.CreateImage(ctx, u, ImageRequest{Name: "disk", Format: "qcow2", Size: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	up, err := te.CreateImage(ctx, u, ImageRequest{Name: "iso", Format: "raw", Size: 1 << 20, Upload: true})
	if err != nil {
		t.Fatal(err)
	}
	if up, err = te.UploadChunk(ctx, u, up.ID, 0, bytes.NewReader(make([]byte, 4096))); err != nil || up.Upload.Offset != 4096 {
		t.Fatalf("first chunk: %+v %v", up.Upload, err)
	}
	// A second pool whose folder disappears while the engine is down (an unmounted disk).
	gone := filepath.Join(t.TempDir(), "pool")
	if err := os.Mkdir(gone, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := te.CreatePool(ctx, u, PoolRequest{Name: "gone", Driver: "dir", Path: gone}); err != nil {
		t.Fatal(err)
	}

	// What a crash in the middle of a copy and of a backup leaves behind.
	images := filepath.Dir(im.Path)
	pool0 := filepath.Dir(images)
	backups := filepath.Join(pool0, "backups", im.ID)
	stale := []string{
		filepath.Join(images, ".cairn-tmp-xyz"),
		filepath.Join(backups, ".cairn-tmp-abc"),
	}
	for _, dir := range stale {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "i-half.qcow2"), bytes.Repeat([]byte{1}, 1<<20), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	backup := filepath.Join(backups, "b-000000000000.qcow2")
	if err := os.WriteFile(backup, []byte("a backup"), 0o640); err != nil {
		t.Fatal(err)
	}
	// Names with the prefix that are no temporary folder of the engine's: a file, a
	// symlink to someone's folder, and a folder outside the images and backups.
	elsewhere := t.TempDir()
	if err := os.WriteFile(filepath.Join(elsewhere, "keep"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	kept := []string{
		filepath.Join(images, ".cairn-tmp-file"),
		filepath.Join(images, ".cairn-tmp-link"),
		filepath.Join(pool0, ".cairn-tmp-root"),
		filepath.Join(elsewhere, "keep"),
	}
	if err := os.WriteFile(kept[0], []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, kept[1]); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(kept[2], 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(gone); err != nil {
		t.Fatal(err)
	}

	dir, c := te.dir, te.clock
	te.Close()
	var logs lockedBuffer
	te = openTest(t, dir, c, func(cfg *Config) {
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})

	for _, d := range stale {
		if _, err := os.Lstat(d); !os.IsNotExist(err) {
			t.Errorf("stale %s is still there after the engine opened (%v)", d, err)
		}
		if !strings.Contains(logs.String(), "path="+d+" bytes=") {
			t.Errorf("no log line for removing %s in:\n%s", d, logs.String())
		}
	}
	for _, path := range append(kept, im.Path, uploadPath(up), backup) {
		if _, err := os.Lstat(path); err != nil {
			t.Errorf("%s is gone after the engine opened: %v", path, err)
		}
	}
	if got, err := te.Image(ctx, u, im.ID); err != nil || got.State != ImageReady {
		t.Errorf("image after reopen: %+v %v", got, err)
	}
	if got, err := te.UploadStatus(ctx, u, up.ID); err != nil || got.Upload.Offset != 4096 {
		t.Errorf("upload after reopen: %+v %v; want it at byte 4096", got.Upload, err)
	}
	if p, err := te.Pool(ctx, u, "1"); err != nil || p.State != PoolUnavailable {
		t.Errorf("missing pool after reopen: %+v %v; want it unavailable", p, err)
	}
}
