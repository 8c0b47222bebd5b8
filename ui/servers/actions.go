package servers

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/ui/layout"
)

// serverAction is an engine call that changes a server and returns it.
type serverAction func(ctx context.Context, u engine.User, id string) (engine.Server, error)

// Start serves POST /servers/{id}/start.
func (h *Handlers) Start(w http.ResponseWriter, r *http.Request) {
	h.act(w, r, "start", h.svc.StartServer)
}

// Stop serves POST /servers/{id}/stop: force the server off.
func (h *Handlers) Stop(w http.ResponseWriter, r *http.Request) {
	h.act(w, r, "force off", h.svc.StopServer)
}

// Reboot serves POST /servers/{id}/reboot.
func (h *Handlers) Reboot(w http.ResponseWriter, r *http.Request) {
	h.act(w, r, "reboot", h.svc.RebootServer)
}

// Suspend serves POST /servers/{id}/suspend.
func (h *Handlers) Suspend(w http.ResponseWriter, r *http.Request) {
	h.act(w, r, "suspend", h.svc.SuspendServer)
}

// Resume serves POST /servers/{id}/resume.
func (h *Handlers) Resume(w http.ResponseWriter, r *http.Request) {
	h.act(w, r, "resume", h.svc.ResumeServer)
}

// Shutdown serves POST /servers/{id}/shutdown: press the ACPI power button. The
// engine waits for the guest as an operation, which the server's page then shows.
func (h *Handlers) Shutdown(w http.ResponseWriter, r *http.Request) {
	v, _ := layout.ViewerFrom(r.Context())
	id := r.PathValue("id")
	op, err := h.svc.ShutdownServer(r.Context(), v.User, id, 0)
	if err != nil {
		h.refused(w, r, "shut down", err)
		return
	}
	h.back(w, r, id, op.ID)
}

// Migrate serves POST /servers/{id}/migrate (field node): move the running server to
// that node, as an operation the server's page shows.
func (h *Handlers) Migrate(w http.ResponseWriter, r *http.Request) {
	v, _ := layout.ViewerFrom(r.Context())
	id := r.PathValue("id")
	op, err := h.svc.MigrateServer(r.Context(), v.User, id, r.PostFormValue("node"))
	if err != nil {
		h.refused(w, r, "migrate", err)
		return
	}
	h.back(w, r, id, op.ID)
}

// Autostart serves POST /servers/{id}/autostart (field autostart: on or off).
func (h *Handlers) Autostart(w http.ResponseWriter, r *http.Request) {
	on := r.PostFormValue("autostart") == "on"
	h.act(w, r, "change autostart of", func(ctx context.Context, u engine.User, id string) (engine.Server, error) {
		return h.svc.UpdateServer(ctx, u, id, engine.ServerUpdate{Autostart: &on})
	})
}

// AttachDisk serves POST /servers/{id}/disks (fields image, bus).
func (h *Handlers) AttachDisk(w http.ResponseWriter, r *http.Request) {
	req := engine.ServerDiskRequest{Image: r.PostFormValue("image"), Bus: r.PostFormValue("bus")}
	h.act(w, r, "attach a disk to", func(ctx context.Context, u engine.User, id string) (engine.Server, error) {
		return h.svc.AttachDisk(ctx, u, id, req)
	})
}

// DetachDisk serves POST /servers/{id}/disks/{index}/detach: the image stays.
func (h *Handlers) DetachDisk(w http.ResponseWriter, r *http.Request) {
	index, err := strconv.Atoi(r.PathValue("index"))
	if err != nil {
		index = -1 // the engine says which disks there are
	}
	h.act(w, r, "detach a disk from", func(ctx context.Context, u engine.User, id string) (engine.Server, error) {
		return h.svc.DetachDisk(ctx, u, id, index)
	})
}

// SetCDROM serves POST /servers/{id}/cdrom (field image; empty ejects).
func (h *Handlers) SetCDROM(w http.ResponseWriter, r *http.Request) {
	image := r.PostFormValue("image")
	h.act(w, r, "change the CD-ROM of", func(ctx context.Context, u engine.User, id string) (engine.Server, error) {
		return h.svc.SetCDROM(ctx, u, id, image)
	})
}

