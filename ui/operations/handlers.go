// Package operations is the web console's view of the engine's long work: uploads'
// conversions, copies, backups, restores, shutdowns, migrations. GET /operations lists
// the viewer's recent operations, GET /operations/{id} shows one, POST
// /operations/{id}/cancel asks a running one to stop.
//
// Other areas embed Progress(op) wherever they start an operation:
//
//	@operations.Progress(op)
//
// It renders <div id="op-<id>" class="op" data-op-id data-op-state> with a <progress>
// bar, the operation's message and its end state, and a Cancel button while it runs
// (not for read-only viewers). While the operation runs the element polls GET
// /operations/{id} every second and replaces itself with the answer; once it has
// ended the answer carries no trigger, so the polling stops. The answer that first
// shows the end also carries the htmx event EndedEvent ("operation-ended"), which
// bubbles up to <body>: an area that must refresh itself when the work is done listens
// with hx-trigger="operation-ended from:body"; the event's detail has the operation's
// id, kind, state and "on" (what it worked on). The component's styles are in
// ui/static/servers.css.
package operations

import (
	"cmp"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/a-h/templ"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/ui/layout"
)

// Service is what the Operations area needs of the engine.
type Service interface {
	Operations(ctx context.Context, u engine.User) ([]engine.Operation, error)
	Operation(ctx context.Context, u engine.User, id string) (engine.Operation, error)
	CancelOperation(ctx context.Context, u engine.User, id string) (engine.Operation, error)
	Users(ctx context.Context, u engine.User) ([]engine.User, error)
}

// EndedEvent is the htmx event the answer to a Progress poll triggers when it shows
// the operation ended; it bubbles up to <body>.
const EndedEvent = "operation-ended"

// listLimit is how many operations the list shows, newest first.
const listLimit = 50

// Handlers serve the Operations area.
type Handlers struct {
	svc    Service
	logger *slog.Logger
	now    func() time.Time
}

// New returns the Operations area's handlers.
func New(svc Service, logger *slog.Logger) *Handlers {
	return &Handlers{svc: svc, logger: logger.With("area", "operations"), now: time.Now}
}

// List serves GET /operations: the viewer's latest operations (admins: everyone's),
// each with its live progress.
func (h *Handlers) List(w http.ResponseWriter, r *http.Request) {
	v, _ := layout.ViewerFrom(r.Context())
	ops, err := h.svc.Operations(r.Context(), v.User)
	if err != nil {
		h.fail(w, r, "list operations", err)
		return
	}
	ops = Sorted(ops)
	l := listView{total: len(ops), running: countRunning(ops), now: h.now(), admin: v.User.Role == engine.RoleAdmin}
	l.ops = ops[:min(len(ops), listLimit)]
	if l.admin {
		l.owners = h.ownerNames(r.Context(), v.User)
	}
	layout.Render(w, r, h.logger, http.StatusOK, layout.Page{
		Title:   "Operations",
		Section: "operations",
		Content: listPage(l),
	})
}

// Show serves GET /operations/{id}: the operation's page, or for the poll of its
// Progress element only that element.
func (h *Handlers) Show(w http.ResponseWriter, r *http.Request) {
	v, _ := layout.ViewerFrom(r.Context())
	op, err := h.svc.Operation(r.Context(), v.User, r.PathValue("id"))
	if err != nil {
		h.fail(w, r, "read operation", err)
		return
	}
	h.render(w, r, http.StatusOK, op, "")
}

// Cancel serves POST /operations/{id}/cancel. From htmx (the Progress element's
// button) it answers with the element, which then shows how the operation ended, or
// why it could not be canceled; from a plain form it goes back to the operation's page.
func (h *Handlers) Cancel(w http.ResponseWriter, r *http.Request) {
	v, _ := layout.ViewerFrom(r.Context())
	id := r.PathValue("id")
	op, err := h.svc.CancelOperation(r.Context(), v.User, id)
	if err == nil {
		if !layout.IsHTMX(r) {
			http.Redirect(w, r, Path(op.ID), http.StatusSeeOther)
			return
		}
		h.render(w, r, http.StatusOK, op, "")
		return
	}
	status := layout.StatusOf(err)
	if !layout.IsHTMX(r) || status == http.StatusNotFound || status == http.StatusInternalServerError {
		h.fail(w, r, "cancel operation", err)
		return
	}
	// htmx does not swap error answers: show the engine's reason in the element.
	cur, rerr := h.svc.Operation(r.Context(), v.User, id)
	if rerr != nil {
		h.fail(w, r, "read operation", rerr)
		return
	}
	h.render(w, r, http.StatusOK, cur, err.Error())
}

// render answers with op's page; an htmx request for op's element gets only the
// element, with EndedEvent once the operation has ended.
func (h *Handlers) render(w http.ResponseWriter, r *http.Request, status int, op engine.Operation, problem string) {
	elem := ElementID(op.ID)
	if layout.IsHTMX(r) && r.Header.Get("HX-Target") == elem && op.State != engine.OpRunning {
		// Not "target" in the detail: htmx reads that key as the selector of the
		// element to trigger the event on.
		b, _ := json.Marshal(map[string]any{EndedEvent: map[string]string{"id": op.ID, "kind": op.Kind, "state": string(op.State), "on": op.Target}})
		w.Header().Set("HX-Trigger", string(b))
	}
	layout.Render(w, r, h.logger, status, layout.Page{
		Title:     Title(op),
		Section:   "operations",
		Content:   detailPage(op, progress(op, problem)),
		Fragments: map[string]templ.Component{elem: progress(op, problem)},
	})
}

// ownerNames maps user IDs to names for an admin; without them the pages show IDs.
func (h *Handlers) ownerNames(ctx context.Context, u engine.User) map[string]string {
	return layout.UserNames(ctx, h.svc, layout.Viewer{User: u})
}

// fail answers an engine error with the page a person can act on; the engine's own
// message says what to do.
func (h *Handlers) fail(w http.ResponseWriter, r *http.Request, op string, err error) {
	status := layout.StatusOf(err)
	switch status {
	case http.StatusNotFound:
		layout.Error(w, r, h.logger, status,
			"There is no operation "+r.PathValue("id")+". The engine keeps the latest 500; the Operations page lists those there are.")
	case http.StatusInternalServerError:
		h.logger.Error(op, "path", r.URL.Path, "err", err)
		layout.Error(w, r, h.logger, status,
			"The engine could not read its operations. Reload in a moment; the engine's log says what failed.")
	default:
		layout.Error(w, r, h.logger, status, err.Error())
	}
}

// Sorted returns a copy of ops, newest first (then by ID, so that rows keep their
// places).
func Sorted(ops []engine.Operation) []engine.Operation {
	out := slices.Clone(ops)
	slices.SortFunc(out, func(a, b engine.Operation) int {
		return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	return out
}

func countRunning(ops []engine.Operation) int {
	n := 0
	for _, op := range ops {
		if op.State == engine.OpRunning {
			n++
		}
	}
	return n
}

// Path is the path of an operation's page, which its Progress element polls.
func Path(id string) string {
	return "/operations/" + url.PathEscape(id)
}

// cancelPath is where an operation's Cancel button posts.
func cancelPath(id string) string {
	return Path(id) + "/cancel"
}

// ElementID is the id of an operation's Progress element: "op-" and the
// operation's ID.
func ElementID(id string) string {
	return "op-" + id
}
