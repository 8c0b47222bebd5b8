package nodes

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/ui/layout"
)

type fakeService struct {
	nodes []engine.Node
	err   error
}

func (f *fakeService) Nodes(context.Context, engine.User) ([]engine.Node, error) {
	return f.nodes, f.err
}

func (f *fakeService) Node(_ context.Context, _ engine.User, id string) (engine.Node, error) {
	if f.err != nil {
		return engine.Node{}, f.err
	}
	for _, n := range f.nodes {
		if n.ID == id {
			return n, nil
		}
	}
	return engine.Node{}, engine.ErrNotFound
}

// The page's forms are tested against the real engine (engine_test.go).
func (f *fakeService) UpdateNode(context.Context, engine.User, string, engine.NodeUpdate) (engine.Node, error) {
	return engine.Node{}, errors.New("not in this fake")
}

func (f *fakeService) SetNodeMaintenance(context.Context, engine.User, string, bool) (engine.Node, error) {
	return engine.Node{}, errors.New("not in this fake")
}

func serve(h http.HandlerFunc, pattern, target string, header ...string) *httptest.ResponseRecorder {
	mux := http.NewServeMux()
	mux.HandleFunc(pattern, h)
	r := httptest.NewRequest(http.MethodGet, target, nil)
	r = r.WithContext(layout.WithViewer(r.Context(), layout.Viewer{User: engine.User{Name: "alice"}}))
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, r)
	return rec
}

func newHandlers(svc Service, now time.Time) *Handlers {
	h := New(svc, slog.New(slog.NewTextHandler(io.Discard, nil)))
	h.now = func() time.Time { return now }
	return h
}

func TestTableRowsAreSortedAndMarked(t *testing.T) {
	now := time.Date(2025, 11, 22, 12, 0, 0, 0, time.UTC)
	svc := &fakeService{nodes: []engine.Node{
		{ID: "n-2", Name: "zeta", State: engine.NodeJoining, CPUs: 1, LastSeen: now.Add(-3 * time.Second)},
		{ID: "n-1", Name: "alpha", State: engine.NodeReady, CPUs: 16, MemoryBytes: 64 << 30, MemoryFreeBytes: 16 << 30},
	}}
	rec := serve(newHandlers(svc, now).List, "GET /nodes/table", "/nodes/table", "HX-Request", "true", "HX-Target", "nodes")
	got := rec.Body.String()
	a, z := strings.Index(got, `data-node-id="n-1" data-state="ready"`), strings.Index(got, `data-node-id="n-2" data-state="joining"`)
	if a < 0 || z < 0 || a > z {
		t.Errorf("rows missing or out of order (alpha at %d, zeta at %d):\n%s", a, z, got)
	}
	for _, want := range []string{"badge-green", "badge-blue", "16 vCPUs", "1 vCPU<", "48 GiB used", "of 64 GiB", "3 s ago", `value="75"`} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q", want)
		}
	}
}

func TestStateTones(t *testing.T) {
	for s, want := range map[engine.NodeState]string{
		engine.NodeReady: layout.ToneGreen, engine.NodeJoining: layout.ToneBlue,
		engine.NodeMaintenance: layout.ToneAmber, engine.NodeDown: layout.ToneRed, "weird": layout.ToneGray,
	} {
		if got := StateTone(s); got != want {
			t.Errorf("StateTone(%s) = %s, want %s", s, got, want)
		}
	}
}

func TestShowSummaryFragmentAndErrors(t *testing.T) {
	svc := &fakeService{nodes: []engine.Node{{ID: "n-1", Name: "alpha", State: engine.NodeDown, CPUs: 2}}}
	h := newHandlers(svc, time.Now())
	frag := serve(h.Show, "GET /nodes/{id}", "/nodes/n-1", "HX-Request", "true", "HX-Target", "node-summary").Body.String()
	if !strings.HasPrefix(frag, `<section id="node-summary"`) || strings.Contains(frag, "<html") || !strings.Contains(frag, `hx-get="/nodes/n-1"`) {
		t.Errorf("summary fragment:\n%s", frag)
	}
	if rec := serve(h.Show, "GET /nodes/{id}", "/nodes/n-9"); rec.Code != http.StatusNotFound {
		t.Errorf("unknown node: %d", rec.Code)
	}
	svc.err = errors.New("bolt: database not open")
	rec := serve(h.List, "GET /nodes", "/nodes")
	if rec.Code != http.StatusInternalServerError || strings.Contains(rec.Body.String(), "bolt") {
		t.Errorf("engine failure: %d, leaks the cause: %q", rec.Code, rec.Body.String())
	}
	svc.err = engine.ErrForbidden
	if rec := serve(h.Show, "GET /nodes/{id}", "/nodes/n-1"); rec.Code != http.StatusForbidden {
		t.Errorf("forbidden: %d", rec.Code)
	}
}
