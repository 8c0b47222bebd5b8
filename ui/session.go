package ui

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/ui/layout"
	"github.com/cairn-os/cairn/ui/login"
)

// Messages of the mux's refusals.
const (
	msgCSRF        = "This form has expired or did not come from this console. Reload the page and try again."
	msgCrossOrigin = "This request came from another site, so the console refused it. Open the console directly and try again."
	msgSessionDown = "The engine could not check your session. Reload in a moment."
)

// guard wraps h with what its access needs: the session lookup, the redirect to the
// login form, the CSRF check.
func (s *server) guard(a access, h http.HandlerFunc) http.Handler {
	if a == asset {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, ok, err := s.viewer(r)
		if err != nil {
			s.logger.Error("look up session", "err", err)
			layout.Error(w, r, s.logger, http.StatusServiceUnavailable, msgSessionDown)
			return
		}
		if ok {
			r = r.WithContext(layout.WithViewer(r.Context(), v))
		}
		if a == public {
			h(w, r)
			return
		}
		if !ok {
			s.toLogin(w, r)
			return
		}
		if !safeMethod(r.Method) && !validCSRF(w, r, v.Session.CSRF) {
			s.logger.Warn("csrf token missing or wrong", "method", r.Method, "path", r.URL.Path, "user", v.User.Name)
			layout.Error(w, r, s.logger, http.StatusForbidden, msgCSRF)
			return
		}
		h(w, r)
	})
}

// viewer returns the user and session of r's cookie; false when there is none or
// the engine no longer knows it.
func (s *server) viewer(r *http.Request) (layout.Viewer, bool, error) {
	c, err := r.Cookie(login.CookieName)
	if err != nil || c.Value == "" {
		return layout.Viewer{}, false, nil
	}
	u, sess, err := s.svc.SessionUser(r.Context(), c.Value)
	switch {
	case errors.Is(err, engine.ErrNotFound), errors.Is(err, engine.ErrUnauthorized):
		return layout.Viewer{}, false, nil
	case err != nil:
		return layout.Viewer{}, false, err
	}
	if !sess.ExpiresAt.IsZero() && time.Now().After(sess.ExpiresAt) {
		return layout.Viewer{}, false, nil
	}
	return layout.Viewer{User: u, Session: sess}, true, nil
}

// toLogin sends a request without a session to the login form: htmx with
// HX-Redirect (it would otherwise swap the form into the page), a browser with a
// redirect that comes back to the page it asked for.
func (s *server) toLogin(w http.ResponseWriter, r *http.Request) {
	if _, err := r.Cookie(login.CookieName); err == nil {
		login.ClearCookie(w)
	}
	if layout.IsHTMX(r) {
		w.Header().Set("HX-Redirect", "/login")
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	target := "/login"
	if r.Method == http.MethodGet && r.URL.Path != "/" {
		target += "?next=" + url.QueryEscape(login.SafeNext(r.URL.RequestURI()))
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// validCSRF reports whether r carries the session's CSRF token, in the X-CSRF-Token
// header (htmx) or the csrf form field (plain forms).
func validCSRF(w http.ResponseWriter, r *http.Request, want string) bool {
	if want == "" {
		return false
	}
	got := r.Header.Get(layout.CSRFHeader)
	if got == "" {
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		got = r.PostFormValue(layout.CSRFField)
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}
