// Package dashboard is the web console's front page: the engine's capacity, its nodes,
// the system services the supervisor runs, and how to reach the engine.
package dashboard

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/a-h/templ"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/supervisor/service"
	"github.com/cairn-os/cairn/ui/layout"
	"github.com/cairn-os/cairn/ui/nodes"
)

// Service is what the dashboard needs of the engine.
type Service interface {
	Info(ctx context.Context, u engine.User) (engine.Info, error)
	Nodes(ctx context.Context, u engine.User) ([]engine.Node, error)
	Services(ctx context.Context, u engine.User) ([]engine.ServiceStatus, error)
}

// Handlers serve the dashboard.
type Handlers struct {
	svc    Service
	logger *slog.Logger
	now    func() time.Time
}

// New returns the dashboard's handlers.
func New(svc Service, logger *slog.Logger) *Handlers {
	return &Handlers{svc: svc, logger: logger.With("area", "dashboard"), now: time.Now}
}

// view is what the dashboard shows, read from the engine for one request.
type view struct {
	info     engine.Info
	nodes    []engine.Node
	services []engine.ServiceStatus
	now      time.Time
}

// Show serves GET /: the whole dashboard, or for htmx's polls only the "capacity" or
// "services" section.
func (h *Handlers) Show(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	v, _ := layout.ViewerFrom(ctx)
	var d view
	var err error
	if d.info, err = h.svc.Info(ctx, v.User); err != nil {
		h.fail(w, r, "read engine info", err)
		return
	}
	if d.nodes, err = h.svc.Nodes(ctx, v.User); err != nil {
		h.fail(w, r, "list nodes", err)
		return
	}
	if d.services, err = h.svc.Services(ctx, v.User); err != nil {
		h.fail(w, r, "list services", err)
		return
	}
	d.nodes = nodes.Sorted(d.nodes)
	d.services = slices.SortedFunc(slices.Values(d.services), func(a, b engine.ServiceStatus) int {
		return cmp.Compare(a.Name, b.Name)
	})
	d.now = h.now()
	capacity, services := capacityCards(d), servicesPanel(d)
	layout.Render(w, r, h.logger, http.StatusOK, layout.Page{
		Title:   "Dashboard",
		Section: "dashboard",
		Content: page(d, capacity, services),
		Fragments: map[string]templ.Component{
			"capacity": capacity,
			"services": services,
		},
	})
}

func (h *Handlers) fail(w http.ResponseWriter, r *http.Request, op string, err error) {
	if errors.Is(err, engine.ErrForbidden) {
		layout.Error(w, r, h.logger, http.StatusForbidden, "Your account may not see the engine's status. Ask an administrator.")
		return
	}
	h.logger.Error(op, "err", err)
	layout.Error(w, r, h.logger, http.StatusInternalServerError,
		"The engine could not report its status. Reload in a moment; the engine's log says what failed.")
}

// serviceTone is the badge colour of a service state.
func serviceTone(s service.State) string {
	switch s {
	case service.StateRunning, service.StateDone:
		return layout.ToneGreen
	case service.StateStarting:
		return layout.ToneBlue
	case service.StateBackoff:
		return layout.ToneAmber
	case service.StateFailed:
		return layout.ToneRed
	}
	return layout.ToneGray
}
