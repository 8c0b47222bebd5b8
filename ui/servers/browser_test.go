package servers_test

import (
	"context"
	"crypto/subtle"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/ui"
	"github.com/cairn-os/cairn/ui/layout"
	"github.com/cairn-os/cairn/ui/operations"
	"github.com/cairn-os/cairn/ui/servers"
	"github.com/cairn-os/cairn/ui/static"
)

// chromiumPath is Debian's Chromium, which `make deps` installs.
const chromiumPath = "/usr/bin/chromium"

// liveEngine is one user's one server and its operations, which the test changes
// behind the browser's back as the engine would. Methods the browser does not reach
// are the nil embedded interface's.
type liveEngine struct {
	servers.Service
	mu     sync.Mutex
	server engine.Server
	ops    []engine.Operation
}

func (e *liveEngine) Servers(context.Context, engine.User) ([]engine.Server, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.server.ID == "" {
		return nil, nil
	}
	return []engine.Server{e.server}, nil
}

func (e *liveEngine) Server(_ context.Context, _ engine.User, id string) (engine.Server, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if id != e.server.ID || id == "" {
		return engine.Server{}, fmt.Errorf("server %q: %w", id, engine.ErrNotFound)
	}
	return e.server, nil
}

func (e *liveEngine) setState(s engine.ServerState) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.server.State = s
}

func (e *liveEngine) StartServer(_ context.Context, _ engine.User, id string) (engine.Server, error) {
	e.setState(engine.ServerRunning)
	return e.Server(context.Background(), engine.User{}, id)
}

func (e *liveEngine) StopServer(_ context.Context, _ engine.User, id string) (engine.Server, error) {
	e.setState(engine.ServerShutoff)
	return e.Server(context.Background(), engine.User{}, id)
}

func (e *liveEngine) ShutdownServer(_ context.Context, u engine.User, id string, _ time.Duration) (engine.Operation, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	op := engine.Operation{ID: fmt.Sprintf("op-%d", len(e.ops)+1), Owner: u.ID, Kind: "shutdown", Target: id,
		State: engine.OpRunning, Message: "waiting for the guest to power off", CreatedAt: time.Now()}
	e.ops = append(e.ops, op)
	return op, nil
}

func (e *liveEngine) DeleteServer(context.Context, engine.User, string, bool) ([]string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.server = engine.Server{}
	return nil, nil
}

func (e *liveEngine) Images(context.Context, engine.User) ([]engine.Image, error) { return nil, nil }

func (e *liveEngine) Connections(context.Context, engine.User) ([]engine.Connection, error) {
	return nil, nil
}

func (e *liveEngine) Nodes(context.Context, engine.User) ([]engine.Node, error) {
	return []engine.Node{{ID: "n-1", Name: "node-1", State: engine.NodeReady}}, nil
}

func (e *liveEngine) Users(context.Context, engine.User) ([]engine.User, error) { return nil, nil }

func (e *liveEngine) Operation(_ context.Context, _ engine.User, id string) (engine.Operation, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, op := range e.ops {
		if op.ID == id {
			return op, nil
		}
	}
	return engine.Operation{}, fmt.Errorf("operation %q: %w", id, engine.ErrNotFound)
}

func (e *liveEngine) Operations(context.Context, engine.User) ([]engine.Operation, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]engine.Operation(nil), e.ops...), nil
}

func (e *liveEngine) CancelOperation(_ context.Context, _ engine.User, id string) (engine.Operation, error) {
	e.endOp(id, engine.OpCanceled, "canceled")
	return e.Operation(context.Background(), engine.User{}, id)
}

func (e *liveEngine) endOp(id string, state engine.OperationState, msg string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := range e.ops {
		if e.ops[i].ID == id {
			e.ops[i].State, e.ops[i].Error, e.ops[i].EndedAt = state, msg, time.Now()
		}
	}
}

// hits counts the requests for each path, to see what the page polls.
type hits struct {
	mu sync.Mutex
	n  map[string]int
}

func (h *hits) add(path string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n[path]++
}

func (h *hits) get(path string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n[path]
}

