package consoles

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/cairn-os/cairn/supervisor/console"
	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/ui/layout"
	"github.com/cairn-os/cairn/ui/static"
)

// fakeService answers ConsoleTarget as the engine would for a few servers.
type fakeService struct {
	servers map[string]string // id → name
	err     error             // the answer for every server when set
	target  func(kind console.Kind) console.Target
	dials   atomic.Int32
}

func (f *fakeService) ConsoleTarget(_ context.Context, u engine.User, id string, kind console.Kind) (console.Target, string, error) {
	if f.err != nil {
		return console.Target{}, "", f.err
	}
	name, ok := f.servers[id]
	if !ok {
		return console.Target{}, "", fmt.Errorf("server %s: %w", id, engine.ErrNotFound)
	}
	if u.Name != "alice" && u.Role != engine.RoleAdmin {
		return console.Target{}, "", fmt.Errorf("open the console of server %s: %w", id, engine.ErrForbidden)
	}
	t := console.Target{Dial: func(context.Context) (net.Conn, error) {
		f.dials.Add(1)
		return nil, errors.New("no guest")
	}}
	if f.target != nil {
		inner := f.target(kind)
		t.Dial = func(ctx context.Context) (net.Conn, error) {
			f.dials.Add(1)
			return inner.Dial(ctx)
		}
		t.History = inner.History
	}
	return t, name, nil
}

// mux routes as the web console does, with the viewer user (none when nil).
func mux(svc Service, user *engine.User) http.Handler {
	h := New(svc, slog.New(slog.NewTextHandler(io.Discard, nil)))
	m := http.NewServeMux()
	m.HandleFunc("GET /servers/{id}/console", h.Serial)
	m.HandleFunc("GET /servers/{id}/console/ws", h.SerialSocket)
	m.HandleFunc("GET /servers/{id}/vnc", h.VNC)
	m.HandleFunc("GET /servers/{id}/vnc/ws", h.VNCSocket)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if user != nil {
			r = r.WithContext(layout.WithViewer(r.Context(), layout.Viewer{User: *user}))
		}
		m.ServeHTTP(w, r)
	})
}

var (
	alice = &engine.User{ID: "u-1", Name: "alice", Role: engine.RoleUser}
	bob   = &engine.User{ID: "u-2", Name: "bob", Role: engine.RoleUser}
)

func get(h http.Handler, target string, header ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

// wsHeaders are those of a browser's websocket handshake from the console's own page.
var wsHeaders = []string{
	"Connection", "Upgrade", "Upgrade", "websocket", "Sec-WebSocket-Version", "13",
	"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==", "Origin", "http://example.com",
}

func TestRefusalsComeBeforeTheUpgrade(t *testing.T) {
	tests := []struct {
		name   string
		svc    *fakeService
		user   *engine.User
		path   string
		status int
		says   string
	}{
		{"unknown server", &fakeService{servers: map[string]string{}}, alice, "/servers/s-9", 404, "There is no server s-9"},
		{"someone else's server", &fakeService{servers: map[string]string{"s-1": "web-1"}}, bob, "/servers/s-1", 403, "owner and administrators"},
		{"no session", &fakeService{servers: map[string]string{"s-1": "web-1"}}, nil, "/servers/s-1", 401, "Sign in"},
		{"server not running", &fakeService{err: fmt.Errorf("open the console of server s-1: %w: it is stopped; start it first", engine.ErrInvalid)}, alice, "/servers/s-1", 409, "start it first"},
		{"engine failure", &fakeService{err: errors.New("disk on fire")}, alice, "/servers/s-1", 500, "Reload in a moment"},
	}
	for _, tt := range tests {
		for _, kind := range []string{"console", "vnc"} {
			t.Run(tt.name+"/"+kind, func(t *testing.T) {
				h := mux(tt.svc, tt.user)
				page := get(h, tt.path+"/"+kind)
				if page.Code != tt.status || !strings.Contains(page.Body.String(), tt.says) {
					t.Errorf("page: %d, want %d saying %q:\n%.400s", page.Code, tt.status, tt.says, page.Body.String())
				}
				if strings.Contains(page.Body.String(), "disk on fire") {
					t.Error("an internal error reached the page")
				}
				ws := get(h, tt.path+"/"+kind+"/ws", wsHeaders...)
				if ws.Code != tt.status || ws.Header().Get("Upgrade") != "" {
					t.Errorf("websocket: %d (Upgrade %q), want %d without upgrading", ws.Code, ws.Header().Get("Upgrade"), tt.status)
				}
				if n := tt.svc.dials.Load(); n != 0 {
					t.Errorf("the console was dialled %d times", n)
				}
			})
		}
	}
}

func TestSerialPage(t *testing.T) {
	h := mux(&fakeService{servers: map[string]string{"s-1": "web-1"}}, alice)
	rec := get(h, "/servers/s-1/console")
	body := rec.Body.String()
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d:\n%s", rec.Code, body)
	}
	want := []string{
		"<title>web-1 · Serial console · Cairn</title>",
		`data-ws="/servers/s-1/console/ws"`,
		`<link rel="stylesheet" href="` + static.Path(consoleCSS) + `"`,
		`role="status"`,
		`href="/servers/s-1/vnc"`,
	}
	if static.Has(xtermModule) {
		want = append(want,
			`<script type="module" src="`+static.Path(serialScript)+`"></script>`,
			`data-xterm="`+static.Path(xtermModule)+`"`,
			`<link rel="stylesheet" href="`+static.Path(xtermCSS)+`"`)
	} else {
		want = append(want, "make assets")
	}
	for _, w := range want {
		if !strings.Contains(body, w) {
			t.Errorf("page lacks %s", w)
		}
	}
	if strings.Contains(body, "<script>") || strings.Contains(body, "style=") {
		t.Error("page has an inline script or style; the CSP forbids them")
	}
}

