// Package ui is Cairn's web console: the browser mux with its sessions, CSRF
// protection and strict Content-Security-Policy, in front of one package per area
// (login, dashboard, nodes, servers, networks, …). It calls the engine's service
// layer directly, never the API over HTTP.
package ui

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/cairn-os/cairn/supervisor/engine"
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

// Service is everything the web console needs of the engine: the union of what its
// areas declare, and the session lookup of the mux. *engine.Engine satisfies it.
type Service interface {
	login.Service
	dashboard.Service
	nodes.Service
	consoles.Service
	servers.Service
	operations.Service
	images.Service
	pools.Service
	backups.Service
	networks.Service
	SessionUser(ctx context.Context, id string) (engine.User, engine.Session, error)
}

// New returns the web console's browser mux. Every response carries the security
// headers; pages need a session, except the login form and the assets.
func New(svc Service, logger *slog.Logger) http.Handler {
	logger = logger.With("component", "ui")
	if !static.Has(htmxAsset) {
		logger.Warn("htmx is not in this build: pages will not update live; run make assets and rebuild", "asset", htmxAsset)
	}
	s := &server{svc: svc, logger: logger}
	mux := http.NewServeMux()
	for _, rt := range s.routes() {
		mux.Handle(rt.pattern, s.guard(rt.access, rt.handler))
	}
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		layout.Error(w, r, logger, http.StatusForbidden, msgCrossOrigin)
	}))
	return s.recoverer(securityHeaders(cop.Handler(mux)))
}

// htmxAsset is the vendored htmx the shell loads.
const htmxAsset = "vendor/htmx.min.js"

type server struct {
	svc    Service
	logger *slog.Logger
}
