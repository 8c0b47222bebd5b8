// Package initramfs writes Cairn's two initramfs images with u-root's mkuimage: the
// compute node's (the supervisor as /init, the compute package tree with qemu,
// libvirtd and mount.nfs, the compute kernel modules) and the admin's small stage-1
// image (the supervisor as /init and the modules that find the boot medium). Both are
// zstd-compressed newc cpio archives; the package trees come from package image.
package initramfs

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/cairn-os/cairn/image"
	"github.com/klauspost/compress/zstd"
	"github.com/u-root/mkuimage/cpio"
	"github.com/u-root/mkuimage/uimage"
	uinitramfs "github.com/u-root/mkuimage/uimage/initramfs"
	"github.com/u-root/uio/llog"
)

// CompressedExt is the initramfs files' extension. Debian's kernel unpacks gzip, xz
// and zstd (CONFIG_RD_ZSTD=y); zstd unpacks several times faster than gzip, which
// shows under TCG.
const CompressedExt = ".cpio.zst"

// baseRecords are what the kernel needs before /init runs: /dev/console for init's
// standard streams (devtmpfs is mounted later, by the supervisor).
func baseRecords() []cpio.Record {
	return []cpio.Record{
		cpio.Directory("dev", 0o755),
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.CharDev("dev/null", 0o666, 1, 3),
		cpio.Directory("proc", 0o755),
		cpio.Directory("sys", 0o755),
		cpio.Directory("run", 0o755),
		cpio.Directory("tmp", 0o1777),
	}
}

// compression is how an archive is compressed.
type compression int

const (
	// fastZstd is the Go encoder at its best level: a few seconds for the parts that
	// change with every build.
	fastZstd compression = iota
	// smallZstd is the zstd program at level 19: minutes, for parts that are cached.
	smallZstd
)

// writeArchive packs the tree dir into a zstd-compressed newc cpio at out with u-root's
// uimage: every file of dir at the same path, no ldd (the tree has its libraries),
// sorted, with times and owners cleared so that the same tree gives the same bytes.
func writeArchive(ctx context.Context, b *image.Builder, dir, out string, c compression) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("initramfs %s: %w", out, err)
	}
	var files []string
	for _, e := range ents {
		files = append(files, filepath.Join(dir, e.Name())+":"+e.Name())
	}
	base, err := cpio.ArchiveFromRecords(baseRecords())
	if err != nil {
		return fmt.Errorf("initramfs %s: %w", out, err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(out), ".uimage-")
	if err != nil {
		return fmt.Errorf("initramfs %s: %w", out, err)
	}
	defer os.RemoveAll(tmp)
	l := llog.New(slog.LevelWarn, func(format string, v ...any) {
		b.Logger.Warn("uimage", "msg", strings.TrimSpace(fmt.Sprintf(format, v...)))
	})
	part := out + ".part"
	var output uinitramfs.WriteOpener = &zstdCPIO{path: part}
	raw := filepath.Join(tmp, "archive.cpio")
	if c == smallZstd {
		output = &uinitramfs.CPIOFile{Path: raw}
	}
	err = uimage.Create(l,
		uimage.WithTempDir(tmp),
		uimage.WithBaseArchive(base),
		uimage.WithFiles(files...),
		uimage.WithSkipLDD(),
		uimage.WithOutput(output),
	)
	if err != nil {
		os.Remove(part)
		return fmt.Errorf("initramfs %s: %w", out, err)
	}
	if c == smallZstd {
		// Level 19's window (8 MiB) is within what the kernel's unzstd unpacks;
		// --ultra levels and --long are not.
		if _, err := b.Runner.Run(ctx, "zstd", "-q", "-19", "-T0", "-f", raw, "-o", part); err != nil {
			os.Remove(part)
			return fmt.Errorf("initramfs %s: %w", out, err)
		}
	}
	if err := os.Rename(part, out); err != nil {
		return fmt.Errorf("initramfs %s: %w", out, err)
	}
	return nil
}

// zstdCPIO is a uimage output: a newc cpio archive compressed with zstd.
type zstdCPIO struct{ path string }

var _ uinitramfs.WriteOpener = (*zstdCPIO)(nil)

// OpenWriter creates the file.
func (z *zstdCPIO) OpenWriter() (uinitramfs.Writer, error) {
	f, err := os.Create(z.path)
	if err != nil {
		return nil, err
	}
	// An 8 MiB window is what `zstd -19` uses and well within what the kernel's
	// unzstd handles; the level is the library's best, since unpacking speed is the
	// same at every level.
	enc, err := zstd.NewWriter(f, zstd.WithEncoderLevel(zstd.SpeedBestCompression),
		zstd.WithWindowSize(8<<20), zstd.WithEncoderCRC(true))
	if err != nil {
		f.Close()
		return nil, err
	}
	buf := bufio.NewWriterSize(enc, 1<<20)
	return &zstdWriter{RecordWriter: cpio.Newc.Writer(buf), buf: buf, enc: enc, f: f}, nil
}

type zstdWriter struct {
	cpio.RecordWriter
	buf *bufio.Writer
	enc *zstd.Encoder
	f   *os.File
}

// Finish writes the trailer and closes the compressor and the file.
func (w *zstdWriter) Finish() error {
	if err := cpio.WriteTrailer(w); err != nil {
		w.f.Close()
		return err
	}
	if err := w.buf.Flush(); err != nil {
		w.f.Close()
		return err
	}
	if err := w.enc.Close(); err != nil {
		w.f.Close()
		return err
	}
	return w.f.Close()
}
