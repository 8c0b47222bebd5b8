package initramfs

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairn-os/cairn/image"
	"github.com/cairn-os/cairn/internal/testutil"
	"github.com/klauspost/compress/zstd"
	"github.com/u-root/mkuimage/cpio"
)

func readArchive(t *testing.T, path string) map[string]cpio.Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec, err := zstd.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(dec)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]cpio.Record{}
	for _, r := range recs {
		out[r.Name] = r
	}
	return out
}

func content(t *testing.T, r cpio.Record) string {
	t.Helper()
	if r.ReaderAt == nil {
		return ""
	}
	b, err := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestWriteArchive packs a staged tree (linked from a "cached" tree that holds one
// file under two names) and reads the archive back as the kernel would.
func TestWriteArchive(t *testing.T) {
	for _, c := range []compression{fastZstd, smallZstd} {
		if c == smallZstd {
			testutil.RequireProgram(t, "zstd")
		}
		cache := t.TempDir()
		os.MkdirAll(filepath.Join(cache, "usr/bin"), 0o755)
		os.WriteFile(filepath.Join(cache, "usr/bin/qemu-img"), []byte("elf"), 0o755)
		os.Link(filepath.Join(cache, "usr/bin/qemu-img"), filepath.Join(cache, "usr/bin/qemu-img2"))
		os.Symlink("usr/bin", filepath.Join(cache, "bin"))
		stage := filepath.Join(t.TempDir(), "stage")
		if err := image.LinkTree(cache, stage); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(stage, "init"), []byte("supervisor"), 0o755)
		b := &image.Builder{Runner: &image.Runner{}, Logger: slog.New(slog.DiscardHandler)}
		out := filepath.Join(t.TempDir(), "initramfs"+CompressedExt)
		if err := writeArchive(context.Background(), b, stage, out, c); err != nil {
			t.Fatal(err)
		}
		recs := readArchive(t, out)
		for name, want := range map[string]string{"init": "supervisor", "usr/bin/qemu-img": "elf", "usr/bin/qemu-img2": "elf", "bin": "usr/bin"} {
			r, ok := recs[name]
			if !ok {
				t.Errorf("compression %d: archive lacks %s", c, name)
				continue
			}
			if got := content(t, r); got != want {
				t.Errorf("compression %d: %s holds %q, want %q", c, name, got, want)
			}
			if r.MTime != 0 || r.UID != 0 {
				t.Errorf("compression %d: %s has mtime %d uid %d; want 0 (reproducible)", c, name, r.MTime, r.UID)
			}
		}
		if r := recs["dev/console"]; r.Mode&cpio.S_IFMT != cpio.S_IFCHR || r.Rmajor != 5 || r.Rminor != 1 {
			t.Errorf("compression %d: dev/console = %+v, want char device 5:1", c, r.Info)
		}
		if r := recs["init"]; r.Mode&0o111 == 0 {
			t.Errorf("compression %d: init is not executable: %o", c, r.Mode)
		}
	}
}
