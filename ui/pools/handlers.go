// Package pools is the web console's Pools area: the storage pools with their
// capacity, what each user's images take and the viewer's own usage; for admins,
// adding a pool (on a directory, or on a block device after typing its path again),
// its snapshot schedule and removal; and each pool's snapshots: take one, restore one
// image from it (an operation), roll the whole pool back (after typing the pool's
// name), delete one.
package pools

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/ui/images"
	"github.com/cairn-os/cairn/ui/layout"
)

// Service is what the Pools area needs of the engine.
type Service interface {
	Pools(ctx context.Context, u engine.User) ([]engine.Pool, error)
	Pool(ctx context.Context, u engine.User, idText string) (engine.Pool, error)
	CreatePool(ctx context.Context, u engine.User, req engine.PoolRequest) (engine.Pool, error)
	UpdatePool(ctx context.Context, u engine.User, idText string, upd engine.PoolUpdate) (engine.Pool, error)
	DeletePool(ctx context.Context, u engine.User, idText string) error
	PoolSnapshots(ctx context.Context, u engine.User, poolID string) ([]engine.PoolSnapshot, error)
	SnapshotPool(ctx context.Context, u engine.User, poolID string) (engine.PoolSnapshot, error)
	DeletePoolSnapshot(ctx context.Context, u engine.User, poolID, name string) error
	RestoreFromSnapshot(ctx context.Context, u engine.User, poolID, name string, req engine.RestoreRequest) (engine.Operation, error)
	RollbackPool(ctx context.Context, u engine.User, poolID, name, confirm string) error
	UsageOf(ctx context.Context, u engine.User, userID string) (engine.Usage, error)
	images.OperationReader
	layout.UserLister
}

var _ Service = (*engine.Engine)(nil)

// Drivers are the pool drivers the create form offers.
var Drivers = []string{"dir", "btrfs", "zfs"}

// Handlers serve the Pools area.
type Handlers struct {
	svc    Service
	logger *slog.Logger
}

// New returns the Pools area's handlers.
func New(svc Service, logger *slog.Logger) *Handlers {
	return &Handlers{svc: svc, logger: logger.With("area", "pools")}
}

// Routes are the Pools area's routes.
func (h *Handlers) Routes() []images.Route {
	return []images.Route{
		{Pattern: "GET /pools", Handler: h.List},
		{Pattern: "POST /pools", Handler: h.Create},
		{Pattern: "GET /pools/{id}", Handler: h.Show},
		{Pattern: "POST /pools/{id}/schedule", Handler: h.Schedule},
		{Pattern: "POST /pools/{id}/delete", Handler: h.Delete},
		{Pattern: "POST /pools/{id}/snapshots", Handler: h.Snapshot},
		{Pattern: "POST /pools/{id}/snapshots/{name}/restore", Handler: h.Restore},
		{Pattern: "POST /pools/{id}/snapshots/{name}/rollback", Handler: h.Rollback},
		{Pattern: "POST /pools/{id}/snapshots/{name}/delete", Handler: h.DeleteSnapshot},
	}
}

// createForm is what the create form holds, kept when the engine refuses it.
type createForm struct {
	Name, Driver, On, Path, Device, Confirm string
	Shared                                  bool
	SnapshotAt, SnapshotKeep                string
	// NeedConfirm asks to type the device's path again before it is formatted.
	NeedConfirm bool
	Error       string
}

func defaultForm() createForm {
	return createForm{Driver: "dir", On: "path", Shared: true, SnapshotKeep: "7"}
}

// listView is what the pools page shows.
type listView struct {
	Viewer layout.Viewer
	Pools  []engine.Pool
	Usage  *engine.Usage
	Owners map[string]string
	Form   createForm
	Done   string
}

// List serves GET /pools.
func (h *Handlers) List(w http.ResponseWriter, r *http.Request) {
	h.list(w, r, http.StatusOK, defaultForm())
}

