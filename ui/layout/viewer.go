// Package layout is the web console's page shell and what every area shares: the
// render helper that answers htmx with only the fragment it asked for, the viewer of a
// request (user, session, CSRF token), state badges, meters and human units.
package layout

import (
	"context"

	"github.com/cairn-os/cairn/supervisor/engine"
)

// Viewer is the signed-in user of a request and the session it came with.
type Viewer struct {
	User    engine.User
	Session engine.Session
}

type viewerKey struct{}

// WithViewer returns ctx carrying v; the browser mux sets it after checking the
// session cookie.
func WithViewer(ctx context.Context, v Viewer) context.Context {
	return context.WithValue(ctx, viewerKey{}, v)
}

// ViewerFrom returns the viewer of ctx, and false for a request without a session.
func ViewerFrom(ctx context.Context) (Viewer, bool) {
	v, ok := ctx.Value(viewerKey{}).(Viewer)
	return v, ok
}

// CSRFField is the name of the hidden form field that carries the session's CSRF
// token; htmx requests send it as the CSRFHeader instead.
const CSRFField = "csrf"

// CSRFHeader is the request header htmx sends the CSRF token in (set with hx-headers
// on <body>).
const CSRFHeader = "X-CSRF-Token"

// csrfToken is the CSRF token of ctx's session, or "".
func csrfToken(ctx context.Context) string {
	v, _ := ViewerFrom(ctx)
	return v.Session.CSRF
}
