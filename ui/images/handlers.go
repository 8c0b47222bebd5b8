// Package images is the web console's Images area: the table of disk images, each
// image's page (qemu-img's backing chain and the actions its state and the viewer's
// role allow), uploads from the browser that survive dropped connections and page
// reloads (static/upload.js), and downloads a browser can resume. Long work (copies,
// conversions, backups) shows the Operations area's progress bar. It also holds what
// the Pools and Backups areas share with it: engine errors as pages, owner names,
// the storage stylesheet.
package images

import (
	"cmp"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/a-h/templ"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/ui/layout"
)

// Service is what the Images area needs of the engine.
type Service interface {
	Images(ctx context.Context, u engine.User) ([]engine.Image, error)
	Image(ctx context.Context, u engine.User, id string) (engine.Image, error)
	ImageInfo(ctx context.Context, u engine.User, id string) (engine.ImageInfo, error)
	CreateImage(ctx context.Context, u engine.User, req engine.ImageRequest) (engine.Image, error)
	UploadStatus(ctx context.Context, u engine.User, id string) (engine.Image, error)
	UploadChunk(ctx context.Context, u engine.User, id string, offset int64, body io.Reader) (engine.Image, error)
	ImageFile(ctx context.Context, u engine.User, id string) (*os.File, engine.Image, error)
	UpdateImage(ctx context.Context, u engine.User, id string, upd engine.ImageUpdate) (engine.Image, error)
	CloneImage(ctx context.Context, u engine.User, id string, req engine.CloneRequest) (engine.Image, *engine.Operation, error)
	ConvertImage(ctx context.Context, u engine.User, id, format, name string) (engine.Operation, error)
	ResizeImage(ctx context.Context, u engine.User, id string, size int64) (engine.Image, error)
	FlattenImage(ctx context.Context, u engine.User, id string) (engine.Operation, error)
	BackupImage(ctx context.Context, u engine.User, id string) (engine.Operation, error)
	DeleteImage(ctx context.Context, u engine.User, id string) error
	Backups(ctx context.Context, u engine.User, image string) ([]engine.Backup, error)
	Pools(ctx context.Context, u engine.User) ([]engine.Pool, error)
	Nodes(ctx context.Context, u engine.User) ([]engine.Node, error)
	Servers(ctx context.Context, u engine.User) ([]engine.Server, error)
	OperationReader
	layout.UserLister
}

var _ Service = (*engine.Engine)(nil)

// EventChanged is the event (on <body>) after which the images table reloads
// itself; upload.js dispatches it when an upload starts or ends. The table also
// reloads on operations.EndedEvent.
const EventChanged = "images-changed"

// Handlers serve the Images area.
type Handlers struct {
	svc    Service
	logger *slog.Logger
	now    func() time.Time
}

// New returns the Images area's handlers.
func New(svc Service, logger *slog.Logger) *Handlers {
	return &Handlers{svc: svc, logger: logger.With("area", "images"), now: time.Now}
}

// listView is what the images page shows.
type listView struct {
	Viewer  layout.Viewer
	Images  []engine.Image
	Pools   []engine.Pool
	Owners  map[string]string
	Servers map[string]string
	Op      *engine.Operation
	Done    string
}

// List serves GET /images and GET /images/table: the page, or for htmx only the
// <table id="images">.
func (h *Handlers) List(w http.ResponseWriter, r *http.Request) {
	v, _ := layout.ViewerFrom(r.Context())
	ctx := r.Context()
	list, err := h.svc.Images(ctx, v.User)
	if err != nil {
		h.fail(w, r, "list images", err)
		return
	}
	pools, err := h.svc.Pools(ctx, v.User)
	if err != nil {
		h.fail(w, r, "list pools", err)
		return
	}
	lv := listView{
		Viewer: v, Images: Sorted(list), Pools: pools,
		Owners: layout.UserNames(ctx, h.svc, v), Servers: h.serverNames(ctx, v.User),
		Op: ReadOperation(r, h.svc, v.User), Done: doneMessages[r.URL.Query().Get("done")],
	}
	table := Table(lv)
	layout.Render(w, r, h.logger, http.StatusOK, layout.Page{
		Title:     "Images",
		Section:   "images",
		Content:   listPage(lv, table),
		Fragments: map[string]templ.Component{"images": table},
	})
}