func (h *Handlers) list(w http.ResponseWriter, r *http.Request, status int, form createForm) {
	v, _ := layout.ViewerFrom(r.Context())
	ctx := r.Context()
	pools, err := h.svc.Pools(ctx, v.User)
	if err != nil {
		h.fail(w, r, "list pools", err)
		return
	}
	lv := listView{Viewer: v, Pools: pools, Owners: layout.UserNames(ctx, h.svc, v), Form: form,
		Done: doneMessages[r.URL.Query().Get("done")]}
	if us, err := h.svc.UsageOf(ctx, v.User, "me"); err == nil {
		lv.Usage = &us
	} else {
		h.logger.Warn("read usage", "user", v.User.Name, "err", err)
	}
	layout.Render(w, r, h.logger, status, layout.Page{Title: "Pools", Section: "pools", Content: listPage(lv)})
}

// Create serves POST /pools (admins): a pool on an existing directory (on=path) or
// on a block device (on=device), which is formatted only when confirm repeats its
// path; without that the form comes back asking for it.
func (h *Handlers) Create(w http.ResponseWriter, r *http.Request) {
	v, _ := layout.ViewerFrom(r.Context())
	f, ok := h.parse(w, r)
	if !ok {
		return
	}
	form := createForm{
		Name: strings.TrimSpace(f.Get("name")), Driver: f.Get("driver"), On: f.Get("on"),
		Path: strings.TrimSpace(f.Get("path")), Device: strings.TrimSpace(f.Get("device")),
		Confirm: strings.TrimSpace(f.Get("confirm_device")), Shared: f.Get("shared") == "yes",
		SnapshotAt: strings.TrimSpace(f.Get("snapshot_at")), SnapshotKeep: strings.TrimSpace(f.Get("snapshot_keep")),
	}
	req := engine.PoolRequest{Name: form.Name, Driver: form.Driver, Shared: &form.Shared, SnapshotAt: form.SnapshotAt}
	switch form.On {
	case "device":
		if form.Device == "" {
			form.Error = "Type the block device to format, like /dev/sdb."
			h.list(w, r, http.StatusBadRequest, form)
			return
		}
		if form.Confirm != form.Device {
			// Formatting erases the device: the person types its path a second time.
			form.NeedConfirm = true
			h.list(w, r, http.StatusBadRequest, form)
			return
		}
		req.Device, req.ConfirmFormat = form.Device, form.Confirm
	default:
		form.On = "path"
		req.Path = form.Path
	}
	if form.SnapshotKeep != "" {
		keep, err := strconv.Atoi(form.SnapshotKeep)
		if err != nil {
			form.Error = "Keep must be a whole number of snapshots."
			h.list(w, r, http.StatusBadRequest, form)
			return
		}
		req.SnapshotKeep = keep
	}
	p, err := h.svc.CreatePool(r.Context(), v.User, req)
	if err != nil {
		var status int
		status, form.Error = images.Refuse(h.logger, r, "create pool", err)
		h.list(w, r, status, form)
		return
	}
	h.logger.Info("pool created", "pool", p.ID, "driver", p.Driver, "user", v.User.Name)
	http.Redirect(w, r, images.WithQuery(URL(p.ID), "done", "created"), http.StatusSeeOther)
}

// detailView is what a pool's page shows.
type detailView struct {
	Viewer       layout.Viewer
	Pool         engine.Pool
	Snapshots    []engine.PoolSnapshot
	SnapshotsErr string
	Owners       map[string]string
	Op           *engine.Operation
	Done         string
	Alert        string
}

// Show serves GET /pools/{id}: the pool, its schedule, and its snapshots.
func (h *Handlers) Show(w http.ResponseWriter, r *http.Request) {
	h.show(w, r, http.StatusOK, "")
}