func TestVNCPage(t *testing.T) {
	h := mux(&fakeService{servers: map[string]string{"s 1": "db"}}, alice)
	rec := get(h, "/servers/s%201/vnc")
	body := rec.Body.String()
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d:\n%s", rec.Code, body)
	}
	want := []string{`data-ws="/servers/s%201/vnc/ws"`, "Ctrl-Alt-Del", "Scale to window", `href="/servers/s%201/console"`}
	if static.Has(novncModule) {
		want = append(want,
			`<script type="module" src="`+static.Path(vncScript)+`"></script>`,
			`data-novnc="`+static.Path(novncModule)+`"`)
	} else {
		want = append(want, "make assets")
	}
	for _, w := range want {
		if !strings.Contains(body, w) {
			t.Errorf("page lacks %s", w)
		}
	}
}

// TestAssetsServed: the scripts the pages load are in the build, and noVNC's module
// tree with them, as JavaScript (a module script of another type does not run).
func TestAssetsServed(t *testing.T) {
	names := []string{consoleCSS, serialScript, vncScript, "console/shared.js"}
	if static.Has(xtermModule) {
		names = append(names, xtermModule, xtermCSS, novncModule,
			"vendor/novnc/core/util/logging.js", "vendor/novnc/vendor/pako/lib/zlib/inflate.js")
	} else {
		t.Log("the vendored packages are not in this build (`make assets`): checking ours only")
	}
	for _, name := range names {
		rec := get(static.Handler(), static.Prefix+name)
		if rec.Code != http.StatusOK {
			t.Errorf("%s: %d %s", name, rec.Code, strings.TrimSpace(rec.Body.String()))
			continue
		}
		ct := rec.Header().Get("Content-Type")
		if strings.HasSuffix(name, "js") && !strings.HasPrefix(ct, "text/javascript") {
			t.Errorf("%s: Content-Type %q; module scripts need a JavaScript type", name, ct)
		}
	}
}

func TestSocketBridgesToTheConsole(t *testing.T) {
	dir := t.TempDir()
	const uuid = "9a4e0c1b-2d3f-4a5b-8c6d-7e8f9a0b1c2d"
	ln, err := net.Listen("unix", filepath.Join(dir, uuid+".serial"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	svc := &fakeService{servers: map[string]string{"s-1": "web-1"}, target: func(kind console.Kind) console.Target {
		return console.LocalTarget(dir, dir, uuid, kind)
	}}
	srv := httptest.NewServer(mux(svc, alice))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/servers/s-1/console/ws", nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.CloseNow()
	g, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	g.Write([]byte("login: "))
	if _, p, err := c.Read(ctx); err != nil || string(p) != "login: " {
		t.Errorf("browser got %q, %v", p, err)
	}
}
