package login

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/ui/layout"
)

type fakeService struct {
	authErr error
	deleted []string
}

func (f *fakeService) Authenticate(_ context.Context, name, password string) (engine.User, error) {
	if f.authErr != nil {
		return engine.User{}, f.authErr
	}
	if name != "alice" || password != "pw" {
		return engine.User{}, engine.ErrUnauthorized
	}
	return engine.User{ID: "u1", Name: "alice"}, nil
}

func (f *fakeService) CreateSession(context.Context, engine.User) (engine.Session, error) {
	return engine.Session{ID: "s1", CSRF: "c1", ExpiresAt: time.Now().Add(time.Hour)}, nil
}

func (f *fakeService) DeleteSession(_ context.Context, id string) error {
	f.deleted = append(f.deleted, id)
	return nil
}

func post(h http.HandlerFunc, form url.Values) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	h(rec, r)
	return rec
}

func newHandlers(svc Service) *Handlers {
	return New(svc, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func TestLoginFlows(t *testing.T) {
	svc := &fakeService{}
	h := newHandlers(svc)

	rec := post(h.Login, url.Values{"username": {"alice"}, "password": {"pw"}, "next": {"/nodes"}})
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/nodes" {
		t.Errorf("good login: %d to %q", rec.Code, rec.Header().Get("Location"))
	}
	if sc := rec.Header().Get("Set-Cookie"); !strings.Contains(sc, "cairn_session=s1") || !strings.Contains(sc, "HttpOnly") ||
		!strings.Contains(sc, "Secure") || !strings.Contains(sc, "SameSite=Strict") {
		t.Errorf("Set-Cookie %q", sc)
	}

	rec = post(h.Login, url.Values{"username": {" alice "}, "password": {""}})
	if !strings.Contains(rec.Body.String(), msgRequired) || rec.Header().Get("Set-Cookie") != "" {
		t.Errorf("empty password: %q", rec.Body.String())
	}

	svc.authErr = errors.New("store closed")
	rec = post(h.Login, url.Values{"username": {"alice"}, "password": {"pw"}})
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), msgEngine) {
		t.Errorf("engine failure: %d %q", rec.Code, rec.Body.String())
	}
}

func TestLogoutDeletesTheViewersSession(t *testing.T) {
	svc := &fakeService{}
	h := newHandlers(svc)
	r := httptest.NewRequest(http.MethodPost, "/logout", nil)
	r = r.WithContext(layout.WithViewer(r.Context(), layout.Viewer{Session: engine.Session{ID: "s9"}}))
	rec := httptest.NewRecorder()
	h.Logout(rec, r)
	if len(svc.deleted) != 1 || svc.deleted[0] != "s9" {
		t.Errorf("deleted %v, want [s9]", svc.deleted)
	}
	if rec.Code != http.StatusSeeOther || !strings.Contains(rec.Header().Get("Set-Cookie"), "Max-Age=0") {
		t.Errorf("logout: %d, Set-Cookie %q", rec.Code, rec.Header().Get("Set-Cookie"))
	}
}

func TestLimiterAllowsABurstThenOnePerInterval(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newLimiter(3, 10*time.Second, func() time.Time { return now })
	for range 3 {
		if l.wait("a") != 0 {
			t.Fatal("limited inside the burst")
		}
		l.fail("a")
	}
	if w := l.wait("a"); w != 10*time.Second {
		t.Fatalf("after the burst: wait %v, want 10s", w)
	}
	if l.wait("b") != 0 {
		t.Error("another client is limited")
	}
	now = now.Add(10 * time.Second)
	if l.wait("a") != 0 {
		t.Error("not allowed again after one interval")
	}
	l.fail("a")
	if l.wait("a") == 0 {
		t.Error("allowed twice in one interval")
	}
	l.forget("a")
	if l.wait("a") != 0 {
		t.Error("still limited after a successful login")
	}
}

func TestClientKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1:5000":              "192.0.2.1",
		"[::ffff:192.0.2.1]:5000":     "192.0.2.1",
		"[2001:db8:1:2:3::4]:443":     "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::9]:1234": "2001:db8:1:2::/64",
		"pipe":                        "pipe",
	} {
		if got := clientKey(in); got != want {
			t.Errorf("clientKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"": "/", "/": "/", "/nodes/n-1?x=1": "/nodes/n-1?x=1",
		"http://evil.example/": "/", "//evil.example": "/", `/\evil.example`: "/",
		"/login?next=/": "/", "javascript:alert(1)": "/", "/a\r\nSet-Cookie: x": "/",
	} {
		if got := SafeNext(in); got != want {
			t.Errorf("SafeNext(%q) = %q, want %q", in, got, want)
		}
	}
}