// detailView is what an image's page shows.
type detailView struct {
	Viewer   layout.Viewer
	Image    engine.Image
	Chain    []engine.ChainLink
	ChainErr string
	Backups  []engine.Backup
	Pools    []engine.Pool
	Nodes    []engine.Node
	Owners   map[string]string
	Servers  map[string]string
	Op       *engine.Operation
	Done     string
	Alert    string
}

// Show serves GET /images/{id}: the image, qemu-img's view of its backing chain, its
// backups, and the actions the viewer may take.
func (h *Handlers) Show(w http.ResponseWriter, r *http.Request) {
	h.show(w, r, http.StatusOK, "")
}

// show renders an image's page with status; alert is the engine's refusal of an
// action, shown above everything.
func (h *Handlers) show(w http.ResponseWriter, r *http.Request, status int, alert string) {
	v, _ := layout.ViewerFrom(r.Context())
	ctx := r.Context()
	id := r.PathValue("id")
	dv := detailView{Viewer: v, Alert: alert}
	info, err := h.svc.ImageInfo(ctx, v.User, id)
	switch {
	case err == nil:
		dv.Image, dv.Chain = info.Image, info.Chain
	case layout.StatusOf(err) == http.StatusNotFound || layout.StatusOf(err) == http.StatusForbidden:
		h.fail(w, r, "show image", err)
		return
	default:
		// qemu-img or a node failing still leaves the image to show and act on.
		im, err2 := h.svc.Image(ctx, v.User, id)
		if err2 != nil {
			h.fail(w, r, "show image", err2)
			return
		}
		_, dv.ChainErr = Refuse(h.logger, r, "inspect image", err)
		dv.Image = im
	}
	if dv.Backups, err = h.svc.Backups(ctx, v.User, dv.Image.ID); err != nil {
		h.logger.Warn("list backups of image", "image", dv.Image.ID, "err", err)
	}
	if dv.Pools, err = h.svc.Pools(ctx, v.User); err != nil {
		h.logger.Warn("list pools", "err", err)
	}
	if nodes, err := h.svc.Nodes(ctx, v.User); err == nil {
		for _, n := range nodes {
			if n.State == engine.NodeReady {
				dv.Nodes = append(dv.Nodes, n)
			}
		}
	}
	dv.Owners = layout.UserNames(ctx, h.svc, v)
	dv.Servers = h.serverNames(ctx, v.User)
	dv.Op = ReadOperation(r, h.svc, v.User)
	dv.Done = doneMessages[r.URL.Query().Get("done")]
	layout.Render(w, r, h.logger, status, layout.Page{
		Title:   dv.Image.Name,
		Section: "images",
		Content: detailPage(dv),
	})
}

// serverNames maps the viewer's servers' IDs to their names, for "used by".
func (h *Handlers) serverNames(ctx context.Context, u engine.User) map[string]string {
	m := map[string]string{}
	servers, err := h.svc.Servers(ctx, u)
	if err != nil {
		return m
	}
	for _, s := range servers {
		m[s.ID] = s.Name
	}
	return m
}

// Messages after an action went through, by the "done" query parameter.
var doneMessages = map[string]string{
	"deleted":  "The image was deleted.",
	"master":   "The image is a master now: read-only, and ready to be cloned.",
	"unmaster": "The image is no longer a master; it can be written again.",
	"cloned":   "The linked clone is ready.",
	"resized":  "The image was grown. The guest sees the new size at its next boot; grow its partition and file system there.",
	"schedule": "The backup schedule was saved.",
}

