package images

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cairn-os/cairn/internal/enginetest"
	"github.com/cairn-os/cairn/internal/testutil"
	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/supervisor/hostcmd"
)

// realEngine opens an engine on a fresh state directory (pool 0 is a dir pool in
// it) and returns it with an admin and a user.
func realEngine(t *testing.T) (*engine.Engine, engine.User, engine.User) {
	t.Helper()
	e, admin := enginetest.Open(t)
	user := enginetest.User(t, e, admin, "carol", engine.RoleUser)
	return e, admin, user
}

// qcow2File makes a real qcow2 image holding size random bytes, and returns its bytes.
func qcow2File(t *testing.T, size int) []byte {
	t.Helper()
	testutil.RequireProgram(t, "qemu-img")
	dir := t.TempDir()
	raw := filepath.Join(dir, "data.raw")
	data := make([]byte, size)
	rand.Read(data)
	if err := os.WriteFile(raw, data, 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "disk.qcow2")
	if b, err := (hostcmd.Exec{}).Run(t.Context(), "qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, out); err != nil {
		t.Fatalf("qemu-img convert: %v: %s", err, b)
	}
	file, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return file
}

// cutReader yields n bytes of r, then fails as a dropped connection does.
type cutReader struct {
	r io.Reader
	n int
}

func (c *cutReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, io.ErrUnexpectedEOF
	}
	p = p[:min(len(p), c.n)]
	n, err := c.r.Read(p)
	c.n -= n
	return n, err
}

// uploadChunk PATCHes body at off as u and decodes the answer.
func uploadChunk(t *testing.T, h *Handlers, u engine.User, id string, off int, body io.Reader) (int, UploadAnswer) {
	t.Helper()
	rec := do(t, h, u, http.MethodPatch, "/images/"+id+"/upload", body, OffsetHeader, strconv.Itoa(off), "Content-Type", ChunkContentType)
	var a UploadAnswer
	if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil {
		t.Fatalf("PATCH at %d: %d %q", off, rec.Code, rec.Body.String())
	}
	return rec.Code, a
}

func startUpload(t *testing.T, h *Handlers, u engine.User, name, format string, size int) UploadAnswer {
	t.Helper()
	form := url.Values{"name": {name}, "format": {format}, "pool": {"0"}, "size": {strconv.Itoa(size)}}
	rec := post(t, h, u, "/images/upload", form.Encode())
	var a UploadAnswer
	if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil || rec.Code != http.StatusCreated || a.ID == "" || a.Offset != 0 {
		t.Fatalf("start upload: %d %q", rec.Code, rec.Body.String())
	}
	return a
}