// consoleServer serves the Servers and Operations areas as the web console does:
// the assets, the real CSP on every answer, a signed-in viewer, and the CSRF check
// on every POST (the X-CSRF-Token header from htmx, or the form's csrf field).
func consoleServer(t *testing.T, eng *liveEngine, seen *hits) *httptest.Server {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	sh, oh := servers.New(eng, logger), operations.New(eng, logger)
	mux := http.NewServeMux()
	mux.Handle("GET "+static.Prefix, static.Handler())
	mux.HandleFunc("GET /servers", sh.List)
	mux.HandleFunc("GET /servers/table", sh.List)
	mux.HandleFunc("GET /servers/{id}", sh.Show)
	mux.HandleFunc("POST /servers/{id}/start", sh.Start)
	mux.HandleFunc("POST /servers/{id}/shutdown", sh.Shutdown)
	mux.HandleFunc("POST /servers/{id}/stop", sh.Stop)
	mux.HandleFunc("POST /servers/{id}/delete", sh.Delete)
	mux.HandleFunc("GET /operations/{id}", oh.Show)
	mux.HandleFunc("POST /operations/{id}/cancel", oh.Cancel)
	const token = "csrf-browser"
	viewer := layout.Viewer{User: engine.User{ID: "u-alice", Name: "alice", Role: engine.RoleUser}, Session: engine.Session{CSRF: token}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.add(r.Method + " " + r.URL.Path)
		w.Header().Set("Content-Security-Policy", ui.ContentSecurityPolicy)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if r.Method == http.MethodPost {
			got := r.Header.Get(layout.CSRFHeader)
			if got == "" {
				got = r.PostFormValue(layout.CSRFField)
			}
			if subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
				http.Error(w, "no CSRF token", http.StatusForbidden)
				return
			}
		}
		mux.ServeHTTP(w, r.WithContext(layout.WithViewer(r.Context(), viewer)))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// exceptions are the uncaught script errors of the browser's pages.
type exceptions struct {
	mu   sync.Mutex
	list []string
}

func (x *exceptions) all() []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return append([]string(nil), x.list...)
}

// browser starts headless Chromium for one test; it records the page's CSP
// violations in window.cspViolations, and its uncaught script errors.
func browser(t *testing.T) (context.Context, *exceptions) {
	t.Helper()
	if _, err := exec.LookPath(chromiumPath); err != nil {
		t.Skipf("needs %s (`make deps` installs chromium)", chromiumPath)
	}
	if !static.Has("vendor/htmx.min.js") {
		t.Skip("needs the vendored htmx: run `make assets`")
	}
	// Not t.TempDir: Chromium's helpers may write to the profile for a moment after
	// the browser is gone.
	profile, err := os.MkdirTemp("", "cairn-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	x := &exceptions{}
	chromedp.ListenTarget(bctx, func(ev any) {
		if e, ok := ev.(*runtime.EventExceptionThrown); ok {
			x.mu.Lock()
			x.list = append(x.list, e.ExceptionDetails.Error())
			x.mu.Unlock()
		}
	})
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
		for range 50 {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("left the browser profile %s behind", profile)
	})
	err = chromedp.Run(bctx, chromedp.ActionFunc(func(ctx context.Context) error {
		_, err := page.AddScriptToEvaluateOnNewDocument(`window.cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => window.cspViolations.push(e.effectiveDirective + ' ' + e.blockedURI));`).Do(ctx)
		return err
	}))
	if err != nil {
		t.Fatalf("start %s: %v", chromiumPath, err)
	}
	return bctx, x
}

// run runs actions with a time limit; on failure it saves a screenshot and says where.
func run(t *testing.T, bctx context.Context, what string, actions ...chromedp.Action) {
	t.Helper()
	ctx, cancel := context.WithTimeout(bctx, time.Minute)
	defer cancel()
	if err := chromedp.Run(ctx, actions...); err != nil {
		shot := filepath.Join(os.TempDir(), fmt.Sprintf("cairn-%s.png", strings.ReplaceAll(t.Name(), "/", "-")))
		var png []byte
		sctx, cancel := context.WithTimeout(bctx, 20*time.Second)
		defer cancel()
		if chromedp.Run(sctx, chromedp.CaptureScreenshot(&png)) == nil && os.WriteFile(shot, png, 0o644) == nil {
			t.Fatalf("%s: %v (screenshot %s)", what, err, shot)
		}
		t.Fatalf("%s: %v", what, err)
	}
}

func noViolations(t *testing.T, bctx context.Context, where string) {
	t.Helper()
	var v []string
	run(t, bctx, "read the CSP violations", chromedp.Evaluate(`window.cspViolations`, &v))
	if len(v) > 0 {
		t.Errorf("%s: CSP violations: %v", where, v)
	}
}

