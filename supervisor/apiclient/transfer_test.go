package apiclient

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cairn-os/cairn/supervisor/engine"
)

// fakeUploads is the upload protocol of the engine, in memory, with a fault to
// inject into the PATCH requests.
type fakeUploads struct {
	mu    sync.Mutex
	size  int64
	data  bytes.Buffer
	ready bool
	// fault, when set, handles a PATCH after its bytes are taken; it returns true
	// when it has answered.
	fault func(w http.ResponseWriter, n int) bool
	calls int
}

func (f *fakeUploads) image() engine.Image {
	im := engine.Image{ID: "i-1", Name: "up", State: engine.ImageUploading, Upload: &engine.Upload{Size: f.size, Offset: int64(f.data.Len())}}
	if f.ready {
		im.State, im.Upload = engine.ImageReady, nil
	}
	return im
}

func answer(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (f *fakeUploads) serve(t *testing.T) *Client {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/images/i-1/upload", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.ready {
			answer(w, 400, map[string]string{"error": "the image is ready, not being uploaded"})
			return
		}
		answer(w, 200, f.image())
	})
	mux.HandleFunc("GET /api/v1/images/i-1", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		answer(w, 200, f.image())
	})
	mux.HandleFunc("PATCH /api/v1/images/i-1/upload", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.calls++
		off, _ := strconv.ParseInt(r.Header.Get("Upload-Offset"), 10, 64)
		if r.Header.Get("Content-Type") != UploadContentType {
			answer(w, 415, map[string]string{"error": "wrong content type"})
			return
		}
		if off != int64(f.data.Len()) {
			answer(w, 409, map[string]string{"error": "wrong offset"})
			return
		}
		n, _ := io.Copy(&f.data, r.Body)
		if int64(f.data.Len()) == f.size {
			f.ready = true
		}
		if f.fault != nil && f.fault(w, int(n)) {
			return
		}
		answer(w, 200, f.image())
	})
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	return New(srv.URL, caPEM, Bearer("cairn_x"))
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestUploadGivesUpAfterItsRetries(t *testing.T) {
	data := randomBytes(3000)
	f := &fakeUploads{size: int64(len(data))}
	c := f.serve(t)
	f.fault = func(w http.ResponseWriter, n int) bool {
		if f.data.Len() <= 1000 {
			return false
		}
		// From byte 1000 on, the engine takes nothing and fails.
		f.data.Truncate(1000)
		f.ready = false
		answer(w, 500, map[string]string{"error": "internal error"})
		return true
	}
	var retried int
	_, err := c.Upload(context.Background(), "i-1", bytes.NewReader(data), int64(len(data)), Transfer{
		ChunkSize: 500, Retries: 3, Backoff: time.Millisecond,
		Retrying: func(error, time.Duration) { retried++ },
	})
	var te *TransferError
	if !errors.As(err, &te) || te.Offset != 1000 || te.Size != 3000 || StatusOf(te.Err) != 500 {
		t.Fatalf("err = %v (%#v)", err, te)
	}
	if retried != 3 {
		t.Fatalf("retried %d times, want 3", retried)
	}
}

func TestUploadWhoseLastAnswerIsLost(t *testing.T) {
	data := randomBytes(2500)
	f := &fakeUploads{size: int64(len(data))}
	c := f.serve(t)
	f.fault = func(w http.ResponseWriter, n int) bool {
		if !f.ready {
			return false
		}
		// The last chunk is in, but the connection drops before the answer.
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return true
	}
	var last int64
	im, err := c.Upload(context.Background(), "i-1", bytes.NewReader(data), int64(len(data)), Transfer{
		ChunkSize: 1000, Backoff: time.Millisecond,
		Progress: func(done, total int64) { last = done },
	})
	if err != nil || im.State != engine.ImageReady {
		t.Fatalf("upload = %+v, %v", im, err)
	}
	if !bytes.Equal(f.data.Bytes(), data) || last != int64(len(data)) || f.calls != 3 {
		t.Fatalf("the engine has %d bytes (same: %v), progress ended at %d, %d PATCHes", f.data.Len(), bytes.Equal(f.data.Bytes(), data), last, f.calls)
	}
}

func TestUploadResumesFromWhereTheEngineStands(t *testing.T) {
	data := randomBytes(4000)
	f := &fakeUploads{size: int64(len(data))}
	c := f.serve(t)
	cut := false
	f.fault = func(w http.ResponseWriter, n int) bool {
		if cut || f.data.Len() < 2000 {
			return false
		}
		// The second chunk arrives only in part, and its answer is lost.
		cut = true
		f.data.Truncate(1300)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return true
	}
	var offsets []string
	im, err := c.Upload(context.Background(), "i-1", bytes.NewReader(data), int64(len(data)), Transfer{
		ChunkSize: 1000, Backoff: time.Millisecond,
		Retrying: func(error, time.Duration) { offsets = append(offsets, "retry") },
		Progress: func(done, total int64) {
			offsets = append(offsets, strconv.FormatInt(done, 10))
		},
	})
	if err != nil || im.State != engine.ImageReady || !bytes.Equal(f.data.Bytes(), data) {
		t.Fatalf("upload = %+v, %v (same bytes: %v)", im, err, bytes.Equal(f.data.Bytes(), data))
	}
	// After the cut the upload goes on from byte 1300, where the engine stands.
	want := "0 1000 2000 retry 1300 2300 3300 4000"
	if got := join(dedupe(offsets)); got != want {
		t.Fatalf("progress %q, want %q", got, want)
	}
}

func dedupe(s []string) []string {
	var out []string
	for _, x := range s {
		if len(out) == 0 || out[len(out)-1] != x {
			out = append(out, x)
		}
	}
	return out
}

func join(s []string) string {
	var b bytes.Buffer
	for i, x := range s {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(x)
	}
	return b.String()
}

func TestContentRange(t *testing.T) {
	for h, want := range map[string][3]int64{
		"bytes 100-199/200": {100, 199, 200},
		"bytes */200":       {-1, -1, 200},
	} {
		s, e, size, ok := contentRange(h)
		if !ok || [3]int64{s, e, size} != want {
			t.Errorf("contentRange(%q) = %d %d %d %v", h, s, e, size, ok)
		}
	}
	for _, h := range []string{"", "bytes 1-2", "items 1-2/3", "bytes a-b/3"} {
		if _, _, _, ok := contentRange(h); ok {
			t.Errorf("contentRange(%q) took it", h)
		}
	}
}
