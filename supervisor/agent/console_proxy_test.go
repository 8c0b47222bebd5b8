package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/cairn-os/cairn/supervisor/console"
)

const consoleUUID = "6c0f3a52-1d2e-4b7a-9c8d-0e1f2a3b4c5d"

// useConsoleDirs points the proxy at fresh directories for one test.
func useConsoleDirs(t *testing.T) (sockets, logs string) {
	t.Helper()
	dir := t.TempDir()
	sockets, logs = filepath.Join(dir, "consoles"), filepath.Join(dir, "logs")
	for _, d := range []string{sockets, logs} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	old := consoleDirs
	consoleDirs.sockets, consoleDirs.logs = sockets, logs
	t.Cleanup(func() { consoleDirs = old })
	return sockets, logs
}

// fakeConsole listens on path like qemu's console socket; the test drives each
// connection it accepts.
func fakeConsole(t *testing.T, path string) chan net.Conn {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	conns := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			conns <- c
		}
	}()
	return conns
}

func acceptConsole(t *testing.T, conns chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c := <-conns:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("the agent did not connect to the console socket")
		return nil
	}
}

func readN(t *testing.T, c net.Conn, n int) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, n)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read %d bytes: got %q, %v", n, buf, err)
	}
	return buf
}

func TestConsoleProxySpliceSerialAndVNC(t *testing.T) {
	sockets, _ := useConsoleDirs(t)
	admin, addr, id := joinedAgent(t)
	cfg := ClientTLS(admin.ca.issue(t, AdminCN, nil, nil, x509.ExtKeyUsageClientAuth), admin.ca.pool, id)

	for _, kind := range []string{"serial", "vnc"} {
		t.Run(kind, func(t *testing.T) {
			guest := fakeConsole(t, filepath.Join(sockets, consoleUUID+"."+kind))
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, err := DialConsole(ctx, addr, cfg, kind, consoleUUID)
			if err != nil {
				t.Fatalf("DialConsole: %v", err)
			}
			defer c.Close()
			g := acceptConsole(t, guest)

			down := make([]byte, 200<<10)
			rand.Read(down)
			go g.Write(down)
			if got := readN(t, c, len(down)); !bytes.Equal(got, down) {
				t.Error("the guest's output arrived changed")
			}
			if _, err := c.Write([]byte("root\r")); err != nil {
				t.Fatal(err)
			}
			if got := readN(t, g, 5); string(got) != "root\r" {
				t.Errorf("guest got %q, want root\\r", got)
			}

			// The admin hangs up: the guest's connection ends.
			c.Close()
			g.SetReadDeadline(time.Now().Add(10 * time.Second))
			if n, err := g.Read(make([]byte, 8)); !errors.Is(err, io.EOF) {
				t.Errorf("guest read after the admin closed: %d, %v; want EOF", n, err)
			}
		})
	}
}