func (h *Handlers) show(w http.ResponseWriter, r *http.Request, status int, alert string) {
	v, _ := layout.ViewerFrom(r.Context())
	ctx := r.Context()
	p, err := h.svc.Pool(ctx, v.User, r.PathValue("id"))
	if err != nil {
		h.fail(w, r, "show pool", err)
		return
	}
	dv := detailView{Viewer: v, Pool: p, Owners: layout.UserNames(ctx, h.svc, v), Alert: alert,
		Op: images.ReadOperation(r, h.svc, v.User), Done: doneMessages[r.URL.Query().Get("done")]}
	if p.Snapshots && p.State == engine.PoolReady {
		if dv.Snapshots, err = h.svc.PoolSnapshots(ctx, v.User, r.PathValue("id")); err != nil {
			_, dv.SnapshotsErr = images.Refuse(h.logger, r, "list pool snapshots", err)
		}
		slices.SortFunc(dv.Snapshots, func(a, b engine.PoolSnapshot) int { return b.CreatedAt.Compare(a.CreatedAt) })
	}
	layout.Render(w, r, h.logger, status, layout.Page{Title: p.Name, Section: "pools", Content: detailPage(dv)})
}

// Messages after an action went through, by the "done" query parameter.
var doneMessages = map[string]string{
	"created":     "The pool was added.",
	"deleted":     "The pool was removed from Cairn; its files stay where they were.",
	"schedule":    "The snapshot schedule was saved.",
	"snapshot":    "The snapshot was taken.",
	"rolledback":  "The pool was rolled back to the snapshot.",
	"snapdeleted": "The snapshot was deleted.",
}

// action runs one of a pool page's forms: do returns where to go; a refusal shows
// the pool's page again with the message.
func (h *Handlers) action(w http.ResponseWriter, r *http.Request, op string, do func(ctx context.Context, u engine.User, f url.Values) (string, error)) {
	v, _ := layout.ViewerFrom(r.Context())
	f, ok := h.parse(w, r)
	if !ok {
		return
	}
	next, err := do(r.Context(), v.User, f)
	if err != nil {
		status, msg := images.Refuse(h.logger, r, op, err)
		h.show(w, r, status, msg)
		return
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (h *Handlers) parse(w http.ResponseWriter, r *http.Request) (url.Values, bool) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		layout.Error(w, r, h.logger, http.StatusBadRequest, "The form could not be read. Reload the page and try again.")
		return nil, false
	}
	return r.PostForm, true
}

// refusal is the console's refusal of a form before the engine is asked.
type refusal string

func (e refusal) Error() string { return string(e) }
func (e refusal) Unwrap() error { return engine.ErrInvalid }

// Schedule serves POST /pools/{id}/schedule (admins): snapshot_at (HH:MM, empty for
// none) and snapshot_keep.
func (h *Handlers) Schedule(w http.ResponseWriter, r *http.Request) {
	h.action(w, r, "set snapshot schedule", func(ctx context.Context, u engine.User, f url.Values) (string, error) {
		at := strings.TrimSpace(f.Get("snapshot_at"))
		upd := engine.PoolUpdate{SnapshotAt: &at}
		if s := strings.TrimSpace(f.Get("snapshot_keep")); s != "" {
			keep, err := strconv.Atoi(s)
			if err != nil || keep < 1 {
				return "", refusal("Keep must be a whole number of snapshots, 1 or more.")
			}
			upd.SnapshotKeep = &keep
		}
		p, err := h.svc.UpdatePool(ctx, u, r.PathValue("id"), upd)
		if err != nil {
			return "", err
		}
		return images.WithQuery(URL(p.ID), "done", "schedule"), nil
	})
}

// Delete serves POST /pools/{id}/delete (admins); the form must carry confirm=yes.
func (h *Handlers) Delete(w http.ResponseWriter, r *http.Request) {
	h.action(w, r, "delete pool", func(ctx context.Context, u engine.User, f url.Values) (string, error) {
		if f.Get("confirm") != "yes" {
			return "", refusal("Tick the box to confirm that the pool is to be removed.")
		}
		if err := h.svc.DeletePool(ctx, u, r.PathValue("id")); err != nil {
			return "", err
		}
		return images.WithQuery("/pools", "done", "deleted"), nil
	})
}

