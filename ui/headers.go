package ui

import (
	"net/http"

	"github.com/cairn-os/cairn/ui/layout"
)

// ContentSecurityPolicy allows only this origin's scripts, styles and connections:
// no inline scripts or styles anywhere, no framing.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"

// securityHeaders sets the headers every response of the console carries, errors
// and assets included.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), usb=(), payment=()")
		next.ServeHTTP(w, r)
	})
}

// recoverer turns a panic in a handler into a logged 500 instead of a dropped
// connection.
func (s *server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			p := recover()
			if p == nil {
				return
			}
			if p == http.ErrAbortHandler {
				panic(p) // the server's signal to drop the connection quietly
			}
			s.logger.Error("handler panic", "method", r.Method, "path", r.URL.Path, "panic", p)
			layout.Error(w, r, s.logger, http.StatusInternalServerError,
				"Something went wrong in the console. Reload the page; the engine's log says what failed.")
		}()
		next.ServeHTTP(w, r)
	})
}