func TestConsoleProxyGuestCloses(t *testing.T) {
	sockets, _ := useConsoleDirs(t)
	admin, addr, id := joinedAgent(t)
	cfg := ClientTLS(admin.ca.issue(t, AdminCN, nil, nil, x509.ExtKeyUsageClientAuth), admin.ca.pool, id)
	guest := fakeConsole(t, filepath.Join(sockets, consoleUUID+".serial"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := DialConsole(ctx, addr, cfg, "serial", consoleUUID)
	if err != nil {
		t.Fatalf("DialConsole: %v", err)
	}
	defer c.Close()
	g := acceptConsole(t, guest)
	g.Write([]byte("reboot: Power down\r\n"))
	g.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "reboot: Power down\r\n" {
		t.Errorf("admin read %q, %v; want the last output, then the end", got, err)
	}
}

func TestConsoleProxyLogTail(t *testing.T) {
	_, logs := useConsoleDirs(t)
	admin, addr, id := joinedAgent(t)
	cfg := ClientTLS(admin.ca.issue(t, AdminCN, nil, nil, x509.ExtKeyUsageClientAuth), admin.ca.pool, id)

	var log bytes.Buffer
	for i := 0; log.Len() < 300<<10; i++ {
		fmt.Fprintf(&log, "[%8d] boot message number %d\n", i, i)
	}
	if err := os.WriteFile(filepath.Join(logs, consoleUUID+".serial.log"), log.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := DialConsole(ctx, addr, cfg, "log", consoleUUID)
	if err != nil {
		t.Fatalf("DialConsole log: %v", err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read the log: %v", err)
	}
	if len(got) > console.HistoryBytes || len(got) < console.HistoryBytes-100 {
		t.Errorf("got %d bytes of log, want its last %d less the cut line", len(got), console.HistoryBytes)
	}
	if !bytes.HasSuffix(log.Bytes(), got) || !bytes.HasPrefix(got, []byte("[")) {
		t.Errorf("the tail is not the log's end starting at a whole line: %.60q … %.60q", got, got[max(len(got)-60, 0):])
	}

	// A server that never printed has an empty log, not an error.
	c2, err := DialConsole(ctx, addr, cfg, "log", "00000000-0000-0000-0000-000000000000")
	if err != nil {
		t.Fatalf("DialConsole log of a silent server: %v", err)
	}
	defer c2.Close()
	c2.SetReadDeadline(time.Now().Add(10 * time.Second))
	if got, err := io.ReadAll(c2); err != nil || len(got) != 0 {
		t.Errorf("log of a silent server: %q, %v; want empty", got, err)
	}
}

// rawConsoleRequest sends line to the proxy as a console client and returns the
// answer line and what followed it.
func rawConsoleRequest(t *testing.T, addr string, cfg *tls.Config, line string) string {
	t.Helper()
	cfg = cfg.Clone()
	cfg.NextProtos = []string{ConsoleALPN}
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(c, line); err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(c)
	return string(got)
}

func TestConsoleProxyRefusesBadRequests(t *testing.T) {
	sockets, logs := useConsoleDirs(t)
	admin, addr, id := joinedAgent(t)
	cfg := ClientTLS(admin.ca.issue(t, AdminCN, nil, nil, x509.ExtKeyUsageClientAuth), admin.ca.pool, id)
	// What a path in the uuid would reach: a log beside the log directory, and a
	// socket beside the socket directory.
	if err := os.WriteFile(filepath.Join(filepath.Dir(logs), "x.serial.log"), []byte("SECRET"), 0o644); err != nil {
		t.Fatal(err)
	}
	escaped := fakeConsole(t, filepath.Join(filepath.Dir(sockets), "x.serial"))

	for _, tt := range []struct{ line, want string }{
		{"log ../x\n", "error "},
		{"serial ../x\n", "error "},
		{"serial \n", "error "},
		{"serial\n", "error "},
		{"vnc /etc/passwd\n", "error "},
		{"shell " + consoleUUID + "\n", "error unknown console"},
		{"vnc " + consoleUUID + "\n", "error server " + consoleUUID + " has no vnc console on this node"},
		{strings.Repeat("a", 600), ""}, // no line at all: hung up on
	} {
		got := rawConsoleRequest(t, addr, cfg, tt.line)
		if !strings.HasPrefix(got, tt.want) || strings.Contains(got, "SECRET") || strings.HasPrefix(got, "ok") {
			t.Errorf("request %.40q: answer %q, want one starting %q", tt.line, got, tt.want)
		}
		if tt.want == "" && got != "" {
			t.Errorf("request without a line end: answer %q, want none", got)
		}
	}
	select {
	case <-escaped:
		t.Error("a uuid with a path in it reached a socket outside the console directory")
	default:
	}

	// The client side refuses the same before it connects.
	for _, bad := range []string{"", "../x"} {
		if c, err := DialConsole(context.Background(), addr, cfg, "serial", bad); !errors.Is(err, console.ErrInvalid) {
			if c != nil {
				c.Close()
			}
			t.Errorf("DialConsole uuid %q: %v, want ErrInvalid", bad, err)
		}
	}
}

func TestConsoleProxyRefusesNonAdmin(t *testing.T) {
	sockets, _ := useConsoleDirs(t)
	admin, addr, id := joinedAgent(t)
	fakeConsole(t, filepath.Join(sockets, consoleUUID+".serial"))
	stranger := newTestCA(t, "stranger CA")
	for name, cert := range map[string]tls.Certificate{
		"a node's certificate":  admin.ca.issue(t, "node:"+id, nil, nil, x509.ExtKeyUsageClientAuth),
		"admin CN, another CA":  stranger.issue(t, AdminCN, nil, nil, x509.ExtKeyUsageClientAuth),
		"no client certificate": {},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := ClientTLS(cert, admin.ca.pool, id)
			if cert.Certificate == nil {
				cfg.Certificates = nil
			}
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			c, err := DialConsole(ctx, addr, cfg, "serial", consoleUUID)
			if err == nil {
				c.Close()
				t.Fatal("DialConsole succeeded, want refused")
			}
			if !strings.Contains(err.Error(), "refused") && !strings.Contains(err.Error(), "certificate") {
				t.Errorf("DialConsole: %v, want a refusal", err)
			}
		})
	}
}

// TestDialConsoleOldAgent: a node whose listener does not know ALPN is libvirt only.
func TestDialConsoleOldAgent(t *testing.T) {
	ca := newTestCA(t, "ca")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{ca.issue(t, "node:n-1", nil, nil, x509.ExtKeyUsageServerAuth)},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.pool,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.(*tls.Conn).Handshake()
			c.Write([]byte{1})
			defer c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := ClientTLS(ca.issue(t, AdminCN, nil, nil, x509.ExtKeyUsageClientAuth), ca.pool, "n-1")
	c, err := DialConsole(ctx, ln.Addr().String(), cfg, "serial", consoleUUID)
	if err == nil {
		c.Close()
		t.Fatal("DialConsole to a libvirt-only listener succeeded")
	}
	if !strings.Contains(err.Error(), "does not serve consoles") {
		t.Errorf("DialConsole: %v, want 'does not serve consoles'", err)
	}
}

// TestConsoleTargetThroughBridge is the whole remote path: a browser's websocket, the
// admin's bridge, the node agent, the guest's socket and log.
func TestConsoleTargetThroughBridge(t *testing.T) {
	sockets, logs := useConsoleDirs(t)
	admin, addr, id := joinedAgent(t)
	cfg := ClientTLS(admin.ca.issue(t, AdminCN, nil, nil, x509.ExtKeyUsageClientAuth), admin.ca.pool, id)
	if err := os.WriteFile(filepath.Join(logs, consoleUUID+".serial.log"), []byte("earlier boot\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	guest := fakeConsole(t, filepath.Join(sockets, consoleUUID+".serial"))
	tg := ConsoleTarget(addr, cfg, consoleUUID, console.Serial)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		console.Bridge(w, r, tg, console.Serial, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "wss"+strings.TrimPrefix(srv.URL, "https"), &websocket.DialOptions{
		HTTPClient: srv.Client(), HTTPHeader: http.Header{"Origin": {srv.URL}},
	})
	if err != nil {
		t.Fatalf("websocket: %v", err)
	}
	defer ws.CloseNow()
	g := acceptConsole(t, guest)
	g.Write([]byte("login: "))
	var got bytes.Buffer
	for !strings.Contains(got.String(), "login: ") {
		_, p, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("after %q: %v", got.String(), err)
		}
		got.Write(p)
	}
	if got.String() != "earlier boot\nlogin: " {
		t.Errorf("browser got %q, want the log, then the live output", got.String())
	}
	ws.Write(ctx, websocket.MessageBinary, []byte("admin\r"))
	if in := readN(t, g, 6); string(in) != "admin\r" {
		t.Errorf("guest got %q", in)
	}
}
