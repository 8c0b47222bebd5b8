package ui

import (
	"net/http"

	"github.com/cairn-os/cairn/ui/consoles"
	"github.com/cairn-os/cairn/ui/dashboard"
	"github.com/cairn-os/cairn/ui/layout"
	"github.com/cairn-os/cairn/ui/login"
	"github.com/cairn-os/cairn/ui/nodes"
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
	return []route{
		{"GET " + static.Prefix, asset, static.Handler().ServeHTTP},
		{"GET /login", public, lh.Form},
		{"POST /login", public, lh.Login},
		{"POST /logout", signedIn, lh.Logout},
		{"GET /{$}", signedIn, dh.Show},
		{"GET /nodes", signedIn, nh.List},
		{"GET /nodes/table", signedIn, nh.List},
		{"GET /nodes/{id}", signedIn, nh.Show},
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
