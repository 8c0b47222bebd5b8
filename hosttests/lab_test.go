package hosttests

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-os/cairn/internal/testimage"
	"github.com/cairn-os/cairn/internal/testutil"
	"github.com/cairn-os/cairn/supervisor/agent"
	"github.com/cairn-os/cairn/supervisor/api"
	"github.com/cairn-os/cairn/supervisor/console"
	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/supervisor/virt"
	"github.com/coder/websocket"
	"golang.org/x/crypto/bcrypt"
)

const (
	adminPassword = "correct-horse-battery"
	userPassword  = "another-long-secret"
)

// lab is one engine on this host: state in a temp folder, the host's libvirtd as the
// admin's own node, the API on an httptest TLS server.
type lab struct {
	t        *testing.T
	dir      string
	e        *engine.Engine
	srv      *httptest.Server
	consoles string
	// hub shares serial consoles among their viewers, as the supervisor's does.
	hub  console.Hub
	logs string
	// domains are the libvirt UUIDs of servers made, destroyed in cleanup.
	mu      sync.Mutex
	domains map[string]bool
	mods    []func(*engine.Config)
}

// image is the cached test image (do not change it).
var image struct {
	once sync.Once
	path string
	err  error
}

func testImage(t *testing.T) string {
	t.Helper()
	image.once.Do(func() {
		repo, err := testimage.RepoRoot()
		if err != nil {
			image.err = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		image.path, image.err = testimage.Build(ctx, repo)
	})
	if image.err != nil {
		t.Fatalf("build the test image: %v", image.err)
	}
	return image.path
}

// newLab opens an engine in dir (a new temp folder when empty) and serves its API;
// mods change the engine's configuration.
func newLab(t *testing.T, dir string, mods ...func(*engine.Config)) *lab {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireProgram(t, "qemu-img")
	testutil.RequireProgram(t, "qemu-system-x86_64")
	if _, err := os.Stat(virt.DefaultSocket); err != nil {
		t.Skipf("no libvirtd socket at %s (run `make libvirtd`): %v", virt.DefaultSocket, err)
	}
	if dir == "" {
		dir = t.TempDir()
		// qemu runs as libvirt-qemu and must get through to the console folders.
		os.Chmod(filepath.Dir(dir), 0o711)
		os.Chmod(dir, 0o711)
	}
	l := &lab{t: t, dir: dir, mods: mods, consoles: filepath.Join(dir, "consoles"), logs: filepath.Join(dir, "console-logs"), domains: map[string]bool{}}
	if err := virt.PrepareDirs(l.consoles, l.logs); err != nil {
		t.Fatal(err)
	}
	l.open()
	t.Cleanup(l.cleanup)
	return l
}

func (l *lab) open() {
	t := l.t
	logger := slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg := engine.Config{
		StateDir:      l.dir,
		URL:           "https://cairn.test",
		LANURL:        "https://127.0.0.1",
		Logger:        logger,
		BcryptCost:    bcrypt.MinCost,
		DomainType:    "qemu",
		ConsoleDir:    l.consoles,
		ConsoleLogDir: l.logs,
		Hypervisor: func(ctx context.Context, n engine.Node) (*virt.Conn, error) {
			return virt.DialLocal(ctx, virt.DefaultSocket)
		},
		Console: func(n engine.Node, uuid string, kind console.Kind) console.Target {
			t := console.LocalTarget(l.consoles, l.logs, uuid, kind)
			if kind == console.Serial {
				// As the supervisor does (nodelink.go).
				t = l.hub.Share(n.ID+"/"+uuid, t)
			}
			return t
		},
	}
	for _, m := range l.mods {
		m(&cfg)
	}
	e, err := engine.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	l.e = e
	ctx := context.Background()
	if _, err := e.EnsureAdmin(ctx, adminPassword); err != nil {
		t.Fatal(err)
	}
	// The host is the admin's own compute node.
	inv, err := agent.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.RegisterLocalNode(ctx, inv); err != nil {
		t.Fatal(err)
	}
	hb, err := agent.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.LocalHeartbeat(ctx, hb); err != nil {
		t.Fatal(err)
	}
	l.srv = httptest.NewTLSServer(api.New(e, logger))
}

// close stops the engine as a restart would.
func (l *lab) close() {
	if l.srv != nil {
		l.srv.Close()
		l.srv = nil
	}
	if l.e != nil {
		l.e.Close()
		l.e = nil
	}
}

func (l *lab) cleanup() {
	l.close()
	l.mu.Lock()
	defer l.mu.Unlock()
	for uuid := range l.domains {
		exec.Command("virsh", "-c", "qemu:///system", "destroy", uuid).Run()
		exec.Command("virsh", "-c", "qemu:///system", "undefine", uuid).Run()
	}
}

// track records a server's domain for cleanup.
func (l *lab) track(s engine.Server) {
	l.mu.Lock()
	l.domains[s.UUID] = true
	l.mu.Unlock()
}

type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// do sends a JSON request and decodes the answer into out (when not nil); it returns
// the status and the raw body.
func (l *lab) do(method, path string, body, out any) (int, string) {
	return l.doAs("admin", adminPassword, method, path, body, out)
}

func (l *lab) doAs(user, password, method, path string, body, out any) (int, string) {
	l.t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			l.t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, l.srv.URL+api.Prefix+path, r)
	if err != nil {
		l.t.Fatal(err)
	}
	req.SetBasicAuth(user, password)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := l.srv.Client().Do(req)
	if err != nil {
		l.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	if out != nil && res.StatusCode < 300 {
		if err := json.Unmarshal(data, out); err != nil {
			l.t.Fatalf("%s %s: decode %s: %v", method, path, data, err)
		}
	}
	return res.StatusCode, string(data)
}

// must is do that fails the test unless the status is want.
func (l *lab) must(want int, method, path string, body, out any) {
	l.t.Helper()
	if got, msg := l.do(method, path, body, out); got != want {
		l.t.Fatalf("%s %s: %d %s, want %d", method, path, got, msg, want)
	}
}

// wait waits for an operation to end and fails the test unless it succeeded.
func (l *lab) wait(op engine.Operation) engine.Operation {
	l.t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		l.must(200, "GET", "/operations/"+op.ID+"?wait=30s", nil, &op)
		if op.State != engine.OpRunning {
			break
		}
	}
	if op.State != engine.OpSucceeded {
		l.t.Fatalf("operation %s (%s of %s): %s %s", op.ID, op.Kind, op.Target, op.State, op.Error)
	}
	return op
}

