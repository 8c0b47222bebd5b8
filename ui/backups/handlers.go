// Package backups is the web console's Backups area: the viewer's image backups
// (an admin's: everyone's), each restored in place over its image (whose servers
// must be off) or as a new image, as an operation with a progress bar, or deleted.
package backups

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/ui/images"
	"github.com/cairn-os/cairn/ui/layout"
)

// Service is what the Backups area needs of the engine.
type Service interface {
	Backups(ctx context.Context, u engine.User, image string) ([]engine.Backup, error)
	RestoreBackup(ctx context.Context, u engine.User, id string, req engine.RestoreRequest) (engine.Operation, error)
	DeleteBackup(ctx context.Context, u engine.User, id string) error
	Images(ctx context.Context, u engine.User) ([]engine.Image, error)
	images.OperationReader
	layout.UserLister
}

var _ Service = (*engine.Engine)(nil)

// Handlers serve the Backups area.
type Handlers struct {
	svc    Service
	logger *slog.Logger
}

// New returns the Backups area's handlers.
func New(svc Service, logger *slog.Logger) *Handlers {
	return &Handlers{svc: svc, logger: logger.With("area", "backups")}
}

// Routes are the Backups area's routes.
func (h *Handlers) Routes() []images.Route {
	return []images.Route{
		{Pattern: "GET /backups", Handler: h.List},
		{Pattern: "POST /backups/{id}/restore", Handler: h.Restore},
		{Pattern: "POST /backups/{id}/delete", Handler: h.Delete},
	}
}

// listView is what the backups page shows.
type listView struct {
	Viewer  layout.Viewer
	Backups []engine.Backup
	// Images are the images the viewer may see, by ID: a backup of an image that is
	// gone can only be restored as a new image.
	Images map[string]engine.Image
	Owners map[string]string
	// Image filters the list to one image's backups.
	Image string
	Op    *engine.Operation
	Done  string
	Alert string
}

// List serves GET /backups (image=ID shows one image's backups only).
func (h *Handlers) List(w http.ResponseWriter, r *http.Request) {
	h.list(w, r, http.StatusOK, "")
}

func (h *Handlers) list(w http.ResponseWriter, r *http.Request, status int, alert string) {
	v, _ := layout.ViewerFrom(r.Context())
	ctx := r.Context()
	image := r.URL.Query().Get("image")
	list, err := h.svc.Backups(ctx, v.User, image)
	if err != nil {
		status, msg := images.Refuse(h.logger, r, "list backups", err)
		layout.Error(w, r, h.logger, status, msg)
		return
	}
	lv := listView{Viewer: v, Backups: list, Images: map[string]engine.Image{}, Owners: layout.UserNames(ctx, h.svc, v),
		Image: image, Op: images.ReadOperation(r, h.svc, v.User), Done: doneMessages[r.URL.Query().Get("done")], Alert: alert}
	if all, err := h.svc.Images(ctx, v.User); err == nil {
		for _, im := range all {
			lv.Images[im.ID] = im
		}
	} else {
		h.logger.Warn("list images", "err", err)
	}
	layout.Render(w, r, h.logger, status, layout.Page{Title: "Backups", Section: "backups", Content: listPage(lv)})
}

// Messages after an action went through, by the "done" query parameter.
var doneMessages = map[string]string{
	"deleted": "The backup was deleted.",
}

// refusal is the console's refusal of a form before the engine is asked.
type refusal string

func (e refusal) Error() string { return string(e) }
func (e refusal) Unwrap() error { return engine.ErrInvalid }

// action runs a backup's form; a refusal shows the list again with the message.
func (h *Handlers) action(w http.ResponseWriter, r *http.Request, op string, do func(ctx context.Context, u engine.User, id string, f url.Values) (string, error)) {
	v, _ := layout.ViewerFrom(r.Context())
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		h.list(w, r, http.StatusBadRequest, "The form could not be read. Reload the page and try again.")
		return
	}
	next, err := do(r.Context(), v.User, r.PathValue("id"), r.PostForm)
	if err != nil {
		status, msg := images.Refuse(h.logger, r, op, err)
		h.list(w, r, status, msg)
		return
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// Restore serves POST /backups/{id}/restore: in place over the image it was taken of
// (mode=inplace; its servers must be off) or as a new image (mode=new, name), as an
// operation.
func (h *Handlers) Restore(w http.ResponseWriter, r *http.Request) {
	h.action(w, r, "restore backup", func(ctx context.Context, u engine.User, id string, f url.Values) (string, error) {
		var req engine.RestoreRequest
		if f.Get("mode") == "new" {
			req.Name = strings.TrimSpace(f.Get("name"))
			if req.Name == "" {
				return "", refusal("Give the restored image a name, or restore it in place.")
			}
		}
		op, err := h.svc.RestoreBackup(ctx, u, id, req)
		if err != nil {
			return "", err
		}
		return images.WithQuery("/backups", "op", op.ID), nil
	})
}

// Delete serves POST /backups/{id}/delete; the form must carry confirm=yes.
func (h *Handlers) Delete(w http.ResponseWriter, r *http.Request) {
	h.action(w, r, "delete backup", func(ctx context.Context, u engine.User, id string, f url.Values) (string, error) {
		if f.Get("confirm") != "yes" {
			return "", refusal("Tick the box to confirm that the backup is to be deleted.")
		}
		if err := h.svc.DeleteBackup(ctx, u, id); err != nil {
			return "", err
		}
		return images.WithQuery("/backups", "done", "deleted"), nil
	})
}

// URL is where an action on backup id is posted.
func URL(id, action string) string {
	return "/backups/" + url.PathEscape(id) + "/" + action
}

// canChange reports whether the viewer may restore or delete backup b.
func canChange(v layout.Viewer, b engine.Backup) bool {
	return images.CanWrite(v) && (images.IsAdmin(v) || b.Owner == v.User.ID)
}
