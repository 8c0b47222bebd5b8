package engine

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/cairn-os/cairn/supervisor/qimg"
	"github.com/cairn-os/cairn/supervisor/store"
)

// Uploads (resumable, in chunks at an offset) and downloads of image files.

func uploadPath(im Image) string {
	return filepath.Join(filepath.Dir(im.Path), "."+im.ID+".upload")
}

// UploadStatus says how far an upload is, so a client can resume from there. A chunk
// still being received (the client may have given up on it already) is waited for,
// so the offset is where the next chunk must start.
func (e *Engine) UploadStatus(ctx context.Context, u User, id string) (Image, error) {
	im, err := e.Image(ctx, u, id)
	if err != nil {
		return Image{}, err
	}
	e.uploadsMu.Lock()
	busy := e.uploading[im.ID]
	e.uploadsMu.Unlock()
	if busy != nil {
		select {
		case <-busy:
		case <-ctx.Done():
			return Image{}, ctx.Err()
		case <-time.After(30 * time.Second):
		}
		if im, err = e.Image(ctx, u, id); err != nil {
			return Image{}, err
		}
	}
	if im.State != ImageUploading {
		return Image{}, fmt.Errorf("%s: %w: the image is %s, not being uploaded", imageOp("upload to", id), ErrInvalid, im.State)
	}
	if fi, err := os.Stat(uploadPath(im)); err == nil {
		im.Upload.Offset = fi.Size()
	}
	return im, nil
}

// UploadChunk writes body at offset into an upload. offset must be where the upload
// stands (the client asks UploadStatus after an interruption and resumes from there).
// When the last byte is in, the file is checked with qemu-img: its format must be
// the one declared, and an image with a backing file or encryption is refused.
func (e *Engine) UploadChunk(ctx context.Context, u User, id string, offset int64, body io.Reader) (Image, error) {
	op := imageOp("upload to", id)
	if err := requireWriter(u, op); err != nil {
		return Image{}, err
	}
	cur, err := e.Image(ctx, u, id)
	if err != nil {
		return Image{}, err
	}
	id = cur.ID
	// One writer per upload at a time: two clients appending at once would interleave.
	e.uploadsMu.Lock()
	if e.uploading[id] != nil {
		e.uploadsMu.Unlock()
		return Image{}, fmt.Errorf("%s: %w: another upload to it is under way; ask where it stands (GET) and resume from there", op, ErrInUse)
	}
	done := make(chan struct{})
	e.uploading[id] = done
	e.uploadsMu.Unlock()
	defer func() {
		e.uploadsMu.Lock()
		delete(e.uploading, id)
		e.uploadsMu.Unlock()
		close(done)
	}()
	im := cur
	if im.State != ImageUploading {
		return Image{}, fmt.Errorf("%s: %w: the image is %s, not being uploaded", op, ErrInvalid, im.State)
	}
	if im.Owner != u.ID && u.Role != RoleAdmin {
		return Image{}, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	tmp := uploadPath(im)
	f, err := os.OpenFile(tmp, os.O_WRONLY, 0)
	if err != nil {
		return Image{}, fmt.Errorf("%s: %w", op, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Image{}, fmt.Errorf("%s: %w", op, err)
	}
	// The file's size is the truth: a chunk cut off by a dropped connection leaves
	// what arrived, and the client resumes from there.
	have := fi.Size()
	if offset != have {
		return Image{}, fmt.Errorf("%s: %w: the upload is at byte %d, not %d; resume from %d", op, ErrConflictOffset, have, offset, have)
	}
	remaining := im.Upload.Size - have
	n, copyErr := io.Copy(&writerAt{f, have}, io.LimitReader(body, remaining+1))
	if n > remaining {
		f.Truncate(im.Upload.Size)
		return Image{}, fmt.Errorf("%s: %w: the file is larger than the %d bytes announced", op, ErrInvalid, im.Upload.Size)
	}
	have += n
	if err := f.Sync(); err != nil {
		return Image{}, fmt.Errorf("%s: %w", op, err)
	}
	e.store.Update(func(tx *store.Tx) error {
		var cur Image
		if err := tx.Get(bucketImages, id, &cur); err != nil || cur.Upload == nil {
			return err
		}
		cur.Upload.Offset = have
		return tx.Put(bucketImages, id, cur)
	})
	im.Upload.Offset = have
	if copyErr != nil {
		// The client is probably gone; if not, 409 tells it where to resume.
		return im, fmt.Errorf("%s: %w: the chunk was cut off (%v); the upload is at byte %d, resume from there", op, ErrConflictOffset, copyErr, have)
	}
	if have < im.Upload.Size {
		return im, nil
	}
	f.Close()
	return e.finishUpload(ctx, im, tmp)
}

// ErrConflictOffset is an upload chunk sent for the wrong offset (HTTP 409).
var ErrConflictOffset = fmt.Errorf("%w: wrong upload offset", ErrExists)

type writerAt struct {
	f   *os.File
	off int64
}

func (w *writerAt) Write(p []byte) (int, error) {
	n, err := w.f.WriteAt(p, w.off)
	w.off += int64(n)
	return n, err
}

func (e *Engine) finishUpload(ctx context.Context, im Image, tmp string) (Image, error) {
	op := imageOp("finish upload of", im.ID)
	info, err := e.tool().Info(ctx, tmp)
	if err == nil {
		err = qimg.CheckUpload(info, qimg.Format(im.Format))
	}
	if err != nil {
		// The bytes are all there but unusable: drop the upload so nothing half-made stays.
		os.Remove(tmp)
		e.store.Delete(bucketImages, im.ID)
		return Image{}, fmt.Errorf("%s: %w: %v; the upload was discarded", op, ErrInvalid, err)
	}
	if err := os.Rename(tmp, im.Path); err != nil {
		return Image{}, fmt.Errorf("%s: %w", op, err)
	}
	im.Format = string(info.Format)
	e.log.Info("upload finished", "image", im.ID, "format", im.Format, "size", im.Upload.Size)
	return e.finishImage(ctx, im)
}

// ImageFile opens an image's file for download. Node-local images cannot be
// downloaded through the admin.
func (e *Engine) ImageFile(ctx context.Context, u User, id string) (*os.File, Image, error) {
	im, err := e.Image(ctx, u, id)
	if err != nil {
		return nil, Image{}, err
	}
	if im.State != ImageReady {
		return nil, Image{}, fmt.Errorf("%s: %w: it is %s", imageOp("download", id), ErrInvalid, im.State)
	}
	if im.Node != "" {
		return nil, Image{}, fmt.Errorf("%s: %w: it is on node %s's local storage; copy it to a pool first", imageOp("download", id), ErrInvalid, im.Node)
	}
	f, err := os.Open(im.Path)
	if err != nil {
		return nil, Image{}, fmt.Errorf("%s: %w", imageOp("download", id), err)
	}
	return f, im, nil
}
