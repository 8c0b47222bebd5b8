// Package servers is the web console's Servers area: the live table of the viewer's
// servers (admins: everyone's), the form that creates one from images or masters,
// and each server's page with its state, disks, CD-ROM and network interfaces (its
// connections, which the page attaches and detaches), and the actions its state
// allows — start, shut down (an operation whose progress the page shows, with "Force
// off" when the guest does not power off in time), force off, reboot, suspend and
// resume, migrate, delete.
//
// Every action is a plain form that posts (with the session's CSRF token) and comes
// back to the server's page, which shows the engine's message when the engine
// refused. The page keeps itself current: its state badge polls every few seconds,
// and the page body reloads when the state changes or an operation it shows ends.
package servers

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"time"

	"github.com/a-h/templ"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/ui/layout"
)

// Service is what the Servers area needs of the engine. *engine.Engine satisfies it.
type Service interface {
	Servers(ctx context.Context, u engine.User) ([]engine.Server, error)
	Server(ctx context.Context, u engine.User, id string) (engine.Server, error)
	CreateServer(ctx context.Context, u engine.User, req engine.ServerRequest) (engine.Server, error)
	UpdateServer(ctx context.Context, u engine.User, id string, upd engine.ServerUpdate) (engine.Server, error)
	StartServer(ctx context.Context, u engine.User, id string) (engine.Server, error)
	ShutdownServer(ctx context.Context, u engine.User, id string, timeout time.Duration) (engine.Operation, error)
	StopServer(ctx context.Context, u engine.User, id string) (engine.Server, error)
	RebootServer(ctx context.Context, u engine.User, id string) (engine.Server, error)
	SuspendServer(ctx context.Context, u engine.User, id string) (engine.Server, error)
	ResumeServer(ctx context.Context, u engine.User, id string) (engine.Server, error)
	MigrateServer(ctx context.Context, u engine.User, id, target string) (engine.Operation, error)
	DeleteServer(ctx context.Context, u engine.User, id string, deleteDisks bool) ([]string, error)
	AttachDisk(ctx context.Context, u engine.User, id string, req engine.ServerDiskRequest) (engine.Server, error)
	DetachDisk(ctx context.Context, u engine.User, id string, index int) (engine.Server, error)
	SetCDROM(ctx context.Context, u engine.User, id, image string) (engine.Server, error)
	Connections(ctx context.Context, u engine.User) ([]engine.Connection, error)
	AttachConnection(ctx context.Context, u engine.User, id, serverID string) (engine.Connection, error)
	DetachConnection(ctx context.Context, u engine.User, id string) (engine.Connection, error)
	Images(ctx context.Context, u engine.User) ([]engine.Image, error)
	Nodes(ctx context.Context, u engine.User) ([]engine.Node, error)
	Users(ctx context.Context, u engine.User) ([]engine.User, error)
	Operation(ctx context.Context, u engine.User, id string) (engine.Operation, error)
	Operations(ctx context.Context, u engine.User) ([]engine.Operation, error)
}

// Events the server's page listens for to reload its body.
const (
	// changedEvent is triggered by the answer to the state badge's poll when the
	// server's state or node differs from what the page shows.
	changedEvent = "server-changed"
)

// Element ids of the server page's fragments.
const (
	fragmentStatus = "server-status"
	fragmentBody   = "server"
	fragmentTable  = "servers"
)

// Handlers serve the Servers area.
type Handlers struct {
	svc    Service
	logger *slog.Logger
	now    func() time.Time
}

// New returns the Servers area's handlers.
func New(svc Service, logger *slog.Logger) *Handlers {
	return &Handlers{svc: svc, logger: logger.With("area", "servers"), now: time.Now}
}

// List serves GET /servers and GET /servers/table: the page, or for htmx's poll only
// the <table id="servers">.
func (h *Handlers) List(w http.ResponseWriter, r *http.Request) {
	l, err := h.listView(r)
	if err != nil {
		h.fail(w, r, "list servers", err)
		return
	}
	if name := r.URL.Query().Get("deleted"); nameRule.MatchString(name) {
		l.notice = "Server " + name + " was deleted."
	}
	h.renderList(w, r, http.StatusOK, l)
}