// action runs one of an image page's forms: do returns where to go on success; an
// engine refusal shows the image's page again with the engine's message.
func (h *Handlers) action(w http.ResponseWriter, r *http.Request, op string, do func(ctx context.Context, u engine.User, id string, f url.Values) (string, error)) {
	v, _ := layout.ViewerFrom(r.Context())
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		h.show(w, r, http.StatusBadRequest, "The form could not be read. Reload the page and try again.")
		return
	}
	next, err := do(r.Context(), v.User, r.PathValue("id"), r.PostForm)
	if err != nil {
		// The page shows the refusal; when the image itself is gone, show answers 404.
		status, msg := Refuse(h.logger, r, op, err)
		h.show(w, r, status, msg)
		return
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// formError is the console's refusal of a form's content before the engine is
// asked: ErrInvalid with the message a person reads.
func formError(msg string) error {
	return &formErr{msg}
}

// formErr is what formError returns.
type formErr struct{ msg string }

func (e *formErr) Error() string { return e.msg }
func (e *formErr) Unwrap() error { return engine.ErrInvalid }

// SetMaster serves POST /images/{id}/master: master=true marks the image master,
// master=false unmarks it.
func (h *Handlers) SetMaster(w http.ResponseWriter, r *http.Request) {
	h.action(w, r, "mark image master", func(ctx context.Context, u engine.User, id string, f url.Values) (string, error) {
		on := f.Get("master") == "true"
		im, err := h.svc.UpdateImage(ctx, u, id, engine.ImageUpdate{Master: &on})
		if err != nil {
			return "", err
		}
		done := "master"
		if !on {
			done = "unmaster"
		}
		return WithQuery(URL(im.ID), "done", done), nil
	})
}

// Clone serves POST /images/{id}/clone: a linked child of a master (mode=linked; in
// a pool, target=pool:N, or on a node's local storage, target=node:ID) or a full
// copy (mode=copy, into a pool) as an operation.
func (h *Handlers) Clone(w http.ResponseWriter, r *http.Request) {
	h.action(w, r, "clone image", func(ctx context.Context, u engine.User, id string, f url.Values) (string, error) {
		req := engine.CloneRequest{Name: strings.TrimSpace(f.Get("name"))}
		linked := f.Get("mode") != "copy"
		req.Linked = &linked
		kind, value, _ := strings.Cut(f.Get("target"), ":")
		switch kind {
		case "", "pool":
			if value != "" {
				n, err := strconv.Atoi(value)
				if err != nil {
					return "", formError("Choose a pool from the list.")
				}
				req.Pool = &n
			}
		case "node":
			req.Node = value
		default:
			return "", formError("Choose a pool or a node from the list.")
		}
		im, op, err := h.svc.CloneImage(ctx, u, id, req)
		if err != nil {
			return "", err
		}
		if op != nil {
			return WithQuery(URL(id), "op", op.ID), nil
		}
		return WithQuery(URL(im.ID), "done", "cloned"), nil
	})
}

// Convert serves POST /images/{id}/convert: a copy in another format (format, name),
// as an operation.
func (h *Handlers) Convert(w http.ResponseWriter, r *http.Request) {
	h.action(w, r, "convert image", func(ctx context.Context, u engine.User, id string, f url.Values) (string, error) {
		op, err := h.svc.ConvertImage(ctx, u, id, f.Get("format"), strings.TrimSpace(f.Get("name")))
		if err != nil {
			return "", err
		}
		return WithQuery(URL(id), "op", op.ID), nil
	})
}

// Resize serves POST /images/{id}/resize: grow the image to size (a number) of unit
// (MiB, GiB, TiB).
func (h *Handlers) Resize(w http.ResponseWriter, r *http.Request) {
	h.action(w, r, "resize image", func(ctx context.Context, u engine.User, id string, f url.Values) (string, error) {
		size, err := ParseSize(f.Get("size"), f.Get("unit"))
		if err != nil {
			return "", err
		}
		if _, err := h.svc.ResizeImage(ctx, u, id, size); err != nil {
			return "", err
		}
		return WithQuery(URL(id), "done", "resized"), nil
	})
}

// Flatten serves POST /images/{id}/flatten: make a child independent of its master,
// as an operation.
func (h *Handlers) Flatten(w http.ResponseWriter, r *http.Request) {
	h.action(w, r, "flatten image", func(ctx context.Context, u engine.User, id string, _ url.Values) (string, error) {
		op, err := h.svc.FlattenImage(ctx, u, id)
		if err != nil {
			return "", err
		}
		return WithQuery(URL(id), "op", op.ID), nil
	})
}

// Backup serves POST /images/{id}/backup: back the image up now, as an operation.
func (h *Handlers) Backup(w http.ResponseWriter, r *http.Request) {
	h.action(w, r, "back up image", func(ctx context.Context, u engine.User, id string, _ url.Values) (string, error) {
		op, err := h.svc.BackupImage(ctx, u, id)
		if err != nil {
			return "", err
		}
		return WithQuery(URL(id), "op", op.ID), nil
	})
}

// Schedule serves POST /images/{id}/schedule: the daily backup time (backup_at,
// HH:MM; empty for none) and how many scheduled backups to keep (backup_keep).
func (h *Handlers) Schedule(w http.ResponseWriter, r *http.Request) {
	h.action(w, r, "set backup schedule", func(ctx context.Context, u engine.User, id string, f url.Values) (string, error) {
		at := strings.TrimSpace(f.Get("backup_at"))
		upd := engine.ImageUpdate{BackupAt: &at}
		if s := strings.TrimSpace(f.Get("backup_keep")); s != "" {
			keep, err := strconv.Atoi(s)
			if err != nil || keep < 1 {
				return "", formError("Keep must be a whole number of backups, 1 or more.")
			}
			upd.BackupKeep = &keep
		}
		if _, err := h.svc.UpdateImage(ctx, u, id, upd); err != nil {
			return "", err
		}
		return WithQuery(URL(id), "done", "schedule"), nil
	})
}

// Delete serves POST /images/{id}/delete; the form must carry confirm=yes.
func (h *Handlers) Delete(w http.ResponseWriter, r *http.Request) {
	h.action(w, r, "delete image", func(ctx context.Context, u engine.User, id string, f url.Values) (string, error) {
		if f.Get("confirm") != "yes" {
			return "", formError("Tick the box to confirm that the image and its file are to be deleted.")
		}
		if err := h.svc.DeleteImage(ctx, u, id); err != nil {
			return "", err
		}
		return WithQuery("/images", "done", "deleted"), nil
	})
}

// fail answers an engine error that leaves nothing to show with an error page.
func (h *Handlers) fail(w http.ResponseWriter, r *http.Request, op string, err error) {
	status, msg := Refuse(h.logger, r, op, err)
	if status == http.StatusNotFound {
		msg = "There is no image " + r.PathValue("id") + " that you can see. It may have been deleted; the Images page lists yours."
	}
	layout.Error(w, r, h.logger, status, msg)
}

// Sorted returns a copy of list ordered by name, then ID, so that rows keep their
// places between reloads.
func Sorted(list []engine.Image) []engine.Image {
	out := slices.Clone(list)
	slices.SortFunc(out, func(a, b engine.Image) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// URL is the path of an image's page.
func URL(id string) string {
	return "/images/" + url.PathEscape(id)
}

// Route is one line of an area's part of the console's route table; every route of
// the storage areas needs a signed-in viewer (and the CSRF token when unsafe).
type Route struct {
	Pattern string
	Handler http.HandlerFunc
}

// Routes are the Images area's routes.
func (h *Handlers) Routes() []Route {
	return []Route{
		{"GET /images", h.List},
		{"GET /images/table", h.List},
		{"POST /images/upload", h.StartUpload},
		{"GET /images/{id}", h.Show},
		{"GET /images/{id}/upload", h.UploadStatus},
		{"PATCH /images/{id}/upload", h.UploadChunk},
		{"GET /images/{id}/download", h.Download},
		{"POST /images/{id}/master", h.SetMaster},
		{"POST /images/{id}/clone", h.Clone},
		{"POST /images/{id}/convert", h.Convert},
		{"POST /images/{id}/resize", h.Resize},
		{"POST /images/{id}/flatten", h.Flatten},
		{"POST /images/{id}/backup", h.Backup},
		{"POST /images/{id}/schedule", h.Schedule},
		{"POST /images/{id}/delete", h.Delete},
	}
}
