package filecopy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

const (
	// chunk is how much is read, checked and written at a time: big enough that the
	// system calls cost nothing beside the data, small enough that a cancel is seen
	// within a few milliseconds.
	chunk = 1 << 20
	// zeroBlock is the smallest run of zeros left as a hole in the copy. Filesystems
	// allocate in 4 KiB blocks; 64 KiB keeps a copy about as sparse as its source
	// (qcow2 clusters and raw images written by guests are zeroed in bigger runs) without
	// splitting writes into many small ones.
	zeroBlock = 64 << 10
)

var zeros = make([]byte, zeroBlock)

// sparseCopy copies the first total bytes of src into dst, a new file. It reads only
// the source's data — it asks the filesystem where data is (SEEK_DATA, SEEK_HOLE) and
// skips the holes, so a thin 100 GiB image with 2 GiB written costs 2 GiB of reads —
// and it leaves every all-zero zeroBlock of that data as a hole too, so the copy is no
// bigger on disk than the source, usually smaller. progress is told the offset reached
// after each chunk (holes count as done). Cancelling ctx stops it within a chunk.
func sparseCopy(ctx context.Context, src, dst string, total int64, progress func(done, total int64)) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()

	buf := make([]byte, chunk)
	for off := int64(0); off < total; {
		start, end, err := nextData(in, off, total)
		if err != nil {
			return fmt.Errorf("find data in %s: %w", src, err)
		}
		for off = start; off < end; {
			if err := ctx.Err(); err != nil {
				return err
			}
			n := int(min(int64(len(buf)), end-off))
			if _, err := in.ReadAt(buf[:n], off); err != nil {
				if errors.Is(err, io.EOF) {
					// The file shrank while we copied (an image in use): the rest is
					// zeros as far as this copy goes.
					end = off
					break
				}
				return fmt.Errorf("read %s: %w", src, err)
			}
			if err := writeNonZero(out, buf[:n], off); err != nil {
				return fmt.Errorf("write %s: %w", dst, err)
			}
			off += int64(n)
			progress(off, total)
		}
		off = end
		progress(off, total)
	}
	// The size, with any hole at the end.
	if err := out.Truncate(total); err != nil {
		return fmt.Errorf("set the size of %s: %w", dst, err)
	}
	return out.Close()
}

// nextData returns the next range [start, end) of f at or after off that may hold
// data, cut at limit; start == end == limit when there is none. Filesystems that do
// not track holes report the whole file as data.
func nextData(f *os.File, off, limit int64) (start, end int64, err error) {
	fd := int(f.Fd())
	start, err = unix.Seek(fd, off, unix.SEEK_DATA)
	if errors.Is(err, unix.ENXIO) {
		// Only a hole from off to the end of the file.
		return limit, limit, nil
	}
	if err != nil {
		return 0, 0, err
	}
	if start >= limit {
		return limit, limit, nil
	}
	end, err = unix.Seek(fd, start, unix.SEEK_HOLE)
	if errors.Is(err, unix.ENXIO) {
		// The file was cut shorter than start meanwhile.
		return limit, limit, nil
	}
	if err != nil {
		return 0, 0, err
	}
	return start, min(end, limit), nil
}

// writeNonZero writes b at off in f, skipping each zeroBlock-aligned run of zeros so
// that it stays a hole, and writing the other runs each in one call.
func writeNonZero(f *os.File, b []byte, off int64) error {
	run := -1 // start of the data run being gathered, or -1
	flush := func(to int) error {
		if run < 0 {
			return nil
		}
		_, err := f.WriteAt(b[run:to], off+int64(run))
		run = -1
		return err
	}
	for i := 0; i < len(b); i += zeroBlock {
		j := min(i+zeroBlock, len(b))
		if bytes.Equal(b[i:j], zeros[:j-i]) {
			if err := flush(i); err != nil {
				return err
			}
			continue
		}
		if run < 0 {
			run = i
		}
	}
	return flush(len(b))
}