// upload sends a file as a new image in one go.
func (l *lab) upload(path, name, format string, pool int) engine.Image {
	l.t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		l.t.Fatal(err)
	}
	var im engine.Image
	l.must(201, "POST", "/images", engine.ImageRequest{Name: name, Format: format, Size: fi.Size(), Upload: true, Pool: &pool}, &im)
	f, err := os.Open(path)
	if err != nil {
		l.t.Fatal(err)
	}
	defer f.Close()
	status, body := l.chunk(im.ID, 0, f)
	if status != 200 {
		l.t.Fatalf("upload %s: %d %s", name, status, body)
	}
	l.must(200, "GET", "/images/"+im.ID, nil, &im)
	if im.State != engine.ImageReady {
		l.t.Fatalf("uploaded image %s is %s", im.ID, im.State)
	}
	return im
}

// chunk sends body as the upload's bytes from offset.
func (l *lab) chunk(id string, offset int64, body io.Reader) (int, string) {
	req, err := http.NewRequest("PATCH", l.srv.URL+api.Prefix+"/images/"+id+"/upload", body)
	if err != nil {
		l.t.Fatal(err)
	}
	req.SetBasicAuth("admin", adminPassword)
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	req.Header.Set("Upload-Offset", fmt.Sprint(offset))
	res, err := l.srv.Client().Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(data)
}

// serial reads a server's serial console through the API's websocket until re
// matches the output (history and live) or the time is up; it returns the output.
func (l *lab) serial(id string, re *regexp.Regexp, within time.Duration) string {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var got bytes.Buffer
	for ctx.Err() == nil {
		if l.readSerial(ctx, id, re, &got) {
			return got.String()
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	l.t.Fatalf("server %s: no %q on the serial console within %s; it showed:\n%s", id, re, within, got.String())
	return ""
}

// serialWS opens a server's serial console through the API's websocket.
func (l *lab) serialWS(ctx context.Context, id string) (*websocket.Conn, error) {
	h := http.Header{}
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth("admin", adminPassword)
	h.Set("Authorization", req.Header.Get("Authorization"))
	url := strings.Replace(l.srv.URL, "https://", "wss://", 1) + api.Prefix + "/servers/" + id + "/console/serial"
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: l.srv.Client(), HTTPHeader: h})
	return c, err
}

// twoViewers opens the serial console of running server id twice, as two browser
// tabs would, types a command into the first and checks that both see its output
// (qemu serves its serial socket to one client at a time: the engine shares it).
func (l *lab) twoViewers(id string) {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var tabs [2]*websocket.Conn
	for i := range tabs {
		c, err := l.serialWS(ctx, id)
		if err != nil {
			l.t.Fatalf("server %s: open the serial console in tab %d: %v", id, i+1, err)
		}
		defer c.CloseNow()
		tabs[i] = c
	}
	// Whatever each tab is sent first (the history) is not what this looks for: the
	// shell computes the number, so only its answer matches.
	want := regexp.MustCompile(`two-tabs-42`)
	got := make(chan string, 2)
	for _, c := range tabs {
		go func() {
			var out bytes.Buffer
			for !want.Match(out.Bytes()) {
				_, data, err := c.Read(ctx)
				if err != nil {
					got <- fmt.Sprintf("%q, then %v", out.String(), err)
					return
				}
				out.Write(data)
			}
			got <- ""
		}()
	}
	// Typed until the shell answers: the second tab may join a moment after the first.
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for done := 0; done < 2; {
		if err := tabs[0].Write(ctx, websocket.MessageText, []byte("echo two-tabs-$((6*7))\r")); err != nil {
			l.t.Fatalf("server %s: type into tab 1: %v", id, err)
		}
		select {
		case msg := <-got:
			if msg != "" {
				l.t.Fatalf("server %s: a tab did not see the shell's answer typed in tab 1: %s", id, msg)
			}
			done++
		case <-tick.C:
		}
	}
}

func (l *lab) readSerial(ctx context.Context, id string, re *regexp.Regexp, got *bytes.Buffer) bool {
	c, err := l.serialWS(ctx, id)
	if err != nil {
		return false
	}
	defer c.CloseNow()
	got.Reset()
	for {
		_, data, err := c.Read(ctx)
		if err != nil {
			return re.Match(got.Bytes())
		}
		got.Write(data)
		if re.Match(got.Bytes()) {
			return true
		}
	}
}

// waitState waits until the server is in state.
func (l *lab) waitState(id string, state engine.ServerState, within time.Duration) engine.Server {
	l.t.Helper()
	var s engine.Server
	deadline := time.Now().Add(within)
	for {
		l.must(200, "GET", "/servers/"+id, nil, &s)
		if s.State == state {
			return s
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("server %s is %s (%s), want %s", id, s.State, s.Reason, state)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func sha(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
