// Package login is the web console's sign-in: the login form, the session cookie it
// sets, logging out, and a small per-address limit on failed attempts.
package login

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/ui/layout"
)

// CookieName is the session cookie. It holds the session's ID and is HttpOnly,
// Secure and SameSite=Strict.
const CookieName = "cairn_session"

// Service is what signing in and out needs of the engine.
type Service interface {
	Authenticate(ctx context.Context, name, password string) (engine.User, error)
	CreateSession(ctx context.Context, u engine.User) (engine.Session, error)
	DeleteSession(ctx context.Context, id string) error
}

// Messages a person reads on the login form.
const (
	msgWrong    = "Wrong name or password"
	msgTooMany  = "Too many failed attempts from your address. Wait a minute, then try again."
	msgEngine   = "The engine could not check your login. Try again in a moment."
	msgRequired = "Enter your name and password"
)

// Handlers serve /login and /logout.
type Handlers struct {
	svc     Service
	logger  *slog.Logger
	limiter *limiter
}

// New returns the sign-in handlers. Each client address may fail 10 times in a row,
// then once every 6 seconds.
func New(svc Service, logger *slog.Logger) *Handlers {
	return &Handlers{
		svc:     svc,
		logger:  logger.With("area", "login"),
		limiter: newLimiter(10, 6*time.Second, time.Now),
	}
}

// Form serves GET /login; a viewer who is signed in already goes on to the page asked for.
func (h *Handlers) Form(w http.ResponseWriter, r *http.Request) {
	next := SafeNext(r.URL.Query().Get("next"))
	if _, ok := layout.ViewerFrom(r.Context()); ok {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	h.render(w, r, http.StatusOK, form{Next: next})
}

// Login serves POST /login: on success it sets the session cookie and redirects to the
// page asked for; on failure it shows the form again with the name kept.
func (h *Handlers) Login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		layout.Error(w, r, h.logger, http.StatusBadRequest, "The login form could not be read. Reload the page and try again.")
		return
	}
	f := form{
		Name: strings.TrimSpace(r.PostForm.Get("username")),
		Next: SafeNext(r.PostForm.Get("next")),
	}
	password := r.PostForm.Get("password")
	client := clientKey(r.RemoteAddr)
	if wait := h.limiter.wait(client); wait > 0 {
		h.logger.Warn("login rate limited", "client", client, "name", f.Name)
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Round(time.Second)/time.Second)+1))
		f.Error = msgTooMany
		h.render(w, r, http.StatusTooManyRequests, f)
		return
	}
	if f.Name == "" || password == "" {
		f.Error = msgRequired
		h.render(w, r, http.StatusOK, f)
		return
	}
	u, err := h.svc.Authenticate(r.Context(), f.Name, password)
	switch {
	case errors.Is(err, engine.ErrUnauthorized):
		h.limiter.fail(client)
		h.logger.Info("login failed", "client", client, "name", f.Name)
		f.Error = msgWrong
		h.render(w, r, http.StatusOK, f)
		return
	case err != nil:
		h.logger.Error("authenticate", "name", f.Name, "err", err)
		f.Error = msgEngine
		h.render(w, r, http.StatusServiceUnavailable, f)
		return
	}
	s, err := h.svc.CreateSession(r.Context(), u)
	if err != nil {
		h.logger.Error("create session", "user", u.Name, "err", err)
		f.Error = msgEngine
		h.render(w, r, http.StatusServiceUnavailable, f)
		return
	}
	h.limiter.forget(client)
	h.logger.Info("login", "user", u.Name, "client", client)
	SetCookie(w, s)
	http.Redirect(w, r, f.Next, http.StatusSeeOther)
}

// Logout serves POST /logout: it ends the session in the engine, clears the cookie
// and goes to the login form.
func (h *Handlers) Logout(w http.ResponseWriter, r *http.Request) {
	v, ok := layout.ViewerFrom(r.Context())
	if ok {
		if err := h.svc.DeleteSession(r.Context(), v.Session.ID); err != nil && !errors.Is(err, engine.ErrNotFound) {
			h.logger.Error("delete session", "user", v.User.Name, "err", err)
			layout.Error(w, r, h.logger, http.StatusInternalServerError,
				"The engine could not end your session. Try again in a moment.")
			return
		}
		h.logger.Info("logout", "user", v.User.Name)
	}
	ClearCookie(w)
	if layout.IsHTMX(r) {
		w.Header().Set("HX-Redirect", "/login")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

func (h *Handlers) render(w http.ResponseWriter, r *http.Request, status int, f form) {
	layout.Render(w, r, h.logger, status, layout.Page{Title: "Sign in", Content: page(f)})
}

// SetCookie sets the session cookie for s.
func SetCookie(w http.ResponseWriter, s engine.Session) {
	c := &http.Cookie{
		Name:     CookieName,
		Value:    s.ID,
		Path:     "/",
		HttpOnly: true,
		Secure:   true,
		SameSite: http.SameSiteStrictMode,
	}
	if !s.ExpiresAt.IsZero() {
		c.Expires = s.ExpiresAt.UTC()
	}
	http.SetCookie(w, c)
}

// ClearCookie tells the browser to drop the session cookie.
func ClearCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{
		Name:     CookieName,
		Value:    "",
		Path:     "/",
		MaxAge:   -1,
		HttpOnly: true,
		Secure:   true,
		SameSite: http.SameSiteStrictMode,
	})
}

// SafeNext returns next when it is a path on this site, and "/" otherwise, so that
// the login form cannot be made to send anyone elsewhere.
func SafeNext(next string) string {
	if next == "" || next[0] != '/' || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n\t") {
		return "/"
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || strings.HasPrefix(u.Path, "/login") {
		return "/"
	}
	return next
}

// form is what the login form shows.
type form struct {
	Name  string
	Next  string
	Error string
}
