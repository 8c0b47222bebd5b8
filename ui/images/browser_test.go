package images_test

import (
	"bytes"
	"context"
	"crypto/rand"
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

	"github.com/cairn-os/cairn/internal/enginetest"
	"github.com/cairn-os/cairn/internal/testutil"
	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/supervisor/hostcmd"
	"github.com/cairn-os/cairn/ui"
	"github.com/cairn-os/cairn/ui/images"
	"github.com/cairn-os/cairn/ui/layout"
)

// chromiumPath is Debian's Chromium, which `make deps` installs.
const chromiumPath = "/usr/bin/chromium"

// faults breaks the upload's chunk requests on purpose. plan has one fault (or "")
// for each fresh chunk request in turn; after a fault that drops the connection the
// network stays down, dropping every chunk request (Chromium re-sends a PATCH whose
// connection broke by itself), until upload.js asks where the upload stands.
type faults struct {
	mu    sync.Mutex
	plan  []string
	fresh int
	down  bool
	log   []string
}

// Kinds of fault.
const (
	// cutAndDrop lets the engine take only the first 3 MiB of the chunk, then drops
	// the connection, as a network that fails mid-chunk does.
	cutAndDrop = "cut-and-drop"
	// loseAnswer lets the engine take the whole chunk, then drops the connection
	// before the answer: the client does not know the chunk went in.
	loseAnswer = "lose-answer"
	// unavailable answers 503 without passing the chunk on.
	unavailable = "unavailable"
)

// inject wraps the chunk handler with the faults.
func (f *faults) inject(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		kind := "dropped: the network is down"
		if !f.down {
			kind = ""
			if f.fresh < len(f.plan) {
				kind = f.plan[f.fresh]
			}
			f.fresh++
		}
		if kind == cutAndDrop || kind == loseAnswer {
			f.down = true
		}
		down := f.down
		f.log = append(f.log, fmt.Sprintf("PATCH at %s: %s", r.Header.Get(images.OffsetHeader), kind))
		f.mu.Unlock()
		switch {
		case kind == cutAndDrop:
			r.Body = io.NopCloser(io.LimitReader(r.Body, 3<<20))
			next(httptest.NewRecorder(), r)
			panic(http.ErrAbortHandler)
		case kind == loseAnswer:
			next(httptest.NewRecorder(), r)
			panic(http.ErrAbortHandler)
		case down:
			panic(http.ErrAbortHandler)
		case kind == unavailable:
			http.Error(w, `{"error":"the engine is restarting"}`, http.StatusServiceUnavailable)
		default:
			next(w, r)
		}
	}
}

// status wraps the status handler: asking brings the network back.
func (f *faults) status(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.down = false
		f.log = append(f.log, "GET status")
		f.mu.Unlock()
		next(w, r)
	}
}

