package operations

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/ui/layout"
)

// *engine.Engine is what the console passes in; keep the interface in step with it.
var _ Service = (*engine.Engine)(nil)

// fakeEngine holds operations as the engine does: each user sees their own, admins all.
type fakeEngine struct {
	mu  sync.Mutex
	ops []engine.Operation
}

func (f *fakeEngine) Operations(_ context.Context, u engine.User) ([]engine.Operation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []engine.Operation
	for _, op := range f.ops {
		if u.Role == engine.RoleAdmin || op.Owner == u.ID {
			out = append(out, op)
		}
	}
	return out, nil
}

func (f *fakeEngine) Operation(_ context.Context, u engine.User, id string) (engine.Operation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, op := range f.ops {
		if op.ID == id && (u.Role == engine.RoleAdmin || op.Owner == u.ID) {
			return op, nil
		}
	}
	return engine.Operation{}, fmt.Errorf("operation %q: %w", id, engine.ErrNotFound)
}

func (f *fakeEngine) CancelOperation(ctx context.Context, u engine.User, id string) (engine.Operation, error) {
	if _, err := f.Operation(ctx, u, id); err != nil {
		return engine.Operation{}, err
	}
	if u.Role == engine.RoleReadonly {
		return engine.Operation{}, fmt.Errorf("cancel operation: %w: readonly users can only look; ask an admin", engine.ErrForbidden)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, op := range f.ops {
		if op.ID != id {
			continue
		}
		if op.State != engine.OpRunning {
			return engine.Operation{}, fmt.Errorf("cancel operation %s: %w: it has already ended (%s)", id, engine.ErrInvalid, op.State)
		}
		f.ops[i].State, f.ops[i].Error, f.ops[i].EndedAt = engine.OpCanceled, "canceled", time.Now()
		return f.ops[i], nil
	}
	return engine.Operation{}, engine.ErrNotFound
}

func (f *fakeEngine) Users(context.Context, engine.User) ([]engine.User, error) {
	return []engine.User{alice, bob, root}, nil
}

func (f *fakeEngine) set(id string, fn func(op *engine.Operation)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.ops {
		if f.ops[i].ID == id {
			fn(&f.ops[i])
		}
	}
}

var (
	alice  = engine.User{ID: "u-alice", Name: "alice", Role: engine.RoleUser}
	bob    = engine.User{ID: "u-bob", Name: "bob", Role: engine.RoleUser}
	root   = engine.User{ID: "u-root", Name: "root", Role: engine.RoleAdmin}
	reader = engine.User{ID: "u-alice", Name: "alice", Role: engine.RoleReadonly}
)

var t0 = time.Date(2025, 11, 22, 12, 0, 0, 0, time.UTC)

func newFake() *fakeEngine {
	return &fakeEngine{ops: []engine.Operation{
		{ID: "op-conv", Owner: alice.ID, Kind: "convert", Target: "i-src", State: engine.OpRunning, Progress: 0.42, Message: "converting to qcow2", CreatedAt: t0.Add(-time.Minute)},
		{ID: "op-shut", Owner: alice.ID, Kind: "shutdown", Target: "s-1", State: engine.OpRunning, Message: "waiting for the guest to power off", CreatedAt: t0.Add(-10 * time.Second)},
		{ID: "op-old", Owner: alice.ID, Kind: "backup", Target: "i-db", State: engine.OpSucceeded, Progress: 1, Result: "b-1", CreatedAt: t0.Add(-time.Hour), EndedAt: t0.Add(-59 * time.Minute)},
		{ID: "op-bob", Owner: bob.ID, Kind: "copy", Target: "i-bob", State: engine.OpFailed, Error: "copy image \"i-bob\": pool 0 is full; free some space", CreatedAt: t0.Add(-2 * time.Hour)},
	}}
}

func serve(f *fakeEngine, u engine.User, method, target string, header ...string) *httptest.ResponseRecorder {
	h := New(f, slog.New(slog.NewTextHandler(io.Discard, nil)))
	h.now = func() time.Time { return t0 }
	mux := http.NewServeMux()
	mux.HandleFunc("GET /operations", h.List)
	mux.HandleFunc("GET /operations/{id}", h.Show)
	mux.HandleFunc("POST /operations/{id}/cancel", h.Cancel)
	r := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	r = r.WithContext(layout.WithViewer(r.Context(), layout.Viewer{User: u, Session: engine.Session{CSRF: "tok"}}))
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, r)
	return rec
}

