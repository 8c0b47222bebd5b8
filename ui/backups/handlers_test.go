package backups

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/ui/layout"
)

var (
	alice  = engine.User{ID: "u-alice", Name: "alice", Role: engine.RoleUser}
	bob    = engine.User{ID: "u-bob", Name: "bob", Role: engine.RoleUser}
	root   = engine.User{ID: "u-root", Name: "root", Role: engine.RoleAdmin}
	reader = engine.User{ID: "u-reader", Name: "reader", Role: engine.RoleReadonly}
)

type fakeService struct {
	backups []engine.Backup
	images  []engine.Image
	ops     map[string]engine.Operation
	refuse  error
	calls   []string
}

func newFake() *fakeService {
	at := time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)
	return &fakeService{
		backups: []engine.Backup{
			{ID: "b-2", Image: "i-web", Name: "web-1", Owner: alice.ID, Size: 300 << 20, Method: "reflink", Scheduled: true, CreatedAt: at.Add(24 * time.Hour)},
			{ID: "b-1", Image: "i-old", Name: "old-disk", Owner: alice.ID, Size: 1 << 30, Method: "rsync", CreatedAt: at},
			{ID: "b-3", Image: "i-bob", Name: "bobs", Owner: bob.ID, Size: 1 << 20, Method: "rsync", CreatedAt: at},
		},
		images: []engine.Image{{ID: "i-web", Name: "web-1", Owner: alice.ID}, {ID: "i-bob", Name: "bobs", Owner: bob.ID}},
		ops:    map[string]engine.Operation{},
	}
}

func sees(u engine.User, owner string) bool { return u.Role == engine.RoleAdmin || u.ID == owner }

func (f *fakeService) Backups(_ context.Context, u engine.User, image string) ([]engine.Backup, error) {
	var out []engine.Backup
	for _, b := range f.backups {
		if sees(u, b.Owner) && (image == "" || b.Image == image) {
			out = append(out, b)
		}
	}
	return out, nil
}

func (f *fakeService) find(u engine.User, id string) error {
	for _, b := range f.backups {
		if b.ID == id && sees(u, b.Owner) {
			return nil
		}
	}
	return fmt.Errorf("backup %q: %w", id, engine.ErrNotFound)
}

func (f *fakeService) RestoreBackup(_ context.Context, u engine.User, id string, req engine.RestoreRequest) (engine.Operation, error) {
	f.calls = append(f.calls, fmt.Sprintf("RestoreBackup %s %q", id, req.Name))
	if err := f.find(u, id); err != nil {
		return engine.Operation{}, err
	}
	if u.Role == engine.RoleReadonly {
		return engine.Operation{}, fmt.Errorf("restore: %w: readonly users can only look; ask an admin", engine.ErrForbidden)
	}
	if f.refuse != nil {
		return engine.Operation{}, f.refuse
	}
	op := engine.Operation{ID: "op-7", Owner: u.ID, Kind: "restore", Target: "i-web", State: engine.OpRunning, Progress: 0.5}
	f.ops[op.ID] = op
	return op, nil
}

func (f *fakeService) DeleteBackup(_ context.Context, u engine.User, id string) error {
	f.calls = append(f.calls, "DeleteBackup "+id)
	return f.find(u, id)
}

func (f *fakeService) Images(_ context.Context, u engine.User) ([]engine.Image, error) {
	var out []engine.Image
	for _, im := range f.images {
		if sees(u, im.Owner) {
			out = append(out, im)
		}
	}
	return out, nil
}

func (f *fakeService) Operation(_ context.Context, u engine.User, id string) (engine.Operation, error) {
	op, ok := f.ops[id]
	if !ok || !sees(u, op.Owner) {
		return engine.Operation{}, engine.ErrNotFound
	}
	return op, nil
}

func (f *fakeService) Users(_ context.Context, u engine.User) ([]engine.User, error) {
	if u.Role != engine.RoleAdmin {
		return nil, engine.ErrForbidden
	}
	return []engine.User{alice, bob, root}, nil
}

func (f *fakeService) called(prefix string) bool {
	for _, c := range f.calls {
		if strings.HasPrefix(c, prefix) {
			return true
		}
	}
	return false
}

func do(t *testing.T, svc Service, u engine.User, method, target, form string) *httptest.ResponseRecorder {
	t.Helper()
	h := New(svc, slog.New(slog.NewTextHandler(io.Discard, nil)))
	mux := http.NewServeMux()
	for _, rt := range h.Routes() {
		mux.HandleFunc(rt.Pattern, rt.Handler)
	}
	r := httptest.NewRequest(method, target, strings.NewReader(form))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r = r.WithContext(layout.WithViewer(r.Context(), layout.Viewer{User: u, Session: engine.Session{CSRF: "tok"}}))
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, r)
	return rec
}

var rowPattern = regexp.MustCompile(`<tr data-backup-id="([^"]+)" data-image-id="([^"]+)"`)

