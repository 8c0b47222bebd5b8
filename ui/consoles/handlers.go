// Package consoles is the web console's server consoles: the serial console in a
// terminal (xterm.js) and the screen (noVNC), each a page and a websocket that
// console.Bridge serves once the engine has said the viewer may open it.
package consoles

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"

	"github.com/cairn-os/cairn/supervisor/console"
	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/ui/layout"
)

// Service is what the consoles need of the engine: the console of a server, after
// the check that u may open it (its owner or an admin), and the server's name.
// ErrNotFound, ErrForbidden, ErrUnauthorized and ErrInvalid (a server that is not
// running) are answered as such.
type Service interface {
	ConsoleTarget(ctx context.Context, u engine.User, serverID string, kind console.Kind) (console.Target, string, error)
}

// Handlers serve the console pages and their websockets.
type Handlers struct {
	svc    Service
	logger *slog.Logger
}

// New returns the consoles' handlers.
func New(svc Service, logger *slog.Logger) *Handlers {
	return &Handlers{svc: svc, logger: logger.With("area", "consoles")}
}

// Serial serves GET /servers/{id}/console: the serial console page.
func (h *Handlers) Serial(w http.ResponseWriter, r *http.Request) {
	h.page(w, r, console.Serial)
}

// VNC serves GET /servers/{id}/vnc: the graphical console page.
func (h *Handlers) VNC(w http.ResponseWriter, r *http.Request) {
	h.page(w, r, console.VNC)
}

// SerialSocket serves GET /servers/{id}/console/ws: the serial console's websocket.
func (h *Handlers) SerialSocket(w http.ResponseWriter, r *http.Request) {
	h.socket(w, r, console.Serial)
}

// VNCSocket serves GET /servers/{id}/vnc/ws: the graphical console's websocket.
func (h *Handlers) VNCSocket(w http.ResponseWriter, r *http.Request) {
	h.socket(w, r, console.VNC)
}

func (h *Handlers) page(w http.ResponseWriter, r *http.Request, kind console.Kind) {
	id := r.PathValue("id")
	_, name, err := h.target(r, id, kind)
	if err != nil {
		status, msg := h.refusal(r, id, err)
		layout.Error(w, r, h.logger, status, msg)
		return
	}
	p := layout.Page{Title: name + " · Serial console", Section: "servers", Content: serialPage(id, name)}
	if kind == console.VNC {
		p.Title, p.Content = name+" · Screen", vncPage(id, name)
	}
	layout.Render(w, r, h.logger, http.StatusOK, p)
}

// socket checks the viewer and hands the connection to the bridge; a refusal is a
// plain HTTP answer, before any upgrade.
func (h *Handlers) socket(w http.ResponseWriter, r *http.Request, kind console.Kind) {
	id := r.PathValue("id")
	t, _, err := h.target(r, id, kind)
	if err != nil {
		status, msg := h.refusal(r, id, err)
		http.Error(w, msg, status)
		return
	}
	v, _ := layout.ViewerFrom(r.Context())
	console.Bridge(w, r, t, kind, h.logger.With("server", id, "user", v.User.Name))
}

// errNoViewer is a request that reached a console without a session: the browser
// mux lets none through, but a console must never open for nobody.
var errNoViewer = errors.New("console: no signed-in viewer")

func (h *Handlers) target(r *http.Request, id string, kind console.Kind) (console.Target, string, error) {
	v, ok := layout.ViewerFrom(r.Context())
	if !ok {
		return console.Target{}, "", errNoViewer
	}
	return h.svc.ConsoleTarget(r.Context(), v.User, id, kind)
}

// refusal is the status and message for an engine error.
func (h *Handlers) refusal(r *http.Request, id string, err error) (int, string) {
	switch {
	case errors.Is(err, errNoViewer), errors.Is(err, engine.ErrUnauthorized):
		return http.StatusUnauthorized, "Sign in to open a console."
	case errors.Is(err, engine.ErrNotFound):
		return http.StatusNotFound, "There is no server " + id + ". It may have been deleted; the Servers page lists those there are."
	case errors.Is(err, engine.ErrForbidden):
		return http.StatusForbidden, "Only the server's owner and administrators may open its console."
	case errors.Is(err, engine.ErrInvalid):
		// The engine's message says what to do ("it is stopped; start it first").
		return http.StatusConflict, "This console cannot be opened now: " + err.Error()
	default:
		h.logger.Error("open console", "path", r.URL.Path, "err", err)
		return http.StatusInternalServerError, "The engine could not open this console. Reload in a moment; the engine's log says what failed."
	}
}

// serverPath is the path of a server's page.
func serverPath(id string) string {
	return "/servers/" + url.PathEscape(id)
}

// socketPath is the path of a console's websocket; kind is "console" or "vnc".
func socketPath(id, kind string) string {
	return serverPath(id) + "/" + kind + "/ws"
}