func TestRunningOperationPollsAndCanBeCanceled(t *testing.T) {
	f := newFake()
	rec := serve(f, alice, "GET", "/operations/op-conv")
	page := rec.Body.String()
	for _, want := range []string{
		`<div id="op-op-conv" class="op op-running" data-op-id="op-conv" data-op-state="running" hx-get="/operations/op-conv" hx-trigger="every 1s" hx-target="this" hx-swap="outerHTML">`,
		`<progress class="op-bar" max="100" value="42"`, "Converting to qcow2", "42 %",
		`action="/operations/op-conv/cancel" hx-post="/operations/op-conv/cancel" hx-target="#op-op-conv"`, `name="csrf" value="tok"`,
		`href="/images/i-src"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("running operation's page lacks %q", want)
		}
	}
	// A shutdown has no fraction to show: the bar is indeterminate.
	shut := serve(f, alice, "GET", "/operations/op-shut").Body.String()
	if !strings.Contains(shut, `<progress class="op-bar" max="100" aria-label="Shutdown of s-1: under way"></progress>`) {
		t.Errorf("shutdown's bar is not indeterminate:\n%s", shut)
	}

	// The poll gets only the element, and no event while it runs.
	rec = serve(f, alice, "GET", "/operations/op-conv", "HX-Request", "true", "HX-Target", "op-op-conv")
	if !strings.HasPrefix(rec.Body.String(), `<div id="op-op-conv"`) || rec.Header().Get("HX-Trigger") != "" {
		t.Errorf("poll of a running operation: trigger %q, body:\n%s", rec.Header().Get("HX-Trigger"), rec.Body.String())
	}
}

func TestEndedOperationStopsPollingAndAnnouncesItsEnd(t *testing.T) {
	f := newFake()
	f.set("op-conv", func(op *engine.Operation) {
		op.State, op.Progress, op.Error = engine.OpFailed, 0.42, "convert image \"i-src\": qemu-img: Could not open 'x': No such file or directory"
	})
	rec := serve(f, alice, "GET", "/operations/op-conv", "HX-Request", "true", "HX-Target", "op-op-conv")
	frag := rec.Body.String()
	if strings.Contains(frag, "hx-get") || strings.Contains(frag, "hx-trigger") || strings.Contains(frag, ">Cancel<") {
		t.Errorf("an ended operation still polls or offers Cancel:\n%s", frag)
	}
	for _, want := range []string{`data-op-state="failed"`, "badge-red", "qemu-img: Could not open"} {
		if !strings.Contains(frag, want) {
			t.Errorf("failed operation lacks %q:\n%s", want, frag)
		}
	}
	var ev map[string]map[string]string
	if err := json.Unmarshal([]byte(rec.Header().Get("HX-Trigger")), &ev); err != nil || ev[EndedEvent]["id"] != "op-conv" || ev[EndedEvent]["state"] != "failed" {
		t.Errorf("HX-Trigger %q: want %s with the operation's id and state", rec.Header().Get("HX-Trigger"), EndedEvent)
	}
	if _, ok := ev[EndedEvent]["target"]; ok {
		t.Errorf("the event's detail has \"target\", which htmx reads as the selector to trigger it on")
	}
	// A whole page is not an htmx swap: no event.
	if got := serve(f, alice, "GET", "/operations/op-conv").Header().Get("HX-Trigger"); got != "" {
		t.Errorf("full page triggers %q", got)
	}
}

func TestCancel(t *testing.T) {
	f := newFake()
	rec := serve(f, alice, "POST", "/operations/op-conv/cancel", "HX-Request", "true", "HX-Target", "op-op-conv")
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `data-op-state="canceled"`) || !strings.Contains(rec.Header().Get("HX-Trigger"), EndedEvent) {
		t.Errorf("cancel from htmx: %d, trigger %q:\n%s", rec.Code, rec.Header().Get("HX-Trigger"), rec.Body.String())
	}
	// Again: the engine's reason shows in the element (htmx swaps only 2xx answers).
	rec = serve(f, alice, "POST", "/operations/op-conv/cancel", "HX-Request", "true", "HX-Target", "op-op-conv")
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "it has already ended (canceled)") {
		t.Errorf("second cancel: %d:\n%s", rec.Code, rec.Body.String())
	}
	// A plain form goes back to the operation's page.
	rec = serve(f, alice, "POST", "/operations/op-shut/cancel")
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/operations/op-shut" {
		t.Errorf("cancel from a form: %d to %q", rec.Code, rec.Header().Get("Location"))
	}
	// Someone else's operation does not exist for alice.
	if rec := serve(f, alice, "POST", "/operations/op-bob/cancel"); rec.Code != http.StatusNotFound {
		t.Errorf("alice cancels bob's operation: %d", rec.Code)
	}
	if rec := serve(f, alice, "GET", "/operations/op-bob"); rec.Code != http.StatusNotFound || strings.Contains(rec.Body.String(), "i-bob") {
		t.Errorf("alice reads bob's operation: %d", rec.Code)
	}
}

func TestReadonlyViewerGetsNoCancel(t *testing.T) {
	f := newFake()
	for _, path := range []string{"/operations", "/operations/op-conv"} {
		page := serve(f, reader, "GET", path).Body.String()
		if strings.Contains(page, "/cancel") || !strings.Contains(page, `data-op-state="running"`) {
			t.Errorf("%s for a read-only viewer:\n%s", path, page)
		}
	}
	if rec := serve(f, reader, "POST", "/operations/op-conv/cancel"); rec.Code != http.StatusForbidden {
		t.Errorf("read-only cancel: %d", rec.Code)
	}
}

func TestListIsNewestFirstWithBars(t *testing.T) {
	f := newFake()
	page := serve(f, alice, "GET", "/operations").Body.String()
	shut, conv, old := strings.Index(page, `<tr data-op-id="op-shut">`), strings.Index(page, `<tr data-op-id="op-conv">`), strings.Index(page, `<tr data-op-id="op-old">`)
	if shut < 0 || conv < shut || old < conv || strings.Contains(page, "op-bob") {
		t.Errorf("alice's list is not her operations newest first (%d %d %d):\n%s", shut, conv, old, page)
	}
	for _, want := range []string{"2 running · 3 in all", "10 s ago", `class="op op-succeeded"`, "Done.", `href="/servers/s-1"`} {
		if !strings.Contains(page, want) {
			t.Errorf("list lacks %q", want)
		}
	}
	admin := serve(f, root, "GET", "/operations").Body.String()
	if !strings.Contains(admin, "<th>Owner</th>") || !strings.Contains(admin, "<td>bob</td>") || !strings.Contains(admin, "pool 0 is full") {
		t.Errorf("admin's list lacks bob's failed copy with its owner")
	}
	if page := serve(&fakeEngine{}, alice, "GET", "/operations").Body.String(); !strings.Contains(page, "No operations yet") {
		t.Errorf("empty list:\n%s", page)
	}
}