func (h *Handlers) listView(r *http.Request) (listView, error) {
	ctx := r.Context()
	v, _ := layout.ViewerFrom(ctx)
	list, err := h.svc.Servers(ctx, v.User)
	if err != nil {
		return listView{}, err
	}
	l := listView{
		servers:   Sorted(list),
		admin:     v.User.Role == engine.RoleAdmin,
		canCreate: v.User.Role != engine.RoleReadonly,
		nodes:     h.nodeNames(ctx, v.User),
	}
	if l.admin {
		l.owners = h.ownerNames(ctx, v.User)
	}
	return l, nil
}

func (h *Handlers) renderList(w http.ResponseWriter, r *http.Request, status int, l listView) {
	table := Table(l.servers, l.admin, l.owners, l.nodes)
	layout.Render(w, r, h.logger, status, layout.Page{
		Title:     "Servers",
		Section:   "servers",
		Content:   listPage(l, table),
		Fragments: map[string]templ.Component{fragmentTable: table},
	})
}

// Show serves GET /servers/{id}: the server's page. htmx asks for two parts of it:
// the state badge ("server-status", polled; its answer triggers server-changed when
// the state moved on) and the page body ("server", reloaded on that event and when
// an operation it shows ends). ?op= names an operation to show on the page.
func (h *Handlers) Show(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	v, _ := layout.ViewerFrom(ctx)
	s, err := h.svc.Server(ctx, v.User, r.PathValue("id"))
	if err != nil {
		h.fail(w, r, "read server", err)
		return
	}
	if layout.IsHTMX(r) && r.Header.Get("HX-Target") == fragmentStatus {
		// The poll: only the badge, and the event when the page is out of date.
		if r.URL.Query().Get("seen") != seenKey(s) {
			w.Header().Set("HX-Trigger", changedEvent)
		}
		layout.Render(w, r, h.logger, http.StatusOK, layout.Page{
			Title:     s.Name,
			Section:   "servers",
			Content:   statusBadge(s),
			Fragments: map[string]templ.Component{fragmentStatus: statusBadge(s)},
		})
		return
	}
	h.renderDetail(w, r, http.StatusOK, s, r.URL.Query().Get("op"), "")
}

// renderDetail answers with s's page; problem is the engine's answer to an action
// that did not go through, shown above the actions.
func (h *Handlers) renderDetail(w http.ResponseWriter, r *http.Request, status int, s engine.Server, opID, problem string) {
	d := h.detailView(r.Context(), s, opID)
	d.problem = problem
	h.renderView(w, r, status, d)
}

// renderView answers with the server page d.
func (h *Handlers) renderView(w http.ResponseWriter, r *http.Request, status int, d detailView) {
	s := d.s
	body := serverBody(d)
	layout.Render(w, r, h.logger, status, layout.Page{
		Title:     s.Name,
		Section:   "servers",
		Content:   detailPage(d, body),
		Fragments: map[string]templ.Component{fragmentBody: body, fragmentStatus: statusBadge(s)},
	})
}

// detailView reads what the server's page shows besides the server. What cannot be
// read is left out (the page still shows the server) and logged.
func (h *Handlers) detailView(ctx context.Context, s engine.Server, opID string) detailView {
	v, _ := layout.ViewerFrom(ctx)
	d := detailView{
		s:         s,
		admin:     v.User.Role == engine.RoleAdmin,
		canChange: v.User.Role != engine.RoleReadonly,
		now:       h.now(),
		images:    map[string]engine.Image{},
		nodes:     map[string]engine.Node{},
	}
	if d.admin {
		d.owner = s.Owner
		if names := h.ownerNames(ctx, v.User); names[s.Owner] != "" {
			d.owner = names[s.Owner]
		}
	}
	if images, err := h.svc.Images(ctx, v.User); err != nil {
		h.logger.Warn("list images for a server page", "server", s.ID, "err", err)
	} else {
		for _, im := range images {
			d.images[im.ID] = im
		}
		d.attachable, d.isos = attachable(images, s), isoImages(images)
	}
	if nodes, err := h.svc.Nodes(ctx, v.User); err != nil {
		h.logger.Warn("list nodes for a server page", "server", s.ID, "err", err)
	} else {
		for _, n := range nodes {
			d.nodes[n.ID] = n
		}
		d.migrateTo = migrationTargets(nodes, s)
	}
	if conns, err := h.svc.Connections(ctx, v.User); err != nil {
		h.logger.Warn("list connections for a server page", "server", s.ID, "err", err)
	} else {
		d.conns = map[string]engine.Connection{}
		for _, c := range conns {
			d.conns[c.ID] = c
			if c.Server == "" && c.Owner == s.Owner {
				d.freeConns = append(d.freeConns, c)
			}
		}
		slices.SortFunc(d.freeConns, func(a, b engine.Connection) int { return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID)) })
	}
	d.op = h.operationFor(ctx, v.User, s, opID)
	return d
}