// Snapshot serves POST /pools/{id}/snapshots (admins): a snapshot of the whole pool now.
func (h *Handlers) Snapshot(w http.ResponseWriter, r *http.Request) {
	h.action(w, r, "snapshot pool", func(ctx context.Context, u engine.User, _ url.Values) (string, error) {
		if _, err := h.svc.SnapshotPool(ctx, u, r.PathValue("id")); err != nil {
			return "", err
		}
		return images.WithQuery(idURL(r.PathValue("id")), "done", "snapshot"), nil
	})
}

// Restore serves POST /pools/{id}/snapshots/{name}/restore: one image the snapshot
// holds (image, from the snapshot's own list, so also one deleted since), in place
// (mode=inplace) or as a new image (mode=new, name), as an operation.
func (h *Handlers) Restore(w http.ResponseWriter, r *http.Request) {
	h.action(w, r, "restore from snapshot", func(ctx context.Context, u engine.User, f url.Values) (string, error) {
		req := engine.RestoreRequest{Image: f.Get("image")}
		if req.Image == "" {
			return "", refusal("Choose the image to restore.")
		}
		if f.Get("mode") == "new" {
			req.Name = strings.TrimSpace(f.Get("name"))
			if req.Name == "" {
				return "", refusal("Give the restored image a name, or restore it in place.")
			}
		}
		op, err := h.svc.RestoreFromSnapshot(ctx, u, r.PathValue("id"), r.PathValue("name"), req)
		if err != nil {
			return "", err
		}
		return images.WithQuery(idURL(r.PathValue("id")), "op", op.ID), nil
	})
}

// Rollback serves POST /pools/{id}/snapshots/{name}/rollback (admins): the whole pool
// back to the snapshot. confirm must be the pool's name; otherwise the page asks for it.
func (h *Handlers) Rollback(w http.ResponseWriter, r *http.Request) {
	h.action(w, r, "roll pool back", func(ctx context.Context, u engine.User, f url.Values) (string, error) {
		p, err := h.svc.Pool(ctx, u, r.PathValue("id"))
		if err != nil {
			return "", err
		}
		confirm := strings.TrimSpace(f.Get("confirm"))
		if confirm != p.Name {
			return "", refusal("Rolling back replaces everything in pool " + p.Name + " with snapshot " + r.PathValue("name") +
				": images made since are gone. To go ahead, type the pool's name, " + p.Name + ", into the confirmation box.")
		}
		if err := h.svc.RollbackPool(ctx, u, r.PathValue("id"), r.PathValue("name"), confirm); err != nil {
			return "", err
		}
		return images.WithQuery(URL(p.ID), "done", "rolledback"), nil
	})
}

// DeleteSnapshot serves POST /pools/{id}/snapshots/{name}/delete (admins); the form
// must carry confirm=yes.
func (h *Handlers) DeleteSnapshot(w http.ResponseWriter, r *http.Request) {
	h.action(w, r, "delete pool snapshot", func(ctx context.Context, u engine.User, f url.Values) (string, error) {
		if f.Get("confirm") != "yes" {
			return "", refusal("Tick the box to confirm that the snapshot is to be deleted.")
		}
		if err := h.svc.DeletePoolSnapshot(ctx, u, r.PathValue("id"), r.PathValue("name")); err != nil {
			return "", err
		}
		return images.WithQuery(idURL(r.PathValue("id")), "done", "snapdeleted"), nil
	})
}

// fail answers an engine error that leaves nothing to show with an error page.
func (h *Handlers) fail(w http.ResponseWriter, r *http.Request, op string, err error) {
	status, msg := images.Refuse(h.logger, r, op, err)
	if status == http.StatusNotFound {
		msg = "There is no pool " + r.PathValue("id") + ". The Pools page lists those there are."
	}
	layout.Error(w, r, h.logger, status, msg)
}

// URL is the path of a pool's page.
func URL(id int) string { return "/pools/" + strconv.Itoa(id) }

func idURL(id string) string { return "/pools/" + url.PathEscape(id) }

// snapshotURL is the path of an action on one snapshot.
func snapshotURL(p engine.Pool, name, action string) string {
	return URL(p.ID) + "/snapshots/" + url.PathEscape(name) + "/" + action
}
