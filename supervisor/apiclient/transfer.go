package apiclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-os/cairn/supervisor/engine"
)

// UploadContentType is the body of an upload chunk: raw bytes at Upload-Offset.
const UploadContentType = "application/offset+octet-stream"

// DefaultChunkSize is how much one upload request sends.
const DefaultChunkSize = 16 << 20

// Transfer tunes Upload and Download.
type Transfer struct {
	// ChunkSize is how many bytes one upload request sends (DefaultChunkSize when 0).
	ChunkSize int64
	// Retries is how many times in a row a transfer is tried again after a network
	// error or a conflict without getting further (8 when 0; negative: never).
	Retries int
	// Backoff is the first wait before trying again (500 ms when 0); it doubles
	// with every failure in a row, up to 10 s.
	Backoff time.Duration
	// Progress, when set, is told the bytes done of the total as they move.
	Progress func(done, total int64)
	// Retrying, when set, is told of a failure that will be tried again.
	Retrying func(err error, wait time.Duration)
}

func (t Transfer) chunk() int64 {
	if t.ChunkSize <= 0 {
		return DefaultChunkSize
	}
	return t.ChunkSize
}

func (t Transfer) retries() int {
	switch {
	case t.Retries < 0:
		return 0
	case t.Retries == 0:
		return 8
	}
	return t.Retries
}

func (t Transfer) wait(failures int) time.Duration {
	d := t.Backoff
	if d <= 0 {
		d = 500 * time.Millisecond
	}
	for i := 1; i < failures && d < 10*time.Second; i++ {
		d *= 2
	}
	return min(d, 10*time.Second)
}

func (t Transfer) progress(done, total int64) {
	if t.Progress != nil {
		t.Progress(done, total)
	}
}

// TransferError is an upload or download that stopped before its end: it can be
// resumed from Offset.
type TransferError struct {
	// Image is the image being transferred.
	Image string
	// Offset is how many bytes are through; Size is the whole file's.
	Offset, Size int64
	// Err is why it stopped: the last failure, or the context's error.
	Err error
}

// Error says where the transfer stopped and why.
func (e *TransferError) Error() string {
	return fmt.Sprintf("stopped at byte %d of %d: %v", e.Offset, e.Size, e.Err)
}

// Unwrap returns the cause.
func (e *TransferError) Unwrap() error { return e.Err }

