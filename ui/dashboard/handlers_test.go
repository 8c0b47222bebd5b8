package dashboard

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
	"github.com/cairn-os/cairn/supervisor/service"
	"github.com/cairn-os/cairn/ui/layout"
)

type fakeService struct {
	info     engine.Info
	nodes    []engine.Node
	services []engine.ServiceStatus
	err      error
}

func (f *fakeService) Info(context.Context, engine.User) (engine.Info, error) { return f.info, f.err }
func (f *fakeService) Nodes(context.Context, engine.User) ([]engine.Node, error) {
	return f.nodes, nil
}
func (f *fakeService) Services(context.Context, engine.User) ([]engine.ServiceStatus, error) {
	return f.services, nil
}

func get(h *Handlers, header ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r = r.WithContext(layout.WithViewer(r.Context(), layout.Viewer{User: engine.User{Name: "alice"}}))
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.Show(rec, r)
	return rec
}

func TestDashboard(t *testing.T) {
	now := time.Date(2025, 11, 22, 12, 0, 0, 0, time.UTC)
	svc := &fakeService{
		info: engine.Info{
			Name: "lab", Version: "0.1.0", StartedAt: now.Add(-90 * time.Minute),
			NodesTotal: 2, NodesReady: 1, CPUsTotal: 12, MemoryBytesTotal: 48 << 30, MemoryFreeBytes: 12 << 30,
			Settings: []string{"No data disk found"},
		},
		nodes: []engine.Node{
			{ID: "admin", Name: "admin", State: engine.NodeReady},
			{ID: "n-2", Name: "n2", State: engine.NodeDown},
		},
		services: []engine.ServiceStatus{
			{Name: "virtlogd", State: service.StateRunning, PID: 40},
			{Name: "libvirtd", State: service.StateFailed, Restarts: 7, Message: "libvirtd: no KVM"},
			{Name: "exportfs", State: service.StateDone, LastExit: "exit 0"},
		},
	}
	h := New(svc, slog.New(slog.NewTextHandler(io.Discard, nil)))
	h.now = func() time.Time { return now }
	page := get(h).Body.String()
	for _, want := range []string{
		"Engine lab · Cairn 0.1.0 · up 1 h 30 min", "No data disk found", "1 down", "36 GiB used of 48 GiB",
		`value="75"`, "2<span class=\"unit\">/ 3 healthy", "1 needs attention", "libvirtd: no KVM", "badge-red", `<table id="nodes"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("dashboard lacks %q", want)
		}
	}
	if strings.Index(page, `data-service="libvirtd"`) > strings.Index(page, `data-service="virtlogd"`) {
		t.Error("services are not sorted by name")
	}

	frag := get(h, "HX-Request", "true", "HX-Target", "services").Body.String()
	if !strings.HasPrefix(frag, `<section class="panel" id="services"`) || strings.Contains(frag, "capacity") {
		t.Errorf("services fragment:\n%s", frag)
	}

	svc.err = errors.New("disk on fire")
	rec := get(h)
	if rec.Code != http.StatusInternalServerError || strings.Contains(rec.Body.String(), "disk on fire") {
		t.Errorf("engine failure: %d %q", rec.Code, rec.Body.String())
	}
}
