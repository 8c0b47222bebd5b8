package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/supervisor/pki"
	"github.com/coder/websocket"
)

// fakeEngine serves handlers a test writes, over HTTPS with a certificate from a
// fresh CA, and returns a CLI logged in to it with token "cairn_test".
func fakeEngine(t *testing.T, mux *http.ServeMux) *cli {
	t.Helper()
	ca, err := pki.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	conf, err := ca.ServerTLSConfig(nil, []net.IP{net.ParseIP("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(mux)
	srv.TLS = conf
	srv.StartTLS()
	t.Cleanup(srv.Close)
	c := &cli{t: t, config: filepath.Join(t.TempDir(), "config.json")}
	if err := saveConfig(c.config, config{URL: srv.URL, User: "admin", CAPEM: string(ca.CertPEM()), Token: "cairn_test"}); err != nil {
		t.Fatal(err)
	}
	return c
}

func writeJSONAnswer(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// fakeShutdown is an engine whose server s-1 ignores the power button: the shutdown
// operation fails as the engine's does when its timeout passes.
type fakeShutdown struct {
	mu      sync.Mutex
	stopped bool
	timeout int
}

func (f *fakeShutdown) mux() *http.ServeMux {
	mux := http.NewServeMux()
	op := engine.Operation{ID: "op-1", Kind: "shutdown", Target: "s-1", State: engine.OpRunning, CreatedAt: time.Now()}
	mux.HandleFunc("POST /api/v1/servers/s-1/shutdown", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			TimeoutSeconds int `json:"timeout_seconds"`
		}
		json.NewDecoder(r.Body).Decode(&req)
		f.mu.Lock()
		f.timeout = req.TimeoutSeconds
		f.mu.Unlock()
		writeJSONAnswer(w, http.StatusAccepted, op)
	})
	mux.HandleFunc("GET /api/v1/operations/op-1", func(w http.ResponseWriter, r *http.Request) {
		end := op
		end.State, end.Error, end.EndedAt = engine.OpFailed, "the guest did not power off within 1s; force it off", time.Now()
		writeJSONAnswer(w, http.StatusOK, end)
	})
	mux.HandleFunc("POST /api/v1/servers/s-1/stop", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.stopped = true
		f.mu.Unlock()
		writeJSONAnswer(w, http.StatusOK, engine.Server{ID: "s-1", Name: "web1", State: engine.ServerShutoff})
	})
	return mux
}

func TestShutdownThatTimesOut(t *testing.T) {
	f := &fakeShutdown{}
	c := fakeEngine(t, f.mux())
	code, _, errOut := c.run("", "servers", "shutdown", "s-1", "--timeout", "1s")
	if code != exitError || !strings.Contains(errOut, "did not power off within 1s") || !strings.Contains(errOut, "force it off with: cairn servers stop s-1") {
		t.Fatalf("shutdown that times out: exit %d\n%s", code, errOut)
	}
	if f.stopped || f.timeout != 1 {
		t.Fatalf("stopped %v, timeout sent %d", f.stopped, f.timeout)
	}
	code, out, errOut := c.run("", "servers", "shutdown", "s-1", "--timeout", "1s", "--force-after-timeout")
	if code != 0 || !f.stopped || !strings.Contains(errOut, "forcing it off") || !strings.Contains(out, "shutoff") {
		t.Fatalf("shutdown --force-after-timeout: exit %d, stopped %v\n%s%s", code, f.stopped, out, errOut)
	}
	if code, _, _ := c.run("", "servers", "shutdown", "s-1", "--timeout", "1500ms"); code != exitUsage {
		t.Fatalf("a timeout of a fraction of a second: exit %d, want usage", code)
	}
}

func TestInterruptWhileWaiting(t *testing.T) {
	mux := http.NewServeMux()
	op := engine.Operation{ID: "op-9", Kind: "convert", Target: "i-1", State: engine.OpRunning, Progress: 0.4, CreatedAt: time.Now()}
	waiting := make(chan struct{}, 10)
	mux.HandleFunc("GET /api/v1/operations/op-9", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("wait") != "" {
			waiting <- struct{}{}
			select {
			case <-r.Context().Done():
			case <-time.After(30 * time.Second):
			}
		}
		writeJSONAnswer(w, http.StatusOK, op)
	})
	canceled := false
	mux.HandleFunc("POST /api/v1/operations/op-9/cancel", func(w http.ResponseWriter, r *http.Request) {
		canceled = true
		end := op
		end.State, end.Error = engine.OpCanceled, "canceled"
		writeJSONAnswer(w, http.StatusOK, end)
	})
	c := fakeEngine(t, mux)

	// Ctrl-C as soon as the CLI waits on the engine.
	old := notifyInterrupt
	t.Cleanup(func() { notifyInterrupt = old })
	notifyInterrupt = func(ch chan<- os.Signal) func() {
		done := make(chan struct{})
		go func() {
			select {
			case <-waiting:
				ch <- os.Interrupt
			case <-done:
			}
		}()
		return func() { close(done) }
	}
	code, _, errOut := c.run("", "operations", "wait", "op-9")
	if code != exitInterrupted || !strings.Contains(errOut, "stopped waiting; operation op-9 (convert i-1) goes on") ||
		!strings.Contains(errOut, "cairn operations cancel op-9") {
		t.Fatalf("Ctrl-C while waiting: exit %d\n%s", code, errOut)
	}
	if canceled {
		t.Fatal("Ctrl-C without a terminal to ask on canceled the operation")
	}
}