// retryable reports whether a failed request may work when tried again: network
// errors, conflicts (a wrong offset, an upload still being written) and the
// engine's own failures. Refusals (400, 401, 403, 404, 413, 415) are final.
func retryable(err error) bool {
	switch s := StatusOf(err); {
	case s == 0:
		return true
	case s == http.StatusConflict, s == http.StatusTooManyRequests, s >= 500:
		return true
	}
	return false
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// UploadStatus shows an image being uploaded; Upload.Offset is where to resume.
func (c *Client) UploadStatus(ctx context.Context, id string) (engine.Image, error) {
	return get[engine.Image](ctx, c, "/images/"+esc(id)+"/upload")
}

// UploadChunk sends n bytes of body to be written at offset of image id's upload.
// The answer is the image: still uploading with its new offset, or, after the last
// byte, ready (or an *Error with status 400 saying why the file was refused).
func (c *Client) UploadChunk(ctx context.Context, id string, offset int64, body io.Reader, n int64) (engine.Image, error) {
	var im engine.Image
	if c.err != nil {
		return im, c.err
	}
	path := "/images/" + esc(id) + "/upload"
	req, err := http.NewRequestWithContext(ctx, "PATCH", c.base+Prefix+path, io.LimitReader(body, n))
	if err != nil {
		return im, fmt.Errorf("upload to image %s: %w", id, err)
	}
	req.ContentLength = n
	if n == 0 {
		req.Body = http.NoBody
	}
	req.Header.Set("Content-Type", UploadContentType)
	req.Header.Set("Upload-Offset", strconv.FormatInt(offset, 10))
	req.Header.Set("Accept", "application/json")
	if c.auth != nil {
		c.auth.authorize(req)
	}
	resp, err := c.stream.Do(req)
	if err != nil {
		return im, fmt.Errorf("reach the engine at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	err = c.answer(resp, "PATCH", path, &im)
	return im, err
}

// countingReader tells how many bytes have been read through it.
type countingReader struct {
	r    io.Reader
	read func(n int)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.read(n)
	}
	return n, err
}

// Upload sends file (size bytes) into image id, an upload begun with CreateImage
// (Upload set), from where the upload stands: a new upload from byte 0, one begun
// earlier from its offset. After a network error or a conflict it asks the engine
// where the upload stands and resumes from there, up to t.Retries times in a row
// without getting further. It returns the ready image; a 400 after the last byte
// says why the engine refused the file. When it gives up (or ctx ends) the error is
// a *TransferError with the offset to resume from.
func (c *Client) Upload(ctx context.Context, id string, file io.ReaderAt, size int64, t Transfer) (engine.Image, error) {
	im, err := c.UploadStatus(ctx, id)
	if err != nil {
		return im, err
	}
	if im.Upload == nil {
		return im, fmt.Errorf("upload to image %s: the engine did not say where the upload stands", id)
	}
	if im.Upload.Size != size {
		return im, fmt.Errorf("upload to image %s: the file has %d bytes but the upload expects %d; is it the same file?", id, size, im.Upload.Size)
	}
	off := im.Upload.Offset
	best := off
	failures := 0
	t.progress(off, size)
	for {
		n := min(t.chunk(), size-off)
		start := off
		sent := int64(0)
		body := &countingReader{r: io.NewSectionReader(file, start, n), read: func(k int) {
			sent += int64(k)
			t.progress(start+sent, size)
		}}
		got, err := c.UploadChunk(ctx, id, start, body, n)
		if err == nil {
			if got.State == engine.ImageReady {
				t.progress(size, size)
				return got, nil
			}
			if got.Upload == nil || got.Upload.Offset <= start && n > 0 {
				return got, fmt.Errorf("upload to image %s: the engine took no bytes at offset %d; the upload is %s", id, start, got.State)
			}
			off = got.Upload.Offset
			if off > best {
				best, failures = off, 0
			}
			continue
		}
		if ctx.Err() != nil {
			return engine.Image{}, &TransferError{Image: id, Offset: c.uploadOffset(id, off), Size: size, Err: ctx.Err()}
		}
		if !retryable(err) {
			return engine.Image{}, err
		}
		// Where the upload stands, until the engine answers or the budget is spent.
		for {
			failures++
			if failures > t.retries() {
				return engine.Image{}, &TransferError{Image: id, Offset: c.uploadOffset(id, off), Size: size, Err: err}
			}
			wait := t.wait(failures)
			if t.Retrying != nil {
				t.Retrying(err, wait)
			}
			if serr := sleep(ctx, wait); serr != nil {
				return engine.Image{}, &TransferError{Image: id, Offset: c.uploadOffset(id, off), Size: size, Err: serr}
			}
			st, serr := c.UploadStatus(ctx, id)
			if serr == nil && st.Upload != nil {
				off = st.Upload.Offset
				break
			}
			if StatusOf(serr) == http.StatusBadRequest {
				// Not being uploaded any more: the last chunk went through and only
				// its answer was lost, or the file was refused and dropped.
				done, gerr := c.Image(ctx, id)
				if gerr == nil && done.State == engine.ImageReady {
					t.progress(size, size)
					return done, nil
				}
				if gerr != nil {
					return engine.Image{}, fmt.Errorf("upload to image %s: %w (the engine discards a file it refuses; check with `cairn images show %s`)", id, err, id)
				}
				return engine.Image{}, serr
			}
			if serr != nil && !retryable(serr) {
				return engine.Image{}, serr
			}
			if serr != nil {
				err = serr
			}
		}
		if off > best {
			best, failures = off, 0
		}
		t.progress(off, size)
	}
}

// uploadOffset asks where upload id stands, for a message after giving up; it
// falls back to what the client last knew.
func (c *Client) uploadOffset(id string, known int64) int64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if st, err := c.UploadStatus(ctx, id); err == nil && st.Upload != nil {
		return st.Upload.Offset
	}
	return known
}

// Download writes image id's file into w, which already holds the first have
// bytes of it (a download begun earlier): those are asked for no more (a Range
// request) unless the engine does not take ranges, when w is written from the start.
// Network errors are tried again from where w stands, up to t.Retries times in a
// row without getting further. It returns the file's size; when it gives up (or ctx
// ends) the error is a *TransferError with the bytes w holds.
func (c *Client) Download(ctx context.Context, id string, w io.WriterAt, have int64, t Transfer) (int64, error) {
	failures := 0
	size := int64(-1)
	for {
		got, total, err := c.downloadFrom(ctx, id, w, have, t)
		if total >= 0 {
			size = total
		}
		progressed := got > have
		have = got
		if err == nil {
			return have, nil
		}
		if ctx.Err() != nil {
			return have, &TransferError{Image: id, Offset: have, Size: size, Err: ctx.Err()}
		}
		var ferr *finalError
		if errors.As(err, &ferr) || !retryable(err) {
			return have, err
		}
		if progressed {
			failures = 0
		}
		failures++
		if failures > t.retries() {
			return have, &TransferError{Image: id, Offset: have, Size: size, Err: err}
		}
		wait := t.wait(failures)
		if t.Retrying != nil {
			t.Retrying(err, wait)
		}
		if serr := sleep(ctx, wait); serr != nil {
			return have, &TransferError{Image: id, Offset: have, Size: size, Err: serr}
		}
	}
}

// finalError is a download failure not worth trying again: the file cannot be
// written, or it is not a part of the image.
type finalError struct{ err error }

func (e *finalError) Error() string { return e.err.Error() }
func (e *finalError) Unwrap() error { return e.err }

// downloadFrom does one download request from byte have. It returns how many bytes
// w holds now and the file's size (-1 when the answer did not say).
func (c *Client) downloadFrom(ctx context.Context, id string, w io.WriterAt, have int64, t Transfer) (int64, int64, error) {
	if c.err != nil {
		return have, -1, c.err
	}
	path := "/images/" + esc(id) + "/download"
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+Prefix+path, nil)
	if err != nil {
		return have, -1, fmt.Errorf("download image %s: %w", id, err)
	}
	if have > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", have))
	}
	if c.auth != nil {
		c.auth.authorize(req)
	}
	resp, err := c.stream.Do(req)
	if err != nil {
		return have, -1, fmt.Errorf("reach the engine at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	var start, total int64
	switch resp.StatusCode {
	case http.StatusOK:
		start, total = 0, resp.ContentLength
		have = 0
	case http.StatusPartialContent:
		s, _, size, ok := contentRange(resp.Header.Get("Content-Range"))
		if !ok || s != have {
			return have, -1, fmt.Errorf("download image %s: the engine answered with bytes %q, not from %d", id, resp.Header.Get("Content-Range"), have)
		}
		start, total = s, size
	case http.StatusRequestedRangeNotSatisfiable:
		_, _, size, ok := contentRange(resp.Header.Get("Content-Range"))
		if ok && size == have {
			t.progress(have, have)
			return have, have, nil
		}
		return have, size, &finalError{fmt.Errorf(
			"download image %s: the file already has %d bytes but the image has %d, so it is not a part of it; give another file name or remove it", id, have, size)}
	default:
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return have, -1, c.apiError(resp.StatusCode, data)
	}
	t.progress(start, total)
	buf := make([]byte, 1<<20)
	pos := start
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, err := w.WriteAt(buf[:n], pos); err != nil {
				return pos, total, &finalError{fmt.Errorf("download image %s: write: %w", id, err)}
			}
			pos += int64(n)
			t.progress(pos, total)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return pos, total, fmt.Errorf("download image %s: %w", id, rerr)
		}
	}
	if total >= 0 && pos != total {
		return pos, total, fmt.Errorf("download image %s: the answer ended at byte %d of %d", id, pos, total)
	}
	return pos, total, nil
}

// contentRange reads "bytes 100-199/200" or "bytes */200".
func contentRange(h string) (start, end, size int64, ok bool) {
	rest, found := strings.CutPrefix(h, "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	rng, total, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, 0, false
	}
	size, err := strconv.ParseInt(total, 10, 64)
	if err != nil {
		return 0, 0, 0, false
	}
	if rng == "*" {
		return -1, -1, size, true
	}
	a, b, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, 0, false
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, 0, false
	}
	return start, end, size, true
}
