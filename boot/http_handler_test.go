package boot

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func testServer(t *testing.T, p Planner) *Server {
	t.Helper()
	cfg := validConfig(t)
	s, err := New(cfg, p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func get(t *testing.T, h http.Handler, method, target string, hdr ...string) *http.Response {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

func body(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestHTTPScripts(t *testing.T) {
	var asked net.HardwareAddr
	s := testServer(t, planFunc(func(ctx context.Context, mac net.HardwareAddr) (Plan, error) {
		asked = mac
		return computePlanner(ctx, mac)
	}))
	h := s.Handler()

	r := get(t, h, "GET", "/boot.ipxe")
	if r.StatusCode != 200 || body(t, r) != chainScript("http://10.0.0.1") {
		t.Errorf("/boot.ipxe: %d", r.StatusCode)
	}

	for _, form := range []string{"52-54-00-12-34-56", "52:54:00:12:34:56", "52-54-00-12-34-56"} {
		r = get(t, h, "GET", "/nodes/"+form+".ipxe")
		b := body(t, r)
		want, _ := nodeScript("http://10.0.0.1", testMAC, Plan{Action: ActionCompute, KernelArgs: computeArgs})
		if r.StatusCode != 200 || b != want {
			t.Errorf("/nodes/%s.ipxe: %d\n%s", form, r.StatusCode, b)
		}
		if asked.String() != testMAC.String() {
			t.Errorf("planner asked about %s", asked)
		}
		if r.Header.Get("Cache-Control") != "no-store" {
			t.Error("node script may be cached")
		}
	}
	r = get(t, h, "GET", "/nodes/52-54-00-12-34-ff.ipxe")
	if b := body(t, r); r.StatusCode != 200 || !strings.Contains(b, "\nexit\n") {
		t.Errorf("local plan: %d %q", r.StatusCode, b)
	}

	for _, bad := range []string{"/nodes/zz.ipxe", "/nodes/.ipxe", "/nodes/52-54-00-12-34-56-78-9a.ipxe", "/nodes/52-54-00-12-34-56", "/nodes/"} {
		if r := get(t, h, "GET", bad); r.StatusCode != 404 {
			t.Errorf("%s: %d, want 404", bad, r.StatusCode)
		}
	}
}

func TestHTTPPlanErrors(t *testing.T) {
	h := testServer(t, planFunc(func(ctx context.Context, mac net.HardwareAddr) (Plan, error) {
		return Plan{}, errors.New("store down")
	})).Handler()
	if r := get(t, h, "GET", "/nodes/52-54-00-12-34-56.ipxe"); r.StatusCode != 500 {
		t.Errorf("planner error: %d, want 500", r.StatusCode)
	}
	h = testServer(t, planFunc(func(ctx context.Context, mac net.HardwareAddr) (Plan, error) {
		return Plan{Action: ActionCompute, KernelArgs: []string{"cairn.token=x\nshell"}}, nil
	})).Handler()
	r := get(t, h, "GET", "/nodes/52-54-00-12-34-56.ipxe")
	if b := body(t, r); r.StatusCode != 500 || strings.Contains(b, "shell") {
		t.Errorf("injected argument: %d %q", r.StatusCode, b)
	}
}

func TestHTTPFiles(t *testing.T) {
	s := testServer(t, computePlanner)
	h := s.Handler()
	kernel, _ := os.ReadFile(s.cfg.Kernel)
	initrd, _ := os.ReadFile(s.cfg.Initramfs)

	r := get(t, h, "GET", "/compute/vmlinuz")
	if b := body(t, r); r.StatusCode != 200 || b != string(kernel) || r.ContentLength != int64(len(kernel)) {
		t.Errorf("kernel: %d, %d bytes, Content-Length %d, want %d", r.StatusCode, len(b), r.ContentLength, len(kernel))
	}
	r = get(t, h, "GET", "/compute/initramfs")
	if b := body(t, r); r.StatusCode != 200 || !bytes.Equal([]byte(b), initrd) {
		t.Errorf("initramfs: %d, %d bytes", r.StatusCode, len(b))
	}
	r = get(t, h, "GET", "/compute/vmlinuz", "Range", "bytes=100-199")
	if b := body(t, r); r.StatusCode != 206 || b != string(kernel[100:200]) || r.Header.Get("Content-Range") == "" {
		t.Errorf("range: %d %q", r.StatusCode, r.Header.Get("Content-Range"))
	}
	r = get(t, h, "HEAD", "/compute/initramfs")
	if r.StatusCode != 200 || r.ContentLength != int64(len(initrd)) {
		t.Errorf("HEAD: %d Content-Length %d", r.StatusCode, r.ContentLength)
	}
	if r := get(t, h, "POST", "/boot.ipxe"); r.StatusCode != 405 {
		t.Errorf("POST: %d, want 405", r.StatusCode)
	}
}

// TestHTTPRefusesTraversal sends raw request lines through a real listener, so that no
// client library cleans the paths first.
func TestHTTPRefusesTraversal(t *testing.T) {
	s := testServer(t, computePlanner)
	secret, err := os.ReadFile(filepath.Join(filepath.Dir(s.cfg.Kernel), "secret"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	for target, want := range map[string]int{
		"/compute/../../../etc/passwd":      400,
		"/compute/%2e%2e/%2e%2e/etc/passwd": 400,
		"/compute/%2E%2E%2Fsecret":          400,
		"/nodes/..%2f..%2fsecret.ipxe":      400,
		"/../secret":                        400,
		"/secret":                           404,
		"/compute/":                         404,
		"/compute/vmlinuz/":                 404,
		"/etc/passwd":                       404,
		"/":                                 404,
	} {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(conn, "GET "+target+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		b, _ := io.ReadAll(resp.Body)
		conn.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", target, resp.StatusCode, want)
		}
		if bytes.Contains(b, secret) {
			t.Errorf("%s: served the secret", target)
		}
	}
}