func (f *faults) count(prefix string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, l := range f.log {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

// uploadServer serves the Images area over a real engine as the console does (real
// CSP, static files from the source tree so upload.js is the one in this checkout),
// for a signed-in user.
func uploadServer(t *testing.T, e *engine.Engine, u engine.User, f *faults) *httptest.Server {
	t.Helper()
	h := images.New(e, slog.New(slog.NewTextHandler(io.Discard, nil)))
	mux := http.NewServeMux()
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServer(http.Dir("../static"))))
	for _, rt := range h.Routes() {
		handler := rt.Handler
		switch rt.Pattern {
		case "PATCH /images/{id}/upload":
			handler = f.inject(handler)
		case "GET /images/{id}/upload":
			handler = f.status(handler)
		}
		mux.HandleFunc(rt.Pattern, handler)
	}
	viewer := layout.Viewer{User: u, Session: engine.Session{ID: "s", CSRF: "csrf-token"}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", ui.ContentSecurityPolicy)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if !strings.HasPrefix(r.URL.Path, "/static/") && r.Method != http.MethodGet && r.Header.Get(layout.CSRFHeader) != "csrf-token" {
			http.Error(w, "no CSRF token", http.StatusForbidden)
			return
		}
		mux.ServeHTTP(w, r.WithContext(layout.WithViewer(r.Context(), viewer)))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// browser starts headless Chromium for one test; it records CSP violations in
// window.cspViolations.
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := exec.LookPath(chromiumPath); err != nil {
		t.Skipf("needs %s (`make deps` installs chromium)", chromiumPath)
	}
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
	ctx, cancel := context.WithTimeout(bctx, 2*time.Minute)
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

// waitUpload waits until upload.js has ended the upload and returns how: its state
// ("done", "failed") and its message.
func waitUpload(t *testing.T, bctx context.Context) (state, message string) {
	t.Helper()
	var ended bool
	run(t, bctx, "wait for the upload to end",
		chromedp.Poll(`['done', 'failed'].includes(document.getElementById('upload-status').dataset.state)`, &ended,
			chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(90*time.Second)),
		chromedp.Evaluate(`document.getElementById('upload-status').dataset.state`, &state),
		chromedp.Text(`#upload-status .upload-message`, &message, chromedp.ByQuery),
	)
	return state, message
}

// testEngine opens a real engine with a user.
func testEngine(t *testing.T) (*engine.Engine, engine.User) {
	t.Helper()
	e, admin := enginetest.Open(t)
	u := enginetest.User(t, e, admin, "erin", engine.RoleUser)
	return e, u
}

// diskFile writes a qcow2 image of size random bytes as dir/name.
func diskFile(t *testing.T, dir, name string, size int) string {
	t.Helper()
	testutil.RequireProgram(t, "qemu-img")
	raw := filepath.Join(t.TempDir(), "data.raw")
	data := make([]byte, size)
	rand.Read(data)
	if err := os.WriteFile(raw, data, 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, name)
	if b, err := (hostcmd.Exec{}).Run(t.Context(), "qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, out); err != nil {
		t.Fatalf("qemu-img convert: %v: %s", err, b)
	}
	return out
}

func TestBrowserUploadSurvivesBrokenChunks(t *testing.T) {
	bctx := browser(t)
	e, u := testEngine(t)
	file := diskFile(t, t.TempDir(), "Debian 12.qcow2", 20<<20)
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	// Chunks of 8 MiB: 0 goes in; 8 is cut after 3 MiB; 11 meets a 503, then goes in;
	// 19, the last, goes in but its answer is lost.
	f := &faults{plan: []string{"", cutAndDrop, unavailable, "", loseAnswer}}
	srv := uploadServer(t, e, u, f)

	var name, format string
	run(t, bctx, "open the images page and pick the file",
		chromedp.Navigate(srv.URL+"/images"),
		chromedp.WaitEnabled(`#upload-form button[type=submit]`, chromedp.ByQuery),
		chromedp.SetUploadFiles(`#upload-file`, []string{file}, chromedp.ByQuery),
		chromedp.Value(`#upload-name`, &name, chromedp.ByQuery),
		chromedp.Value(`#upload-format`, &format, chromedp.ByQuery),
	)
	if name != "debian-12" || format != "qcow2" {
		t.Errorf("after picking %q the form says name %q format %q", filepath.Base(file), name, format)
	}
	run(t, bctx, "start the upload", chromedp.Click(`#upload-form button[type=submit]`, chromedp.ByQuery))
	state, msg := waitUpload(t, bctx)
	t.Logf("requests: %s", strings.Join(f.log, "; "))
	if state != "done" || !strings.Contains(msg, "debian-12 is uploaded and ready") {
		t.Fatalf("upload ended %s: %q", state, msg)
	}
	list, err := e.Images(t.Context(), u)
	if err != nil || len(list) != 1 || list[0].State != engine.ImageReady || list[0].Format != "qcow2" {
		t.Fatalf("images after the upload: %+v %v", list, err)
	}
	got, err := os.ReadFile(list[0].Path)
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("the stored image differs from the file picked (%d bytes, want %d)", len(got), len(want))
	}
	// The table reloaded itself: the row says ready.
	run(t, bctx, "see the image ready in the table",
		chromedp.WaitVisible(`table#images tr[data-image-id="`+list[0].ID+`"][data-state="ready"]`, chromedp.ByQuery))
	if f.count("PATCH") <= len(f.plan) || f.count("GET status") < 3 {
		t.Errorf("the faults were not all met, or upload.js did not ask where the upload stood after each: %v", f.log)
	}
	var violations []string
	run(t, bctx, "read the CSP violations", chromedp.Evaluate(`window.cspViolations`, &violations))
	if len(violations) > 0 {
		t.Errorf("CSP violations: %v", violations)
	}
}