// TestBrowserShutdownProgressAndForceOff drives the server's page in Chromium under
// the console's CSP: Shut down shows the operation's progress, which follows the
// engine; when the shutdown fails the page offers Force off by itself; the state
// follows the engine live; the list's row follows too; Cancel stops an operation;
// Delete asks first.
func TestBrowserShutdownProgressAndForceOff(t *testing.T) {
	eng := &liveEngine{server: engine.Server{ID: "s-1", Name: "web-1", Owner: "u-alice", VCPUs: 1, MemoryMiB: 512,
		Node: "n-1", State: engine.ServerRunning, Boot: []string{"disk"}}}
	seen := &hits{n: map[string]int{}}
	srv := consoleServer(t, eng, seen)
	bctx, x := browser(t)

	run(t, bctx, "open the server's page and shut it down",
		chromedp.Navigate(srv.URL+"/servers/s-1"),
		chromedp.WaitVisible(`#server[data-state="running"] button[data-action="shutdown"]`, chromedp.ByQuery),
		chromedp.Click(`button[data-action="shutdown"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#op-op-1[data-op-state="running"] progress.op-bar`, chromedp.ByQuery),
	)
	// The guest does not power off: the engine's operation fails on its timeout.
	eng.endOp("op-1", engine.OpFailed, "the guest did not power off within 2m0s; force it off")
	var msg string
	run(t, bctx, "see the failure and the Force off offer without reloading",
		chromedp.WaitVisible(`#op-op-1[data-op-state="failed"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#force-off-offer button[data-action="stop"]`, chromedp.ByQuery),
		chromedp.Text(`#op-op-1 .op-message`, &msg, chromedp.ByQuery),
	)
	if !strings.Contains(msg, "did not power off within 2m0s") {
		t.Errorf("the failed shutdown says %q", msg)
	}
	if seen.get("GET /operations/op-1") == 0 {
		t.Error("the progress never polled its operation")
	}
	// Ended, the progress no longer polls.
	polls := seen.get("GET /operations/op-1")
	run(t, bctx, "wait", chromedp.Sleep(2500*time.Millisecond))
	if n := seen.get("GET /operations/op-1"); n != polls {
		t.Errorf("the ended operation was polled %d more times", n-polls)
	}

	run(t, bctx, "force it off",
		chromedp.Click(`#force-off-offer button[data-action="stop"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#server[data-state="shutoff"] button[data-action="start"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#server-status[data-state="shutoff"]`, chromedp.ByQuery),
	)
	// Someone starts it elsewhere: the page follows.
	eng.setState(engine.ServerRunning)
	run(t, bctx, "see it running again without reloading",
		chromedp.WaitVisible(`#server-status[data-state="running"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#server[data-state="running"] button[data-action="shutdown"]`, chromedp.ByQuery),
	)

	// Cancel, through htmx with the CSRF header.
	run(t, bctx, "shut down and cancel",
		chromedp.Click(`button[data-action="shutdown"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#op-op-2[data-op-state="running"] .op-actions button`, chromedp.ByQuery),
		chromedp.Click(`#op-op-2 .op-actions button`, chromedp.ByQuery),
		chromedp.WaitVisible(`#op-op-2[data-op-state="canceled"]`, chromedp.ByQuery),
	)
	if seen.get("POST /operations/op-2/cancel") != 1 {
		t.Errorf("cancel posts: %d", seen.get("POST /operations/op-2/cancel"))
	}

	run(t, bctx, "the list follows the engine",
		chromedp.Navigate(srv.URL+"/servers"),
		chromedp.WaitVisible(`table#servers tr[data-server-id="s-1"][data-state="running"]`, chromedp.ByQuery),
	)
	eng.setState(engine.ServerShutoff)
	run(t, bctx, "see the row turn off",
		chromedp.WaitVisible(`table#servers tr[data-server-id="s-1"][data-state="shutoff"]`, chromedp.ByQuery),
	)

	var text string
	var shown bool
	run(t, bctx, "open the page of the shut-off server",
		chromedp.Navigate(srv.URL+"/servers/s-1"),
		chromedp.WaitVisible(`#server[data-state="shutoff"]`, chromedp.ByQuery),
		chromedp.Evaluate(`document.querySelector('button[data-action="delete"]').checkVisibility()`, &shown),
	)
	if shown {
		t.Error("the Delete button shows before Delete… was opened")
	}
	run(t, bctx, "delete it, after saying yes",
		chromedp.Click(`details.confirm summary`, chromedp.ByQuery),
		chromedp.WaitVisible(`button[data-action="delete"]`, chromedp.ByQuery),
		chromedp.Click(`button[data-action="delete"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`.alert-ok`, chromedp.ByQuery),
		chromedp.Text(`.alert-ok`, &text, chromedp.ByQuery),
	)
	if text != "Server web-1 was deleted." {
		t.Errorf("after the delete the list says %q", text)
	}
	noViolations(t, bctx, "the servers pages")
	if errs := x.all(); len(errs) > 0 {
		t.Errorf("script errors on the servers pages: %v", errs)
	}
}
