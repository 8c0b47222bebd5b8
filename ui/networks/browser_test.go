package networks_test

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
	"github.com/chromedp/chromedp"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/supervisor/vnet"
	"github.com/cairn-os/cairn/ui"
	"github.com/cairn-os/cairn/ui/layout"
	"github.com/cairn-os/cairn/ui/networks"
	"github.com/cairn-os/cairn/ui/static"
)

// chromiumPath is Debian's Chromium, which `make deps` installs.
const chromiumPath = "/usr/bin/chromium"

// browserEngine is one user's network and server; methods the browser does not reach
// are the nil embedded interface's.
type browserEngine struct {
	networks.Service
	mu      sync.Mutex
	created []engine.ConnectionRequest
}

var alice = engine.User{ID: "u-alice", Name: "alice", Role: engine.RoleUser}

func (e *browserEngine) Networks(context.Context, engine.User) ([]engine.Network, error) {
	return []engine.Network{{ID: 3, Name: "lab", Owner: alice.ID, Kind: engine.NetworkInternal, Prefix: "10.1.2.0/24", Gateway: "10.1.2.1"}}, nil
}

func (e *browserEngine) Connections(context.Context, engine.User) ([]engine.Connection, error) {
	return nil, nil
}

func (e *browserEngine) Servers(context.Context, engine.User) ([]engine.Server, error) {
	return []engine.Server{{ID: "s-1", Name: "web-1", Owner: alice.ID}}, nil
}

func (e *browserEngine) Settings(context.Context, engine.User) (engine.Settings, error) {
	return engine.Settings{ExternalRange: "198.51.100.10-198.51.100.20", ExternalQuota: 4}, nil
}

func (e *browserEngine) UsageOf(context.Context, engine.User, string) (engine.Usage, error) {
	return engine.Usage{ExternalQuota: 4}, nil
}

func (e *browserEngine) CreateConnection(_ context.Context, _ engine.User, req engine.ConnectionRequest) (engine.Connection, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.created = append(e.created, req)
	if _, err := vnet.ParsePorts(req.Ports); err != nil {
		return engine.Connection{}, fmt.Errorf("create %s connection: ports: %w: %v", req.Kind, engine.ErrInvalid, err)
	}
	return engine.Connection{ID: "c-1"}, nil
}

// TestBrowserConnectionFormShowsTheFieldsOfTheKind drives the create form in
// Chromium under the console's CSP: the fields follow the kind chosen (CSS only, no
// script), and a refused port list comes back with the engine's message and the
// form as it was.
func TestBrowserConnectionFormShowsTheFieldsOfTheKind(t *testing.T) {
	if _, err := exec.LookPath(chromiumPath); err != nil {
		t.Skipf("needs %s (`make deps` installs chromium)", chromiumPath)
	}
	eng := &browserEngine{}
	srv := consoleServer(t, eng)
	bctx := browser(t)

	display := func(field string) string {
		var d string
		run(t, bctx, "read the display of "+field, chromedp.Evaluate(`getComputedStyle(document.querySelector('`+field+`').closest('.field')).display`, &d))
		return d
	}
	run(t, bctx, "open the Connections page",
		chromedp.Navigate(srv.URL+"/connections"),
		chromedp.WaitVisible(`#create-connection`, chromedp.ByQuery))
	if display("#conn-network") == "none" || display("#conn-ports") != "none" || display("#conn-external") != "none" {
		t.Errorf("internal: network %s, ports %s, external %s; want the network only",
			display("#conn-network"), display("#conn-ports"), display("#conn-external"))
	}
	run(t, bctx, "choose external", chromedp.Click(`#kind-external`, chromedp.ByQuery))
	if display("#conn-network") != "none" || display("#conn-ports") != "none" {
		t.Errorf("external: network %s, ports %s; want neither", display("#conn-network"), display("#conn-ports"))
	}
	run(t, bctx, "choose mapping", chromedp.Click(`#kind-mapping`, chromedp.ByQuery))
	if display("#conn-network") == "none" || display("#conn-ports") == "none" || display("#conn-external") == "none" {
		t.Errorf("mapping: network %s, ports %s, external %s; want all three",
			display("#conn-network"), display("#conn-ports"), display("#conn-external"))
	}

	var msg, ports string
	run(t, bctx, "submit a bad port list",
		chromedp.SendKeys(`#conn-ports`, "80,http", chromedp.ByQuery),
		chromedp.Click(`#create-connection button[type=submit]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#create-error`, chromedp.ByQuery),
		chromedp.Text(`#create-error`, &msg, chromedp.ByQuery),
		chromedp.Value(`#conn-ports`, &ports, chromedp.ByQuery))
	if !strings.Contains(msg, `port "http" must be a number from 1 to 65535`) || ports != "80,http" || display("#conn-ports") == "none" {
		t.Errorf("after the refusal: message %q, ports %q shown %s", msg, ports, display("#conn-ports"))
	}
	eng.mu.Lock()
	got := fmt.Sprint(eng.created)
	eng.mu.Unlock()
	if !strings.Contains(got, "{ mapping 3   80,http }") {
		t.Errorf("the engine got %s", got)
	}
	var violations []string
	run(t, bctx, "read the CSP violations", chromedp.Evaluate(`window.cspViolations`, &violations))
	if len(violations) > 0 {
		t.Errorf("CSP violations: %v", violations)
	}
}

// consoleServer serves the Connections page as the web console does: the assets,
// the real CSP, a signed-in viewer and the CSRF check on every POST.
func consoleServer(t *testing.T, eng *browserEngine) *httptest.Server {
	t.Helper()
	h := networks.New(eng, slog.New(slog.NewTextHandler(io.Discard, nil)))
	mux := http.NewServeMux()
	mux.Handle("GET "+static.Prefix, static.Handler())
	mux.HandleFunc("GET /connections", h.Connections)
	mux.HandleFunc("POST /connections", h.CreateConnection)
	const token = "csrf-browser"
	viewer := layout.Viewer{User: alice, Session: engine.Session{CSRF: token}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", ui.ContentSecurityPolicy)
		if r.Method == http.MethodPost && subtle.ConstantTimeCompare([]byte(r.PostFormValue(layout.CSRFField)), []byte(token)) != 1 {
			http.Error(w, "no CSRF token", http.StatusForbidden)
			return
		}
		mux.ServeHTTP(w, r.WithContext(layout.WithViewer(r.Context(), viewer)))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// browser starts headless Chromium for one test; it records the page's CSP
// violations in window.cspViolations.
func browser(t *testing.T) context.Context {
	t.Helper()
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
	return bctx
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