func TestBrowserResumesAnUploadAfterAReload(t *testing.T) {
	bctx := browser(t)
	e, u := testEngine(t)
	dir := t.TempDir()
	file := diskFile(t, dir, "win.qcow2", 12<<20)
	other := diskFile(t, dir, "other.qcow2", 5<<20)
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	// An earlier page started the upload and sent 5 MiB before it went away.
	ctx := t.Context()
	im, err := e.CreateImage(ctx, u, engine.ImageRequest{Name: "win", Format: "qcow2", Size: int64(len(data)), Upload: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.UploadChunk(ctx, u, im.ID, 0, bytes.NewReader(data[:5<<20])); err != nil {
		t.Fatal(err)
	}
	srv := uploadServer(t, e, u, &faults{})
	resume := `input[data-resume-id="` + im.ID + `"]`
	run(t, bctx, "open the images page",
		chromedp.Navigate(srv.URL+"/images"),
		chromedp.WaitReady(`table#images tr[data-image-id="`+im.ID+`"][data-state="uploading"]`, chromedp.ByQuery),
		chromedp.SetUploadFiles(resume, []string{other}, chromedp.ByQuery),
	)
	state, msg := waitUpload(t, bctx)
	if state != "failed" || !strings.Contains(msg, "Pick the file you started with") {
		t.Errorf("resuming with another file: %s %q", state, msg)
	}
	run(t, bctx, "pick the right file", chromedp.SetUploadFiles(resume, []string{file}, chromedp.ByQuery))
	state, msg = waitUpload(t, bctx)
	if state != "done" {
		t.Fatalf("resume ended %s: %q", state, msg)
	}
	got, err := e.Image(ctx, u, im.ID)
	if err != nil || got.State != engine.ImageReady {
		t.Fatalf("image after the resume: %+v %v", got, err)
	}
	if stored, _ := os.ReadFile(got.Path); !bytes.Equal(stored, data) {
		t.Error("the resumed image differs from the file")
	}
}

func TestBrowserShowsTheEnginesRefusalOfAFile(t *testing.T) {
	testutil.RequireProgram(t, "qemu-img")
	bctx := browser(t)
	e, u := testEngine(t)
	notes := filepath.Join(t.TempDir(), "notes.qcow2")
	if err := os.WriteFile(notes, bytes.Repeat([]byte("these are notes, not a disk\n"), 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := uploadServer(t, e, u, &faults{})
	run(t, bctx, "upload a text file named .qcow2",
		chromedp.Navigate(srv.URL+"/images"),
		chromedp.WaitEnabled(`#upload-form button[type=submit]`, chromedp.ByQuery),
		chromedp.SetUploadFiles(`#upload-file`, []string{notes}, chromedp.ByQuery),
		chromedp.Click(`#upload-form button[type=submit]`, chromedp.ByQuery),
	)
	state, msg := waitUpload(t, bctx)
	if state != "failed" || !strings.Contains(msg, "it was declared qcow2 but is a raw image") || !strings.Contains(msg, "the upload was discarded") {
		t.Errorf("upload of a text file ended %s: %q", state, msg)
	}
	if list, _ := e.Images(t.Context(), u); len(list) != 0 {
		t.Errorf("the refused upload left images: %+v", list)
	}
}
