package console

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

const testUUID = "2f1e6c1a-9b8e-4c1d-8f6a-0123456789ab"

// guest is a fake guest console: a unix socket whose accepted connections the test
// drives by hand.
type guest struct {
	conns chan net.Conn
}

func newGuest(t *testing.T, path string) *guest {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	g := &guest{conns: make(chan net.Conn, 4)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			g.conns <- c
		}
	}()
	return g
}

// accept returns the next connection the bridge made to the guest.
func (g *guest) accept(t *testing.T) net.Conn {
	t.Helper()
	select {
	case c := <-g.conns:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("the bridge did not connect to the guest socket")
		return nil
	}
}

// bridgeServer serves Bridge for t over TLS; returned gets a value each time a
// Bridge call has returned.
func bridgeServer(t *testing.T, tg Target, kind Kind) (*httptest.Server, chan struct{}) {
	t.Helper()
	returned := make(chan struct{}, 4)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { returned <- struct{}{} }()
		Bridge(w, r, tg, kind, logger)
	}))
	t.Cleanup(srv.Close)
	return srv, returned
}

func waitReturned(t *testing.T, returned chan struct{}) {
	t.Helper()
	select {
	case <-returned:
	case <-time.After(20 * time.Second):
		t.Fatal("Bridge did not return after the console closed")
	}
}

// dial opens the websocket as a browser on the console's page would: Origin is the
// server's own unless origin says otherwise.
func dial(ctx context.Context, srv *httptest.Server, origin string, subprotocols ...string) (*websocket.Conn, *http.Response, error) {
	if origin == "" {
		origin = srv.URL
	}
	h := http.Header{"Origin": {origin}}
	return websocket.Dial(ctx, "wss"+strings.TrimPrefix(srv.URL, "https")+"/servers/x/console/ws", &websocket.DialOptions{
		HTTPClient: srv.Client(), HTTPHeader: h, Subprotocols: subprotocols,
	})
}

// readUntil reads binary messages until what arrived contains want, and returns it all.
func readUntil(t *testing.T, ctx context.Context, c *websocket.Conn, want string) string {
	t.Helper()
	var got bytes.Buffer
	for !strings.Contains(got.String(), want) {
		typ, p, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("waiting for %q, got %q, then: %v", want, got.String(), err)
		}
		if typ != websocket.MessageBinary {
			t.Fatalf("message of type %v, want binary", typ)
		}
		got.Write(p)
	}
	return got.String()
}

func readGuest(t *testing.T, g net.Conn, n int) []byte {
	t.Helper()
	g.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, n)
	if _, err := io.ReadFull(g, buf); err != nil {
		t.Fatalf("guest read %d bytes: got %q, %v", n, buf, err)
	}
	return buf
}

func TestBridgeSerialHistoryThenLive(t *testing.T) {
	dir := t.TempDir()
	history := "[    0.000000] Linux version 6.1.0\nold prompt$ \n"
	if err := os.WriteFile(filepath.Join(dir, testUUID+".serial.log"), []byte(history), 0o644); err != nil {
		t.Fatal(err)
	}
	g := newGuest(t, filepath.Join(dir, testUUID+".serial"))
	srv, returned := bridgeServer(t, LocalTarget(dir, dir, testUUID, Serial), Serial)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	c, _, err := dial(ctx, srv, "")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.CloseNow()
	gc := g.accept(t)
	if _, err := gc.Write([]byte("debian login: ")); err != nil {
		t.Fatal(err)
	}
	got := readUntil(t, ctx, c, "debian login: ")
	if got != history+"debian login: " {
		t.Errorf("browser got %q, want the history, then the live output", got)
	}

	// Keystrokes reach the guest, in binary and in text messages; its echo comes back.
	if err := c.Write(ctx, websocket.MessageBinary, []byte("root\r")); err != nil {
		t.Fatal(err)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("ls\r")); err != nil {
		t.Fatal(err)
	}
	if in := readGuest(t, gc, 8); string(in) != "root\rls\r" {
		t.Errorf("guest got %q, want %q", in, "root\rls\r")
	}
	gc.Write([]byte("\r\nPassword: "))
	readUntil(t, ctx, c, "Password: ")

	// The browser closes: the guest's connection ends and Bridge returns.
	if err := c.Close(websocket.StatusNormalClosure, "tab closed"); err != nil {
		t.Errorf("close: %v", err)
	}
	gc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := gc.Read(make([]byte, 16)); !errors.Is(err, io.EOF) {
		t.Errorf("guest read after the browser closed: %d, %v; want EOF", n, err)
	}
	waitReturned(t, returned)
}

func TestBridgeGuestCloses(t *testing.T) {
	dir := t.TempDir()
	g := newGuest(t, filepath.Join(dir, testUUID+".serial"))
	srv, returned := bridgeServer(t, LocalTarget(dir, dir, testUUID, Serial), Serial)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, err := dial(ctx, srv, "")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.CloseNow()
	gc := g.accept(t)
	gc.Write([]byte("Power down.\r\n"))
	readUntil(t, ctx, c, "Power down.")
	gc.Close() // qemu exits

	_, _, err = c.Read(ctx)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusNormalClosure || !strings.Contains(ce.Reason, "closed its console") {
		t.Errorf("browser read after the guest closed: %v; want a normal close saying the console closed", err)
	}
	waitReturned(t, returned)
}

