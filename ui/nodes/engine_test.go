package nodes

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/cairn-os/cairn/internal/enginetest"
	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/ui/layout"
)

// post sends a node page's form as u through the page's routes.
func post(t *testing.T, e *engine.Engine, u engine.User, target string, form url.Values) *httptest.ResponseRecorder {
	t.Helper()
	h := New(e, slog.New(slog.NewTextHandler(io.Discard, nil)))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /nodes/{id}", h.Show)
	mux.HandleFunc("POST /nodes/{id}/rename", h.Rename)
	mux.HandleFunc("POST /nodes/{id}/maintenance", h.Maintenance)
	method := http.MethodPost
	if form == nil {
		method = http.MethodGet
	}
	r := httptest.NewRequest(method, target, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r = r.WithContext(layout.WithViewer(r.Context(), layout.Viewer{User: u, Session: engine.Session{CSRF: "tok"}}))
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, r)
	return rec
}

// An admin renames a node and puts it into maintenance and out again from its page;
// a user sees no forms and is refused; a bad or taken name is the engine's message.
func TestNodePageRenameAndMaintenance(t *testing.T) {
	ctx := context.Background()
	e, admin := enginetest.Open(t)
	bob := enginetest.User(t, e, admin, "bob", engine.RoleUser)
	if _, err := e.RegisterLocalNode(ctx, engine.JoinRequest{Name: "cairn-admin", MAC: "52:54:00:00:00:01", Address: "10.0.0.1", CPUs: 2, MemoryBytes: 4 << 30}); err != nil {
		t.Fatal(err)
	}
	page := "/nodes/" + engine.LocalNodeID

	if body := post(t, e, admin, page, nil).Body.String(); !strings.Contains(body, `data-action="rename"`) || !strings.Contains(body, `data-action="maintenance"`) {
		t.Fatalf("the admin's node page has no rename and maintenance forms:\n%s", body)
	}
	if body := post(t, e, bob, page, nil).Body.String(); strings.Contains(body, `data-action="rename"`) || strings.Contains(body, `data-action="maintenance"`) {
		t.Error("a user's node page shows the admin's forms")
	}
	if rec := post(t, e, bob, page+"/rename", url.Values{"name": {"mine"}}); rec.Code != http.StatusForbidden {
		t.Errorf("a user renames a node: %d, want 403", rec.Code)
	}

	rec := post(t, e, admin, page+"/rename", url.Values{"name": {"has space"}})
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `id="action-error"`) || !strings.Contains(rec.Body.String(), "letters, digits") {
		t.Errorf("a bad name: %d\n%s", rec.Code, rec.Body.String())
	}
	rec = post(t, e, admin, page+"/rename", url.Values{"name": {"rack1-admin"}})
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != page+"?done=renamed" {
		t.Fatalf("rename: %d %q\n%s", rec.Code, rec.Header().Get("Location"), rec.Body.String())
	}
	if n, _ := e.Node(ctx, admin, engine.LocalNodeID); n.Name != "rack1-admin" {
		t.Errorf("after the rename the node is named %q", n.Name)
	}
	if body := post(t, e, admin, page+"?done=renamed", nil).Body.String(); !strings.Contains(body, "<h1>rack1-admin</h1>") || !strings.Contains(body, "The node was renamed.") {
		t.Errorf("the page after the rename:\n%s", body)
	}

	if rec := post(t, e, admin, page+"/maintenance", url.Values{"on": {"yes"}}); rec.Code != http.StatusSeeOther {
		t.Fatalf("maintenance on: %d\n%s", rec.Code, rec.Body.String())
	}
	if n, _ := e.Node(ctx, admin, engine.LocalNodeID); n.State != engine.NodeMaintenance {
		t.Errorf("after maintenance on the node is %s", n.State)
	}
	if body := post(t, e, admin, page, nil).Body.String(); !strings.Contains(body, "End maintenance") {
		t.Error("a node in maintenance offers no way out of it")
	}
	if rec := post(t, e, admin, page+"/maintenance", url.Values{"on": {"no"}}); rec.Code != http.StatusSeeOther {
		t.Fatalf("maintenance off: %d\n%s", rec.Code, rec.Body.String())
	}
	if n, _ := e.Node(ctx, admin, engine.LocalNodeID); n.State == engine.NodeMaintenance {
		t.Error("the node is still in maintenance")
	}
	if rec := post(t, e, admin, "/nodes/n-nothere/rename", url.Values{"name": {"x"}}); rec.Code != http.StatusNotFound {
		t.Errorf("rename an unknown node: %d, want 404", rec.Code)
	}
}