// operationFor is the operation the server's page shows: the one ?op= names if it is
// this server's, else the newest of the server's operations that still runs.
func (h *Handlers) operationFor(ctx context.Context, u engine.User, s engine.Server, opID string) *engine.Operation {
	if opID != "" {
		op, err := h.svc.Operation(ctx, u, opID)
		if err == nil && op.Target == s.ID {
			return &op
		}
		if err != nil && !errors.Is(err, engine.ErrNotFound) {
			h.logger.Warn("read operation for a server page", "server", s.ID, "op", opID, "err", err)
		}
	}
	ops, err := h.svc.Operations(ctx, u)
	if err != nil {
		h.logger.Warn("list operations for a server page", "server", s.ID, "err", err)
		return nil
	}
	var found *engine.Operation
	for _, op := range ops {
		if op.Target == s.ID && op.State == engine.OpRunning && (found == nil || op.CreatedAt.After(found.CreatedAt)) {
			found = &op
		}
	}
	return found
}

// nodeNames maps node IDs to names; without them the table shows IDs.
func (h *Handlers) nodeNames(ctx context.Context, u engine.User) map[string]string {
	nodes, err := h.svc.Nodes(ctx, u)
	if err != nil {
		h.logger.Warn("list nodes for node names", "err", err)
		return nil
	}
	m := make(map[string]string, len(nodes))
	for _, n := range nodes {
		if n.Name != "" {
			m[n.ID] = n.Name
		}
	}
	return m
}

// ownerNames maps user IDs to names for an admin; without them the pages show IDs.
func (h *Handlers) ownerNames(ctx context.Context, u engine.User) map[string]string {
	return layout.UserNames(ctx, h.svc, layout.Viewer{User: u})
}

// fail answers an engine error that leaves nothing to show with the page a person
// can act on.
func (h *Handlers) fail(w http.ResponseWriter, r *http.Request, op string, err error) {
	status := layout.StatusOf(err)
	switch status {
	case http.StatusNotFound:
		layout.Error(w, r, h.logger, status,
			"There is no server "+r.PathValue("id")+". It may have been deleted; the Servers page lists those there are.")
	case http.StatusInternalServerError:
		h.logger.Error(op, "path", r.URL.Path, "err", err)
		layout.Error(w, r, h.logger, status,
			"The engine could not read its servers. Reload in a moment; the engine's log says what failed.")
	default:
		layout.Error(w, r, h.logger, status, err.Error())
	}
}

// nameRule is the engine's rule for names; a name in a link is shown only if it
// could be one.
var nameRule = regexp.MustCompile(`^[a-z0-9][a-z0-9._@-]{1,63}$`)

// Sorted returns a copy of list ordered by name, then ID, so that rows keep their
// places between polls.
func Sorted(list []engine.Server) []engine.Server {
	out := slices.Clone(list)
	slices.SortFunc(out, func(a, b engine.Server) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// Path is the path of a server's page.
func Path(id string) string {
	return "/servers/" + url.PathEscape(id)
}

// actionPath is where a server's action form posts: /servers/{id}/{action}.
func actionPath(id, action string) string {
	return Path(id) + "/" + action
}

// seenKey is what the page knows of a server's state: the badge's poll compares it
// with the engine's to tell the page to reload.
func seenKey(s engine.Server) string {
	return string(s.State) + "@" + s.Node
}