func TestRealUploadResumesAfterACutChunkAndAWrongOffset(t *testing.T) {
	file := qcow2File(t, 3<<20)
	e, _, carol := realEngine(t)
	h := newHandlers(e)
	up := startUpload(t, h, carol, "resumed", "qcow2", len(file))

	// The first chunk is cut off after 100 000 bytes: the engine keeps what arrived.
	const cut = 100_000
	code, a := uploadChunk(t, h, carol, up.ID, 0, &cutReader{r: bytes.NewReader(file[:1<<20]), n: cut})
	if code != http.StatusConflict || a.Offset != cut {
		t.Fatalf("cut chunk: %d %+v", code, a)
	}
	// A client that did not notice sends the next chunk at the wrong offset.
	code, a = uploadChunk(t, h, carol, up.ID, 1<<20, bytes.NewReader(file[1<<20:2<<20]))
	if code != http.StatusConflict || a.Offset != cut || !strings.Contains(a.Error, "resume from 100000") {
		t.Fatalf("wrong offset: %d %+v", code, a)
	}
	// It asks where the upload stands, as upload.js does, and resumes from there.
	rec := do(t, h, carol, http.MethodGet, "/images/"+up.ID+"/upload", nil)
	var st UploadAnswer
	json.Unmarshal(rec.Body.Bytes(), &st)
	if rec.Code != http.StatusOK || st.Offset != cut || st.Size != int64(len(file)) || st.State != "uploading" {
		t.Fatalf("status: %d %+v", rec.Code, st)
	}
	code, a = uploadChunk(t, h, carol, up.ID, cut, bytes.NewReader(file[cut:cut+(1<<20)]))
	if code != http.StatusOK || a.Offset != cut+(1<<20) || a.State != "uploading" {
		t.Fatalf("resumed chunk: %d %+v", code, a)
	}
	last := file[cut+(1<<20):]
	code, a = uploadChunk(t, h, carol, up.ID, cut+(1<<20), bytes.NewReader(last))
	if code != http.StatusOK || a.State != "ready" {
		t.Fatalf("last chunk: %d %+v", code, a)
	}
	// A browser re-sends the last chunk when its answer was lost: the image is ready.
	code, a = uploadChunk(t, h, carol, up.ID, cut+(1<<20), bytes.NewReader(last))
	if code != http.StatusOK || a.State != "ready" {
		t.Errorf("last chunk again: %d %+v", code, a)
	}

	// The image is ready, qemu-img reads it, and it downloads as the very file sent.
	page := do(t, h, carol, http.MethodGet, "/images/"+up.ID, nil).Body.String()
	for _, s := range []string{`data-state="ready"`, `<table class="table" id="chain">`, `<tr data-format="qcow2">`, "3 MiB"} {
		if !strings.Contains(page, s) {
			t.Errorf("image page lacks %s", s)
		}
	}
	rec = do(t, h, carol, http.MethodGet, "/images/"+up.ID+"/download", nil)
	if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), file) {
		t.Errorf("download: %d, %d bytes, same as uploaded: %v", rec.Code, rec.Body.Len(), bytes.Equal(rec.Body.Bytes(), file))
	}
	rec = do(t, h, carol, http.MethodGet, "/images/"+up.ID+"/upload", nil)
	if json.Unmarshal(rec.Body.Bytes(), &st); rec.Code != http.StatusOK || st.State != "ready" {
		t.Errorf("status after the end: %d %+v", rec.Code, st)
	}
}

func TestRealUploadRefusalsShowTheEnginesMessage(t *testing.T) {
	testutil.RequireProgram(t, "qemu-img")
	dir := t.TempDir()
	base, child := filepath.Join(dir, "base.qcow2"), filepath.Join(dir, "child.qcow2")
	for _, args := range [][]string{
		{"create", "-f", "qcow2", base, "16M"},
		{"create", "-f", "qcow2", "-b", base, "-F", "qcow2", child},
	} {
		if b, err := (hostcmd.Exec{}).Run(t.Context(), "qemu-img", args...); err != nil {
			t.Fatalf("qemu-img %v: %v: %s", args, err, b)
		}
	}
	withBacking, err := os.ReadFile(child)
	if err != nil {
		t.Fatal(err)
	}
	e, _, carol := realEngine(t)
	h := newHandlers(e)
	for _, c := range []struct {
		name string
		file []byte
		want string
	}{
		{"notes", bytes.Repeat([]byte("these are notes, not a disk\n"), 100), "it was declared qcow2 but is a raw image"},
		{"sneaky", withBacking, "it has a backing file (" + base + ")"},
	} {
		up := startUpload(t, h, carol, c.name, "qcow2", len(c.file))
		code, a := uploadChunk(t, h, carol, up.ID, 0, bytes.NewReader(c.file))
		if code != http.StatusBadRequest || !strings.Contains(a.Error, c.want) || !strings.Contains(a.Error, "the upload was discarded") {
			t.Errorf("%s: %d %q, want 400 with %q", c.name, code, a.Error, c.want)
		}
		if _, err := e.Image(t.Context(), carol, up.ID); !errors.Is(err, engine.ErrNotFound) {
			t.Errorf("%s: the refused upload is still recorded: %v", c.name, err)
		}
	}
	// The engine's own refusals when starting come through too.
	rec := post(t, h, carol, "/images/upload", "name=x&format=exe&size=10")
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `image format \"exe\"`) {
		t.Errorf("unknown format: %d %s", rec.Code, rec.Body.String())
	}
}