func TestBridgeVNCPassesBinaryUnchanged(t *testing.T) {
	dir := t.TempDir()
	g := newGuest(t, filepath.Join(dir, testUUID+".vnc"))
	srv, returned := bridgeServer(t, LocalTarget(dir, dir, testUUID, VNC), VNC)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := dial(ctx, srv, "", "binary")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.CloseNow()
	if c.Subprotocol() != "binary" {
		t.Errorf("subprotocol %q, want binary (noVNC asks for it)", c.Subprotocol())
	}
	c.SetReadLimit(-1)
	gc := g.accept(t)

	// The server's side: an RFB greeting, then a megabyte of framebuffer.
	down := append([]byte("RFB 003.008\n"), make([]byte, 1<<20)...)
	rand.Read(down[12:])
	go gc.Write(down)
	var got bytes.Buffer
	for got.Len() < len(down) {
		typ, p, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("after %d of %d bytes: %v", got.Len(), len(down), err)
		}
		if typ != websocket.MessageBinary {
			t.Fatalf("message type %v, want binary", typ)
		}
		got.Write(p)
	}
	if !bytes.Equal(got.Bytes(), down) {
		t.Error("the guest's byte stream arrived changed")
	}

	// The client's side: many messages arrive as one unchanged stream.
	up := make([]byte, 300<<10)
	rand.Read(up)
	go func() {
		for p := up; len(p) > 0; {
			n := min(len(p), 7777)
			if c.Write(ctx, websocket.MessageBinary, p[:n]) != nil {
				return
			}
			p = p[n:]
		}
	}()
	if in := readGuest(t, gc, len(up)); !bytes.Equal(in, up) {
		t.Error("the browser's byte stream arrived changed at the guest")
	}
	c.Close(websocket.StatusNormalClosure, "")
	waitReturned(t, returned)
}

func TestBridgeRefusesOtherOrigin(t *testing.T) {
	var dials atomic.Int32
	tg := Target{Dial: func(context.Context) (net.Conn, error) {
		dials.Add(1)
		return nil, errors.New("no guest here")
	}}
	srv, returned := bridgeServer(t, tg, Serial)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := dial(ctx, srv, "https://evil.example")
	if err == nil {
		c.CloseNow()
		t.Fatal("a page of another site opened the console")
	}
	if resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("other origin: %v, %v; want 403", resp, err)
	}
	waitReturned(t, returned)
	if n := dials.Load(); n != 0 {
		t.Errorf("the console was dialled %d times for a refused origin", n)
	}
}

func TestBridgeUnreachableConsole(t *testing.T) {
	dir := t.TempDir() // no socket in it: the server is not running
	srv, returned := bridgeServer(t, LocalTarget(dir, dir, testUUID, Serial), Serial)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := dial(ctx, srv, "")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.CloseNow()
	_, _, err = c.Read(ctx)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusTryAgainLater || !strings.Contains(ce.Reason, "is the server running?") {
		t.Errorf("read: %v; want close 1013 saying the console is not reachable", err)
	}
	waitReturned(t, returned)
}

func TestBridgeRefusesPlainHTTP(t *testing.T) {
	var dials atomic.Int32
	tg := Target{Dial: func(context.Context) (net.Conn, error) {
		dials.Add(1)
		return nil, errors.New("no guest here")
	}}
	srv, returned := bridgeServer(t, tg, VNC)
	resp, err := srv.Client().Get(srv.URL + "/servers/x/vnc/ws")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired {
		t.Errorf("GET without upgrade: %d, want 426", resp.StatusCode)
	}
	waitReturned(t, returned)
	if dials.Load() != 0 {
		t.Error("a plain GET dialled the console")
	}
}

// TestBridgeDropsSilentBrowser: a browser that stops answering pings (it reads
// nothing, as a suspended laptop) is dropped, and the guest's socket with it.
func TestBridgeDropsSilentBrowser(t *testing.T) {
	oldInterval, oldTimeout := pingInterval, pingTimeout
	pingInterval, pingTimeout = 50*time.Millisecond, 200*time.Millisecond
	t.Cleanup(func() { pingInterval, pingTimeout = oldInterval, oldTimeout })

	dir := t.TempDir()
	g := newGuest(t, filepath.Join(dir, testUUID+".vnc"))
	srv, returned := bridgeServer(t, LocalTarget(dir, dir, testUUID, VNC), VNC)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// coder/websocket answers pings only while the client reads; this one never does.
	c, _, err := dial(ctx, srv, "")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.CloseNow()
	gc := g.accept(t)
	gc.SetReadDeadline(time.Now().Add(15 * time.Second))
	if n, err := gc.Read(make([]byte, 16)); !errors.Is(err, io.EOF) {
		t.Errorf("guest read: %d, %v; want EOF once the silent browser is dropped", n, err)
	}
	waitReturned(t, returned)
}