// AttachConnection serves POST /servers/{id}/connections (field connection): the
// connection becomes one of the server's NICs, plugged in at once when it runs.
func (h *Handlers) AttachConnection(w http.ResponseWriter, r *http.Request) {
	conn := r.PostFormValue("connection")
	h.act(w, r, "attach a connection to", func(ctx context.Context, u engine.User, id string) (engine.Server, error) {
		if conn == "" {
			return engine.Server{}, fmt.Errorf("%w: choose the connection to attach", engine.ErrInvalid)
		}
		_, err := h.svc.AttachConnection(ctx, u, conn, id)
		return engine.Server{}, err
	})
}

// DetachConnection serves POST /servers/{id}/connections/{conn}/detach: the NIC is
// unplugged, and the connection keeps its addresses. When the guest does not let go
// of the NIC the engine detaches it all the same and says so: the page shows that.
func (h *Handlers) DetachConnection(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	v, _ := layout.ViewerFrom(ctx)
	id, conn := r.PathValue("id"), r.PathValue("conn")
	s, err := h.svc.Server(ctx, v.User, id)
	if err != nil {
		h.fail(w, r, "read server", err)
		return
	}
	if !slices.ContainsFunc(s.NICs, func(n engine.ServerNIC) bool { return n.Connection == conn }) {
		h.refused(w, r, "detach a connection from", fmt.Errorf("%w: connection %q is not attached to server %s; reload the page", engine.ErrInvalid, conn, s.Name))
		return
	}
	c, err := h.svc.DetachConnection(ctx, v.User, conn)
	switch {
	case err != nil && c.ID != "":
		// Detached from the server's configuration; the running guest kept the NIC.
		h.logger.Warn("detach connection: the guest kept the NIC", "server", s.ID, "connection", conn, "err", err)
		if s, err2 := h.svc.Server(ctx, v.User, id); err2 == nil {
			d := h.detailView(ctx, s, "")
			d.warning = err.Error()
			h.renderView(w, r, layout.StatusOf(err), d)
			return
		}
		h.back(w, r, id, "")
	case err != nil:
		h.refused(w, r, "detach a connection from", err)
	default:
		h.back(w, r, id, "")
	}
}

// Delete serves POST /servers/{id}/delete (field delete_disks: on to delete its disk
// images too). It goes to the Servers page, which says what was deleted, or lists
// the images the engine kept and why.
func (h *Handlers) Delete(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	v, _ := layout.ViewerFrom(ctx)
	id := r.PathValue("id")
	s, err := h.svc.Server(ctx, v.User, id)
	if err != nil {
		h.fail(w, r, "read server", err)
		return
	}
	kept, err := h.svc.DeleteServer(ctx, v.User, s.ID, r.PostFormValue("delete_disks") == "on")
	if err != nil {
		h.refused(w, r, "delete", err)
		return
	}
	if len(kept) == 0 {
		http.Redirect(w, r, "/servers?deleted="+url.QueryEscape(s.Name), http.StatusSeeOther)
		return
	}
	l, err := h.listView(r)
	if err != nil {
		h.fail(w, r, "list servers", err)
		return
	}
	l.notice = "Server " + s.Name + " was deleted. These disk images were kept:"
	l.kept = kept
	h.renderList(w, r, http.StatusOK, l)
}

// act runs an action on the server of the request and goes back to its page.
func (h *Handlers) act(w http.ResponseWriter, r *http.Request, verb string, fn serverAction) {
	v, _ := layout.ViewerFrom(r.Context())
	id := r.PathValue("id")
	if _, err := fn(r.Context(), v.User, id); err != nil {
		h.refused(w, r, verb, err)
		return
	}
	h.back(w, r, id, "")
}

// back sends the browser to the server's page (showing operation op, if any), so that
// a reload does not post again.
func (h *Handlers) back(w http.ResponseWriter, r *http.Request, id, op string) {
	target := Path(id)
	if op != "" {
		target += "?op=" + url.QueryEscape(op)
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// refused answers an action the engine did not carry out: the server's page with the
// engine's message (which says what to do), or, for an unexpected failure, a message
// that points to the engine's log.
func (h *Handlers) refused(w http.ResponseWriter, r *http.Request, verb string, err error) {
	v, _ := layout.ViewerFrom(r.Context())
	s, rerr := h.svc.Server(r.Context(), v.User, r.PathValue("id"))
	if rerr != nil {
		// No server to show the message on: it is gone, or cannot be read.
		h.fail(w, r, "read server", rerr)
		return
	}
	status, msg := layout.StatusOf(err), err.Error()
	if status == http.StatusInternalServerError {
		h.logger.Error(verb+" server", "server", s.ID, "err", err)
		msg = "The engine could not " + verb + " the server. The engine's log says what failed."
	}
	h.renderDetail(w, r, status, s, "", msg)
}