func TestBeforeEscape(t *testing.T) {
	for _, tc := range []struct {
		in   string
		send string
		left bool
	}{
		{"ls -l\r", "ls -l\r", false},
		{"ab\x1dcd", "ab", true},
		{"\x1d", "", true},
		{"\x03", "\x03", false}, // Ctrl-C goes to the guest
	} {
		send, left := beforeEscape([]byte(tc.in))
		if string(send) != tc.send || left != tc.left {
			t.Errorf("beforeEscape(%q) = %q, %v; want %q, %v", tc.in, send, left, tc.send, tc.left)
		}
	}
}

// fakeConsole is a serial console: it greets, echoes what it gets, and records it.
type fakeConsole struct {
	mu       sync.Mutex
	got      bytes.Buffer
	auth     string
	protocol string
	closed   chan struct{}
}

func (f *fakeConsole) handler(closeWith string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.auth = r.Header.Get("Authorization")
		f.mu.Unlock()
		ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"binary"}})
		if err != nil {
			return
		}
		defer ws.CloseNow()
		f.mu.Lock()
		f.protocol = ws.Subprotocol()
		f.mu.Unlock()
		ctx := r.Context()
		ws.Write(ctx, websocket.MessageBinary, []byte("Debian GNU/Linux 12 web1 ttyS0\r\nweb1 login: "))
		if closeWith != "" {
			ws.Close(websocket.StatusTryAgainLater, closeWith)
			return
		}
		defer close(f.closed)
		for {
			typ, data, err := ws.Read(ctx)
			if err != nil {
				return
			}
			if typ != websocket.MessageBinary {
				f.mu.Lock()
				f.got.WriteString("[text message]")
				f.mu.Unlock()
			}
			f.mu.Lock()
			f.got.Write(data)
			f.mu.Unlock()
			ws.Write(ctx, websocket.MessageBinary, data)
		}
	}
}

func TestConsoleRelaysAndLeavesOnCtrlBracket(t *testing.T) {
	fc := &fakeConsole{closed: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/servers/web1/console/serial", fc.handler(""))
	mux.HandleFunc("GET /api/v1/servers/gone/console/serial", (&fakeConsole{}).handler("the server's serial console is not reachable: is the server running?"))
	mux.HandleFunc("GET /api/v1/servers/nope/console/serial", func(w http.ResponseWriter, r *http.Request) {
		writeJSONAnswer(w, http.StatusBadRequest, map[string]string{"error": `open the console of server "nope": invalid: it has never run; start it first`})
	})
	c := fakeEngine(t, mux)

	// Keys come in over time, as typed: the greeting must be shown before the user
	// leaves, so the input waits for it.
	in, typing := io.Pipe()
	var out syncBuffer
	done := make(chan struct{})
	var code int
	var errOut string
	go func() {
		defer close(done)
		var e bytes.Buffer
		code = run([]string{"servers", "console", "web1", "--config", c.config}, in, &out, &e, func(string) string { return "" })
		errOut = e.String()
	}()
	waitFor(t, func() bool { return strings.Contains(out.String(), "login: ") })
	typing.Write([]byte("root\r"))
	waitFor(t, func() bool { return strings.Contains(out.String(), "login: root\r") })
	typing.Write([]byte("\x03ls\x1dnot sent"))
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the console did not end after Ctrl-]")
	}
	select {
	case <-fc.closed:
	case <-time.After(30 * time.Second):
		t.Fatal("the console's websocket was not closed after Ctrl-]")
	}
	fc.mu.Lock()
	got, auth, proto := fc.got.String(), fc.auth, fc.protocol
	fc.mu.Unlock()
	if code != 0 || !strings.Contains(errOut, "Leave with Ctrl-]") || !strings.Contains(errOut, "Left the console of web1") {
		t.Fatalf("console: exit %d\n%s", code, errOut)
	}
	if got != "root\r\x03ls" {
		t.Fatalf("the console got %q; want the keys before Ctrl-] as binary messages", got)
	}
	if auth != "Bearer cairn_test" || proto != "binary" {
		t.Fatalf("the websocket request had Authorization %q, subprotocol %q", auth, proto)
	}

	// The engine closes the console: its reason is shown, with a non-zero exit.
	// (stdin stays open: a console whose input has ended is left by the CLI.)
	idle, _ := io.Pipe()
	var e bytes.Buffer
	code = run([]string{"servers", "console", "gone", "--config", c.config}, idle, io.Discard, &e, func(string) string { return "" })
	errOut = e.String()
	if code != exitError || !strings.Contains(errOut, "is the server running?") {
		t.Fatalf("console closed by the engine: exit %d\n%s", code, errOut)
	}
	// The engine refuses the websocket: its message, as for other calls.
	code, _, errOut = c.run("", "servers", "console", "nope")
	if code != exitError || !strings.Contains(errOut, "it has never run; start it first") {
		t.Fatalf("console refused: exit %d\n%s", code, errOut)
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls cond for up to 30 seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatal("timed out waiting")
		case <-time.After(10 * time.Millisecond):
		}
	}
}
