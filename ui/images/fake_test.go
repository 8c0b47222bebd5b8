package images

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/ui/layout"
)

// Users of the tests.
var (
	alice  = engine.User{ID: "u-alice", Name: "alice", Role: engine.RoleUser}
	bob    = engine.User{ID: "u-bob", Name: "bob", Role: engine.RoleUser}
	root   = engine.User{ID: "u-root", Name: "root", Role: engine.RoleAdmin}
	reader = engine.User{ID: "u-reader", Name: "reader", Role: engine.RoleReadonly}
)

// fakeService is the engine as the Images area sees it, in memory. Like the engine,
// it hides other users' images from everyone but admins (not found), and refuses
// read-only users' changes.
type fakeService struct {
	mu      sync.Mutex
	dir     string
	images  []engine.Image
	pools   []engine.Pool
	backups []engine.Backup
	ops     map[string]engine.Operation
	uploads map[string]*bytes.Buffer
	// refuse, when set, is what every change answers.
	refuse error
	calls  []string
}

func newFake(t *testing.T) *fakeService {
	created := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	return &fakeService{
		dir: t.TempDir(),
		images: []engine.Image{
			{ID: "i-deb", Name: "debian-12", Owner: alice.ID, Format: "qcow2", State: engine.ImageReady, Pool: 0,
				VirtualSize: 20 << 30, ActualSize: 2 << 30, Master: true, Children: []string{"i-web"}, CreatedAt: created},
			{ID: "i-web", Name: "web-1", Owner: alice.ID, Format: "qcow2", State: engine.ImageReady, Pool: 0,
				VirtualSize: 20 << 30, ActualSize: 300 << 20, Backing: "i-deb", UsedBy: []string{"s-web"}, CreatedAt: created},
			{ID: "i-up", Name: "win-iso", Owner: alice.ID, Format: "iso", State: engine.ImageUploading, Pool: 1,
				Upload: &engine.Upload{Size: 5 << 30, Offset: 1 << 30}, CreatedAt: created},
			{ID: "i-bob", Name: "bobs-disk", Owner: bob.ID, Format: "raw", State: engine.ImageBusy, Pool: 0,
				VirtualSize: 1 << 30, CreatedAt: created},
		},
		pools: []engine.Pool{
			{ID: 0, Name: "pool0", Driver: "btrfs", State: engine.PoolReady, Shared: true, TotalBytes: 100 << 30, FreeBytes: 60 << 30},
			{ID: 1, Name: "fast", Driver: "dir", State: engine.PoolReady, Shared: true, TotalBytes: 50 << 30, FreeBytes: 50 << 30},
		},
		ops:     map[string]engine.Operation{},
		uploads: map[string]*bytes.Buffer{},
	}
}

func (f *fakeService) call(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, name)
}

func (f *fakeService) called(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.calls {
		if c == name {
			return true
		}
	}
	return false
}

func canSee(u engine.User, owner string) bool { return u.Role == engine.RoleAdmin || u.ID == owner }

func (f *fakeService) find(u engine.User, id string) (engine.Image, int, error) {
	for i, im := range f.images {
		if im.ID == id && canSee(u, im.Owner) {
			return im, i, nil
		}
	}
	return engine.Image{}, -1, fmt.Errorf("image %q: %w", id, engine.ErrNotFound)
}

func (f *fakeService) change(u engine.User, op string) error {
	if u.Role == engine.RoleReadonly {
		return fmt.Errorf("%s: %w: readonly users can only look; ask an admin", op, engine.ErrForbidden)
	}
	return f.refuse
}

func (f *fakeService) Images(_ context.Context, u engine.User) ([]engine.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []engine.Image
	for _, im := range f.images {
		if canSee(u, im.Owner) {
			out = append(out, im)
		}
	}
	return out, nil
}

func (f *fakeService) Image(_ context.Context, u engine.User, id string) (engine.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	im, _, err := f.find(u, id)
	return im, err
}

func (f *fakeService) ImageInfo(ctx context.Context, u engine.User, id string) (engine.ImageInfo, error) {
	im, err := f.Image(ctx, u, id)
	if err != nil {
		return engine.ImageInfo{}, err
	}
	info := engine.ImageInfo{Image: im}
	if im.State == engine.ImageReady {
		info.Chain = []engine.ChainLink{{Path: "/pools/0/images/" + im.ID + ".qcow2", Format: im.Format, VirtualSize: im.VirtualSize, ActualSize: im.ActualSize}}
	}
	return info, nil
}