func TestBackupsTableShowsTheViewersBackups(t *testing.T) {
	svc := newFake()
	body := do(t, svc, alice, http.MethodGet, "/backups", "").Body.String()
	if got := fmt.Sprint(rowPattern.FindAllStringSubmatch(body, -1)); !strings.Contains(got, "b-2 i-web") || !strings.Contains(got, "b-1 i-old") || strings.Contains(got, "b-3") {
		t.Errorf("alice's rows: %s", got)
	}
	for _, s := range []string{`href="/images/i-web">web-1<`, "image deleted", "Reflink (shared blocks)", "rsync (full copy)", ">Scheduled<", ">Manual<", "300 MiB", "2026-03-02 02:00 UTC"} {
		if !strings.Contains(body, s) {
			t.Errorf("alice's backups page lacks %q", s)
		}
	}
	if strings.Contains(body, "<th>Owner</th>") {
		t.Error("a user sees the owner column")
	}
	// A backup of a deleted image can only come back as a new image.
	if !strings.Contains(body, `<input type="hidden" name="mode" value="new">`) {
		t.Error("the deleted image's backup offers an in-place restore")
	}
	body = do(t, svc, root, http.MethodGet, "/backups?image=i-bob", "").Body.String()
	if got := rowPattern.FindAllStringSubmatch(body, -1); len(got) != 1 || got[0][1] != "b-3" || !strings.Contains(body, "<td>bob</td>") {
		t.Errorf("admin's filtered rows: %v", got)
	}
}

func TestRestoreInPlaceShowsTheEnginesRefusal(t *testing.T) {
	svc := newFake()
	svc.refuse = fmt.Errorf(`restore backup "b-2": %w: server web (s-1) uses it and is running; shut it off first`, engine.ErrInUse)
	rec := do(t, svc, alice, http.MethodPost, "/backups/b-2/restore", "mode=inplace")
	if rec.Code != http.StatusConflict || !strings.Contains(rec.Body.String(), `id="action-error">restore backup &#34;b-2&#34;: in use: server web (s-1) uses it and is running; shut it off first<`) {
		t.Errorf("refused restore: %d", rec.Code)
	}
	svc.refuse = nil
	before := len(svc.calls)
	if rec := do(t, svc, alice, http.MethodPost, "/backups/b-2/restore", "mode=new&name="); rec.Code != http.StatusBadRequest || len(svc.calls) != before {
		t.Errorf("restore as new without a name: %d, reached the engine: %v", rec.Code, svc.calls[before:])
	}
	rec = do(t, svc, alice, http.MethodPost, "/backups/b-2/restore", "mode=new&name=web-back")
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/backups?op=op-7" || !svc.called(`RestoreBackup b-2 "web-back"`) {
		t.Fatalf("restore as new: %d %q %v", rec.Code, rec.Header().Get("Location"), svc.calls)
	}
	if body := do(t, svc, alice, http.MethodGet, "/backups?op=op-7", "").Body.String(); !strings.Contains(body, `<progress class="op-bar" max="100" value="50"`) {
		t.Error("no progress bar after the restore")
	}
	if rec := do(t, svc, alice, http.MethodPost, "/backups/b-3/restore", "mode=inplace"); rec.Code != http.StatusNotFound {
		t.Errorf("restore bob's backup as alice: %d", rec.Code)
	}
}

func TestDeleteNeedsConfirmationAndReadonlyHasNoForms(t *testing.T) {
	svc := newFake()
	if rec := do(t, svc, alice, http.MethodPost, "/backups/b-2/delete", ""); rec.Code != http.StatusBadRequest || svc.called("DeleteBackup") {
		t.Errorf("delete without ticking: %d", rec.Code)
	}
	if rec := do(t, svc, alice, http.MethodPost, "/backups/b-2/delete", "confirm=yes"); rec.Code != http.StatusSeeOther || !svc.called("DeleteBackup b-2") {
		t.Errorf("delete: %d", rec.Code)
	}
	svc.backups = append(svc.backups, engine.Backup{ID: "b-r", Image: "i-r", Name: "r", Owner: reader.ID})
	body := do(t, svc, reader, http.MethodGet, "/backups", "").Body.String()
	if !strings.Contains(body, `data-backup-id="b-r"`) || strings.Contains(body, "data-action") || strings.Contains(body[strings.Index(body, "<main"):], "<form") {
		t.Error("a read-only viewer sees no backup or sees forms")
	}
}

// Each way a backup can have been copied has its own words in the table.
func TestMethodLabels(t *testing.T) {
	seen := map[string]string{}
	for _, m := range []string{"reflink", "copy", "rsync"} {
		l := methodLabel(m)
		if l == m || seen[l] != "" {
			t.Errorf("method %q is shown as %q (also used for %q)", m, l, seen[l])
		}
		seen[l] = m
	}
}
