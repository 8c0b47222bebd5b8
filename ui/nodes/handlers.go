// Package nodes is the web console's Nodes area: the live table of the engine's
// compute nodes and each node's details (hardware, disks, NICs, libvirt).
package nodes

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/a-h/templ"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/ui/images"
	"github.com/cairn-os/cairn/ui/layout"
)

// Service is what the Nodes area needs of the engine.
type Service interface {
	Nodes(ctx context.Context, u engine.User) ([]engine.Node, error)
	Node(ctx context.Context, u engine.User, id string) (engine.Node, error)
	UpdateNode(ctx context.Context, u engine.User, id string, upd engine.NodeUpdate) (engine.Node, error)
	SetNodeMaintenance(ctx context.Context, u engine.User, id string, on bool) (engine.Node, error)
}

// Handlers serve the Nodes area.
type Handlers struct {
	svc    Service
	logger *slog.Logger
	now    func() time.Time
}

// New returns the Nodes area's handlers.
func New(svc Service, logger *slog.Logger) *Handlers {
	return &Handlers{svc: svc, logger: logger.With("area", "nodes"), now: time.Now}
}

// List serves GET /nodes and GET /nodes/table: the page, or for htmx's poll only the
// <table id="nodes">.
func (h *Handlers) List(w http.ResponseWriter, r *http.Request) {
	v, _ := layout.ViewerFrom(r.Context())
	list, err := h.svc.Nodes(r.Context(), v.User)
	if err != nil {
		h.fail(w, r, "list nodes", err)
		return
	}
	list = Sorted(list)
	table := Table(list, h.now())
	layout.Render(w, r, h.logger, http.StatusOK, layout.Page{
		Title:     "Nodes",
		Section:   "nodes",
		Content:   listPage(list, table),
		Fragments: map[string]templ.Component{"nodes": table},
	})
}

// Show serves GET /nodes/{id}: one node's details; its summary cards poll for
// themselves as the fragment "node-summary".
func (h *Handlers) Show(w http.ResponseWriter, r *http.Request) {
	h.show(w, r, http.StatusOK, "")
}

func (h *Handlers) show(w http.ResponseWriter, r *http.Request, status int, alert string) {
	v, _ := layout.ViewerFrom(r.Context())
	id := r.PathValue("id")
	n, err := h.svc.Node(r.Context(), v.User, id)
	if err != nil {
		h.fail(w, r, "read node", err)
		return
	}
	summary := summaryCards(n, h.now())
	dv := detailView{Node: n, Summary: summary, Admin: v.User.Role == engine.RoleAdmin, Alert: alert,
		Done: doneMessages[r.URL.Query().Get("done")]}
	layout.Render(w, r, h.logger, status, layout.Page{
		Title:     n.Name,
		Section:   "nodes",
		Content:   detailPage(dv),
		Fragments: map[string]templ.Component{"node-summary": summary},
	})
}

// Messages after an action went through, by the "done" query parameter.
var doneMessages = map[string]string{
	"renamed":     "The node was renamed.",
	"maintenance": "The node is in maintenance.",
	"ready":       "The node is out of maintenance.",
}

// Rename serves POST /nodes/{id}/rename (admins): name.
func (h *Handlers) Rename(w http.ResponseWriter, r *http.Request) {
	h.action(w, r, "rename node", func(ctx context.Context, u engine.User, f url.Values) (string, error) {
		name := f.Get("name")
		if _, err := h.svc.UpdateNode(ctx, u, r.PathValue("id"), engine.NodeUpdate{Name: &name}); err != nil {
			return "", err
		}
		return "renamed", nil
	})
}

// Maintenance serves POST /nodes/{id}/maintenance (admins): on=yes puts the node
// into maintenance, on=no takes it out.
func (h *Handlers) Maintenance(w http.ResponseWriter, r *http.Request) {
	h.action(w, r, "set node maintenance", func(ctx context.Context, u engine.User, f url.Values) (string, error) {
		on := f.Get("on") == "yes"
		if _, err := h.svc.SetNodeMaintenance(ctx, u, r.PathValue("id"), on); err != nil {
			return "", err
		}
		if on {
			return "maintenance", nil
		}
		return "ready", nil
	})
}

// action runs one of a node page's forms; do returns the "done" message's key. A
// refusal shows the node's page again with the engine's message.
func (h *Handlers) action(w http.ResponseWriter, r *http.Request, op string, do func(ctx context.Context, u engine.User, f url.Values) (string, error)) {
	v, _ := layout.ViewerFrom(r.Context())
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		layout.Error(w, r, h.logger, http.StatusBadRequest, "The form could not be read. Reload the page and try again.")
		return
	}
	done, err := do(r.Context(), v.User, r.PostForm)
	if err != nil {
		if errors.Is(err, engine.ErrNotFound) {
			h.fail(w, r, op, err)
			return
		}
		status, msg := images.Refuse(h.logger, r, op, err)
		h.show(w, r, status, msg)
		return
	}
	http.Redirect(w, r, nodeURL(r.PathValue("id"))+"?done="+done, http.StatusSeeOther)
}

// fail answers an engine error with the page a person can act on.
func (h *Handlers) fail(w http.ResponseWriter, r *http.Request, op string, err error) {
	switch {
	case errors.Is(err, engine.ErrNotFound):
		layout.Error(w, r, h.logger, http.StatusNotFound,
			"There is no node "+r.PathValue("id")+". It may have left the engine; the Nodes page lists those there are.")
	case errors.Is(err, engine.ErrForbidden):
		layout.Error(w, r, h.logger, http.StatusForbidden, "Your account may not see this. Ask an administrator.")
	default:
		h.logger.Error(op, "path", r.URL.Path, "err", err)
		layout.Error(w, r, h.logger, http.StatusInternalServerError,
			"The engine could not read its nodes. Reload in a moment; the engine's log says what failed.")
	}
}

// Sorted returns a copy of list ordered by name, then ID, so that rows keep their
// places between polls.
func Sorted(list []engine.Node) []engine.Node {
	out := slices.Clone(list)
	slices.SortFunc(out, func(a, b engine.Node) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// StateTone is the badge colour of a node state: ready green, joining blue,
// maintenance amber, down red.
func StateTone(s engine.NodeState) string {
	switch s {
	case engine.NodeReady:
		return layout.ToneGreen
	case engine.NodeJoining:
		return layout.ToneBlue
	case engine.NodeMaintenance:
		return layout.ToneAmber
	case engine.NodeDown:
		return layout.ToneRed
	}
	return layout.ToneGray
}

// nodeURL is the path of a node's page.
func nodeURL(id string) string {
	return "/nodes/" + url.PathEscape(id)
}