func (f *fakeService) CreateImage(_ context.Context, u engine.User, req engine.ImageRequest) (engine.Image, error) {
	f.call("CreateImage")
	if err := f.change(u, "create image"); err != nil {
		return engine.Image{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	pool := 0
	if req.Pool != nil {
		pool = *req.Pool
	}
	im := engine.Image{ID: fmt.Sprintf("i-new%d", len(f.images)), Name: req.Name, Owner: u.ID, Format: req.Format, Pool: pool,
		State: engine.ImageUploading, Upload: &engine.Upload{Size: req.Size}}
	f.images = append(f.images, im)
	f.uploads[im.ID] = &bytes.Buffer{}
	return im, nil
}

func (f *fakeService) UploadStatus(_ context.Context, u engine.User, id string) (engine.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	im, _, err := f.find(u, id)
	if err != nil {
		return engine.Image{}, err
	}
	if im.State != engine.ImageUploading {
		return engine.Image{}, fmt.Errorf("upload to image %q: %w: the image is %s, not being uploaded", id, engine.ErrInvalid, im.State)
	}
	return im, nil
}

// UploadChunk keeps the bytes and, like the engine, refuses a chunk at any offset
// but the one the upload stands at.
func (f *fakeService) UploadChunk(_ context.Context, u engine.User, id string, offset int64, body io.Reader) (engine.Image, error) {
	f.call("UploadChunk")
	if err := f.change(u, "upload"); err != nil {
		return engine.Image{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	im, i, err := f.find(u, id)
	if err != nil {
		return engine.Image{}, err
	}
	if im.Upload.Offset != offset {
		return engine.Image{}, fmt.Errorf("upload to image %q: %w: the upload is at byte %d, not %d; resume from %d", id, engine.ErrConflictOffset, im.Upload.Offset, offset, im.Upload.Offset)
	}
	if f.uploads[id] == nil {
		f.uploads[id] = &bytes.Buffer{}
	}
	n, _ := io.Copy(f.uploads[id], body)
	up := *im.Upload
	up.Offset += n
	im.Upload = &up
	if im.Upload.Offset >= im.Upload.Size {
		im.State, im.Upload = engine.ImageReady, nil
	}
	f.images[i] = im
	return im, nil
}

func (f *fakeService) ImageFile(_ context.Context, u engine.User, id string) (*os.File, engine.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	im, _, err := f.find(u, id)
	if err != nil {
		return nil, engine.Image{}, err
	}
	path := filepath.Join(f.dir, id)
	if _, err := os.Stat(path); err != nil {
		if err := os.WriteFile(path, []byte("0123456789abcdefghij"), 0o600); err != nil {
			return nil, engine.Image{}, err
		}
	}
	file, err := os.Open(path)
	return file, im, err
}

func (f *fakeService) UpdateImage(_ context.Context, u engine.User, id string, upd engine.ImageUpdate) (engine.Image, error) {
	f.call("UpdateImage")
	if err := f.change(u, "update image"); err != nil {
		return engine.Image{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	im, i, err := f.find(u, id)
	if err != nil {
		return engine.Image{}, err
	}
	if upd.Master != nil {
		im.Master = *upd.Master
	}
	if upd.BackupAt != nil {
		im.BackupAt = *upd.BackupAt
	}
	if upd.BackupKeep != nil {
		im.BackupKeep = *upd.BackupKeep
	}
	f.images[i] = im
	return im, nil
}

func (f *fakeService) startOp(u engine.User, kind, target string) engine.Operation {
	f.mu.Lock()
	defer f.mu.Unlock()
	op := engine.Operation{ID: fmt.Sprintf("op-%d", len(f.ops)+1), Owner: u.ID, Kind: kind, Target: target, State: engine.OpRunning, Progress: 0.4, Message: "converting"}
	f.ops[op.ID] = op
	return op
}

func (f *fakeService) CloneImage(ctx context.Context, u engine.User, id string, req engine.CloneRequest) (engine.Image, *engine.Operation, error) {
	f.call("CloneImage")
	if err := f.change(u, "clone image"); err != nil {
		return engine.Image{}, nil, err
	}
	if _, err := f.Image(ctx, u, id); err != nil {
		return engine.Image{}, nil, err
	}
	op := f.startOp(u, "copy", id)
	return engine.Image{}, &op, nil
}

func (f *fakeService) ConvertImage(ctx context.Context, u engine.User, id, format, name string) (engine.Operation, error) {
	f.call("ConvertImage " + format)
	if err := f.change(u, "convert image"); err != nil {
		return engine.Operation{}, err
	}
	if _, err := f.Image(ctx, u, id); err != nil {
		return engine.Operation{}, err
	}
	return f.startOp(u, "convert", id), nil
}

func (f *fakeService) ResizeImage(ctx context.Context, u engine.User, id string, size int64) (engine.Image, error) {
	f.call(fmt.Sprintf("ResizeImage %d", size))
	if err := f.change(u, "resize image"); err != nil {
		return engine.Image{}, err
	}
	return f.Image(ctx, u, id)
}

func (f *fakeService) FlattenImage(ctx context.Context, u engine.User, id string) (engine.Operation, error) {
	f.call("FlattenImage")
	if err := f.change(u, "flatten image"); err != nil {
		return engine.Operation{}, err
	}
	return f.startOp(u, "flatten", id), nil
}

func (f *fakeService) BackupImage(ctx context.Context, u engine.User, id string) (engine.Operation, error) {
	f.call("BackupImage")
	if err := f.change(u, "back up image"); err != nil {
		return engine.Operation{}, err
	}
	return f.startOp(u, "backup", id), nil
}

func (f *fakeService) DeleteImage(ctx context.Context, u engine.User, id string) error {
	f.call("DeleteImage")
	if err := f.change(u, "delete image"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	_, i, err := f.find(u, id)
	if err != nil {
		return err
	}
	f.images = append(f.images[:i], f.images[i+1:]...)
	return nil
}

func (f *fakeService) Backups(_ context.Context, u engine.User, image string) ([]engine.Backup, error) {
	var out []engine.Backup
	for _, b := range f.backups {
		if canSee(u, b.Owner) && (image == "" || b.Image == image) {
			out = append(out, b)
		}
	}
	return out, nil
}

func (f *fakeService) Pools(context.Context, engine.User) ([]engine.Pool, error) { return f.pools, nil }

func (f *fakeService) Nodes(context.Context, engine.User) ([]engine.Node, error) {
	return []engine.Node{{ID: "n-1", Name: "node1", State: engine.NodeReady}}, nil
}

func (f *fakeService) Servers(_ context.Context, u engine.User) ([]engine.Server, error) {
	if !canSee(u, alice.ID) {
		return nil, nil
	}
	return []engine.Server{{ID: "s-web", Name: "web-server", Owner: alice.ID}}, nil
}

func (f *fakeService) Operation(_ context.Context, u engine.User, id string) (engine.Operation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	op, ok := f.ops[id]
	if !ok || !canSee(u, op.Owner) {
		return engine.Operation{}, fmt.Errorf("operation %q: %w", id, engine.ErrNotFound)
	}
	return op, nil
}

func (f *fakeService) Users(_ context.Context, u engine.User) ([]engine.User, error) {
	if u.Role != engine.RoleAdmin {
		return nil, fmt.Errorf("list users: %w: only admins can do this", engine.ErrForbidden)
	}
	return []engine.User{alice, bob, root, reader}, nil
}

// testMux serves the Images area as the console's route table does, for viewer u.
func testMux(h *Handlers, u engine.User) http.Handler {
	mux := http.NewServeMux()
	for _, rt := range h.Routes() {
		mux.HandleFunc(rt.Pattern, rt.Handler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := layout.Viewer{User: u, Session: engine.Session{ID: "s", CSRF: "csrf-token"}}
		mux.ServeHTTP(w, r.WithContext(layout.WithViewer(r.Context(), v)))
	})
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// do sends one request as u and returns the answer.
func do(t *testing.T, h *Handlers, u engine.User, method, target string, body io.Reader, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, target, body)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	testMux(h, u).ServeHTTP(rec, r)
	return rec
}

// post sends a form as u.
func post(t *testing.T, h *Handlers, u engine.User, target string, form string) *httptest.ResponseRecorder {
	t.Helper()
	return do(t, h, u, http.MethodPost, target, strings.NewReader(form), "Content-Type", "application/x-www-form-urlencoded")
}
