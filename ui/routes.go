package ui

import (
	"net/http"

	"github.com/cairn-os/cairn/ui/backups"
	"github.com/cairn-os/cairn/ui/consoles"
	"github.com/cairn-os/cairn/ui/dashboard"
	"github.com/cairn-os/cairn/ui/images"
	"github.com/cairn-os/cairn/ui/layout"
	"github.com/cairn-os/cairn/ui/login"
	"github.com/cairn-os/cairn/ui/networks"
	"github.com/cairn-os/cairn/ui/nodes"
	"github.com/cairn-os/cairn/ui/operations"
	"github.com/cairn-os/cairn/ui/pools"
	"github.com/cairn-os/cairn/ui/servers"
	"github.com/cairn-os/cairn/ui/static"
)

// access is who may use a route.
type access int

const (
	// asset: anyone, and no session is looked up.
	asset access = iota
	// public: anyone; the session is looked up when there is a cookie.
	public
	// signedIn: a valid session, and the CSRF token on every unsafe method.
	signedIn
)

// route is one line of the browser's route table.
type route struct {
	pattern string
	access  access
	handler http.HandlerFunc
}

// routes is the browser's route table: every page and action of the console.
func (s *server) routes() []route {
	lh := login.New(s.svc, s.logger)
	dh := dashboard.New(s.svc, s.logger)
	nh := nodes.New(s.svc, s.logger)
	ch := consoles.New(s.svc, s.logger)
	sh := servers.New(s.svc, s.logger)
	oh := operations.New(s.svc, s.logger)
	ih := images.New(s.svc, s.logger)
	ph := pools.New(s.svc, s.logger)
	bh := backups.New(s.svc, s.logger)
	wh := networks.New(s.svc, s.logger)
	return []route{
		{"GET " + static.Prefix, asset, static.Handler().ServeHTTP},
		{"GET /login", public, lh.Form},
		{"POST /login", public, lh.Login},
		{"POST /logout", signedIn, lh.Logout},
		{"GET /{$}", signedIn, dh.Show},
		{"GET /nodes", signedIn, nh.List},
		{"GET /nodes/table", signedIn, nh.List},
		{"GET /nodes/{id}", signedIn, nh.Show},
		{"POST /nodes/{id}/rename", signedIn, nh.Rename},
		{"POST /nodes/{id}/maintenance", signedIn, nh.Maintenance},
		{"GET /servers", signedIn, sh.List},
		{"GET /servers/table", signedIn, sh.List},
		{"GET /servers/new", signedIn, sh.NewForm},
		{"POST /servers", signedIn, sh.Create},
		{"GET /servers/{id}", signedIn, sh.Show},
		{"POST /servers/{id}/start", signedIn, sh.Start},
		{"POST /servers/{id}/shutdown", signedIn, sh.Shutdown},
		{"POST /servers/{id}/stop", signedIn, sh.Stop},
		{"POST /servers/{id}/reboot", signedIn, sh.Reboot},
		{"POST /servers/{id}/suspend", signedIn, sh.Suspend},
		{"POST /servers/{id}/resume", signedIn, sh.Resume},
		{"POST /servers/{id}/migrate", signedIn, sh.Migrate},
		{"POST /servers/{id}/delete", signedIn, sh.Delete},
		{"POST /servers/{id}/autostart", signedIn, sh.Autostart},
		{"POST /servers/{id}/disks", signedIn, sh.AttachDisk},
		{"POST /servers/{id}/disks/{index}/detach", signedIn, sh.DetachDisk},
		{"POST /servers/{id}/cdrom", signedIn, sh.SetCDROM},
		{"POST /servers/{id}/connections", signedIn, sh.AttachConnection},
		{"POST /servers/{id}/connections/{conn}/detach", signedIn, sh.DetachConnection},
		{"GET /operations", signedIn, oh.List},
		{"GET /operations/{id}", signedIn, oh.Show},
		{"POST /operations/{id}/cancel", signedIn, oh.Cancel},
		{"GET /images", signedIn, ih.List},
		{"GET /images/table", signedIn, ih.List},
		{"POST /images/upload", signedIn, ih.StartUpload},
		{"GET /images/{id}", signedIn, ih.Show},
		{"GET /images/{id}/upload", signedIn, ih.UploadStatus},
		{"PATCH /images/{id}/upload", signedIn, ih.UploadChunk},
		{"GET /images/{id}/download", signedIn, ih.Download},
		{"POST /images/{id}/master", signedIn, ih.SetMaster},
		{"POST /images/{id}/clone", signedIn, ih.Clone},
		{"POST /images/{id}/convert", signedIn, ih.Convert},
		{"POST /images/{id}/resize", signedIn, ih.Resize},
		{"POST /images/{id}/flatten", signedIn, ih.Flatten},
		{"POST /images/{id}/backup", signedIn, ih.Backup},
		{"POST /images/{id}/schedule", signedIn, ih.Schedule},
		{"POST /images/{id}/delete", signedIn, ih.Delete},
		{"GET /pools", signedIn, ph.List},
		{"POST /pools", signedIn, ph.Create},
		{"GET /pools/{id}", signedIn, ph.Show},
		{"POST /pools/{id}/schedule", signedIn, ph.Schedule},
		{"POST /pools/{id}/delete", signedIn, ph.Delete},
		{"POST /pools/{id}/snapshots", signedIn, ph.Snapshot},
		{"POST /pools/{id}/snapshots/{name}/restore", signedIn, ph.Restore},
		{"POST /pools/{id}/snapshots/{name}/rollback", signedIn, ph.Rollback},
		{"POST /pools/{id}/snapshots/{name}/delete", signedIn, ph.DeleteSnapshot},
		{"GET /backups", signedIn, bh.List},
		{"POST /backups/{id}/restore", signedIn, bh.Restore},
		{"POST /backups/{id}/delete", signedIn, bh.Delete},
		{"GET /networks", signedIn, wh.Networks},
		{"POST /networks", signedIn, wh.CreateNetwork},
		{"POST /networks/settings", signedIn, wh.Settings},
		{"POST /networks/{id}/update", signedIn, wh.UpdateNetwork},
		{"POST /networks/{id}/delete", signedIn, wh.DeleteNetwork},
		{"GET /connections", signedIn, wh.Connections},
		{"POST /connections", signedIn, wh.CreateConnection},
		{"POST /connections/{id}/attach", signedIn, wh.Attach},
		{"POST /connections/{id}/detach", signedIn, wh.Detach},
		{"POST /connections/{id}/ports", signedIn, wh.Ports},
		{"POST /connections/{id}/rename", signedIn, wh.RenameConnection},
		{"POST /connections/{id}/delete", signedIn, wh.DeleteConnection},
		{"GET /servers/{id}/console", signedIn, ch.Serial},
		{"GET /servers/{id}/console/ws", signedIn, ch.SerialSocket},
		{"GET /servers/{id}/vnc", signedIn, ch.VNC},
		{"GET /servers/{id}/vnc/ws", signedIn, ch.VNCSocket},
		{"/", signedIn, s.notFound},
	}
}

func (s *server) notFound(w http.ResponseWriter, r *http.Request) {
	layout.Error(w, r, s.logger, http.StatusNotFound, "There is no page at "+r.URL.Path+". The nav above lists what there is.")
}
