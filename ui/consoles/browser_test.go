package consoles_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/cairn-os/cairn/supervisor/console"
	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/ui"
	"github.com/cairn-os/cairn/ui/consoles"
	"github.com/cairn-os/cairn/ui/layout"
	"github.com/cairn-os/cairn/ui/static"
)

// chromiumPath is Debian's Chromium, which `make deps` installs.
const chromiumPath = "/usr/bin/chromium"

const browserUUID = "3d2c1b0a-9f8e-4d7c-8b6a-5f4e3d2c1b0a"

// localConsoles is the engine's side for one server whose consoles are in dir.
type localConsoles struct{ dir string }

func (l localConsoles) ConsoleTarget(_ context.Context, u engine.User, id string, kind console.Kind) (console.Target, string, error) {
	if id != "s-1" {
		return console.Target{}, "", engine.ErrNotFound
	}
	return console.LocalTarget(l.dir, l.dir, browserUUID, kind), "web-1", nil
}

// consoleServer serves the console pages as the web console does: the assets, the
// console routes for a signed-in viewer, and the console's real CSP on every answer.
func consoleServer(t *testing.T, dir string) *httptest.Server {
	t.Helper()
	h := consoles.New(localConsoles{dir}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	mux := http.NewServeMux()
	mux.Handle("GET "+static.Prefix, static.Handler())
	mux.HandleFunc("GET /servers/{id}/console", h.Serial)
	mux.HandleFunc("GET /servers/{id}/console/ws", h.SerialSocket)
	mux.HandleFunc("GET /servers/{id}/vnc", h.VNC)
	mux.HandleFunc("GET /servers/{id}/vnc/ws", h.VNCSocket)
	viewer := layout.Viewer{User: engine.User{ID: "u-1", Name: "alice", Role: engine.RoleUser}, Session: engine.Session{CSRF: "t"}}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", ui.ContentSecurityPolicy)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		mux.ServeHTTP(w, r.WithContext(layout.WithViewer(r.Context(), viewer)))
	}))
	srv.EnableHTTP2 = true // as the supervisor serves it: the websocket still upgrades over HTTP/1.1
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// browser starts headless Chromium for one test; it records the page's CSP
// violations in window.cspViolations.
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := exec.LookPath(chromiumPath); err != nil {
		t.Skipf("needs %s (`make deps` installs chromium)", chromiumPath)
	}
	if !static.Has("vendor/xterm.mjs") || !static.Has("vendor/novnc/core/rfb.js") {
		t.Skip("needs the vendored xterm.js and noVNC: run `make assets`")
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
		// The test server's certificate is httptest's own.
		chromedp.Flag("ignore-certificate-errors", true),
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

// scriptViolations are the CSP violations other than xterm.js's injected <style>
// elements and style attributes, which the page re-applies as a constructed sheet.
func scriptViolations(t *testing.T, bctx context.Context) []string {
	t.Helper()
	var all []string
	run(t, bctx, "read the CSP violations", chromedp.Evaluate(`window.cspViolations`, &all))
	var bad []string
	for _, v := range all {
		if !strings.HasPrefix(v, "style-src") {
			bad = append(bad, v)
		}
	}
	return bad
}

// typeKeys presses keys as a keyboard does: one keyDown that carries the text, so
// that Chromium makes the keypress and input events itself, and skips them when the
// page cancels the keydown (xterm.js does). chromedp.KeyEvent sends the text as a
// separate char event, which the page cannot cancel, and xterm.js would see each key
// twice.
func typeKeys(keys string) chromedp.Action {
	return chromedp.ActionFunc(func(ctx context.Context) error {
		for _, r := range keys {
			var down *input.DispatchKeyEventParams
			for _, ev := range kb.Encode(r) {
				switch ev.Type {
				case input.KeyDown:
					down = ev
					continue
				case input.KeyChar:
					down.Text, down.UnmodifiedText = ev.Text, ev.UnmodifiedText
					continue
				}
				if err := down.Do(ctx); err != nil {
					return err
				}
				if err := ev.Do(ctx); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

func acceptGuest(t *testing.T, ln net.Listener) net.Conn {
	t.Helper()
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		ch <- result{c, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatal(r.err)
		}
		t.Cleanup(func() { r.c.Close() })
		return r.c
	case <-time.After(time.Minute):
		ln.Close()
		t.Fatal("the page did not connect to the guest's console")
		return nil
	}
}

func TestBrowserSerialConsole(t *testing.T) {
	bctx := browser(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, browserUUID+".serial.log"), []byte("Booting from the earlier log\r\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", filepath.Join(dir, browserUUID+".serial"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := consoleServer(t, dir)

	run(t, bctx, "open the serial console", chromedp.Navigate(srv.URL+"/servers/s-1/console"))
	g := acceptGuest(t, ln)
	g.Write([]byte("Debian GNU/Linux 12 web-1 ttyS0\r\n\r\nweb-1 login: "))
	rows := `(document.querySelector('.xterm-rows')?.textContent ?? '')`
	run(t, bctx, "see the history and the guest's prompt in the terminal",
		chromedp.Poll(rows+`.includes('Booting from the earlier log') && `+rows+`.includes('web-1 login:')`, nil),
		chromedp.Poll(`document.querySelector('.console-status').textContent === 'Connected'`, nil),
	)

	// xterm.js's own styles apply despite the CSP: the rows take the theme's colour.
	var color string
	run(t, bctx, "read the terminal's text colour", chromedp.Evaluate(`getComputedStyle(document.querySelector('.xterm-rows')).color`, &color))
	if color != "rgb(216, 222, 233)" {
		t.Errorf("terminal text colour %q, want the theme's rgb(216, 222, 233): xterm's injected styles are not applied", color)
	}

	// A person types: the keys reach the guest.
	run(t, bctx, "type into the terminal",
		chromedp.Focus(".xterm-helper-textarea", chromedp.ByQuery),
		typeKeys("root\r"),
	)
	g.SetReadDeadline(time.Now().Add(time.Minute))
	in := make([]byte, 5)
	if _, err := io.ReadFull(g, in); err != nil || string(in) != "root\r" {
		t.Errorf("guest got %q, %v; want root\\r", in, err)
	}
	g.Write([]byte("root\r\nPassword: "))
	run(t, bctx, "see the echo", chromedp.Poll(rows+`.includes('Password:')`, nil))

	// The guest goes away: the page says so and offers to reconnect, which works.
	g.Close()
	run(t, bctx, "see the console disconnected",
		chromedp.Poll(`document.querySelector('.console-status').textContent.startsWith('Disconnected — the server closed its console')`, nil),
		chromedp.Poll(`!document.querySelector('.console-reconnect').hidden`, nil),
		chromedp.Click(".console-reconnect", chromedp.ByQuery),
	)
	g2 := acceptGuest(t, ln)
	g2.Write([]byte("\r\nweb-1 login: again"))
	run(t, bctx, "see the console again after reconnecting",
		chromedp.Poll(rows+`.includes('login: again') && `+rows+`.includes('Booting from the earlier log')`, nil),
		chromedp.Poll(`document.querySelector('.console-status').textContent === 'Connected'`, nil),
	)
	if bad := scriptViolations(t, bctx); len(bad) > 0 {
		t.Errorf("the page broke its CSP: %v", bad)
	}
}

// rfbServer serves one RFB 3.8 client without authentication: a w×h framebuffer of
// one colour, and the keys the client sends (keysym, down) on keys.
func rfbServer(c net.Conn, w, h int, r, g, b byte, keys chan<- [2]uint32) error {
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	if _, err := io.WriteString(c, "RFB 003.008\n"); err != nil {
		return err
	}
	buf := make([]byte, 12)
	if _, err := io.ReadFull(c, buf); err != nil {
		return fmt.Errorf("client version: %w", err)
	}
	c.Write([]byte{1, 1}) // one security type: None
	if _, err := io.ReadFull(c, buf[:1]); err != nil || buf[0] != 1 {
		return fmt.Errorf("security type: %v %v", buf[:1], err)
	}
	c.Write([]byte{0, 0, 0, 0}) // SecurityResult OK
	if _, err := io.ReadFull(c, buf[:1]); err != nil {
		return fmt.Errorf("client init: %w", err)
	}
	name := "web-1"
	init := binary.BigEndian.AppendUint16(nil, uint16(w))
	init = binary.BigEndian.AppendUint16(init, uint16(h))
	init = append(init, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0)
	init = binary.BigEndian.AppendUint32(init, uint32(len(name)))
	c.Write(append(init, name...))

	shifts := [3]uint{16, 8, 0}
	sentFrame := false
	for {
		if _, err := io.ReadFull(c, buf[:1]); err != nil {
			return nil // the client went away
		}
		switch buf[0] {
		case 0: // SetPixelFormat: the client's byte layout for the pixels we send
			pf := make([]byte, 19)
			if _, err := io.ReadFull(c, pf); err != nil {
				return err
			}
			shifts = [3]uint{uint(pf[13]), uint(pf[14]), uint(pf[15])}
		case 2: // SetEncodings
			hdr := make([]byte, 3)
			if _, err := io.ReadFull(c, hdr); err != nil {
				return err
			}
			if _, err := io.ReadFull(c, make([]byte, 4*int(binary.BigEndian.Uint16(hdr[1:])))); err != nil {
				return err
			}
		case 3: // FramebufferUpdateRequest: the first gets the whole screen, raw
			if _, err := io.ReadFull(c, make([]byte, 9)); err != nil {
				return err
			}
			if sentFrame {
				continue
			}
			sentFrame = true
			msg := []byte{0, 0, 0, 1, 0, 0, 0, 0}
			msg = binary.BigEndian.AppendUint16(msg, uint16(w))
			msg = binary.BigEndian.AppendUint16(msg, uint16(h))
			msg = append(msg, 0, 0, 0, 0) // raw
			px := binary.LittleEndian.AppendUint32(nil, uint32(r)<<shifts[0]|uint32(g)<<shifts[1]|uint32(b)<<shifts[2])
			for range w * h {
				msg = append(msg, px...)
			}
			if _, err := c.Write(msg); err != nil {
				return err
			}
		case 4: // KeyEvent
			ev := make([]byte, 7)
			if _, err := io.ReadFull(c, ev); err != nil {
				return err
			}
			keys <- [2]uint32{binary.BigEndian.Uint32(ev[3:]), uint32(ev[0])}
		case 5: // PointerEvent
			if _, err := io.ReadFull(c, make([]byte, 5)); err != nil {
				return err
			}
		case 6: // ClientCutText
			hdr := make([]byte, 7)
			if _, err := io.ReadFull(c, hdr); err != nil {
				return err
			}
			if _, err := io.ReadFull(c, make([]byte, binary.BigEndian.Uint32(hdr[3:]))); err != nil {
				return err
			}
		default:
			return fmt.Errorf("client message type %d is not one this test server knows", buf[0])
		}
	}
}

func TestBrowserVNCConsole(t *testing.T) {
	bctx := browser(t)
	dir := t.TempDir()
	ln, err := net.Listen("unix", filepath.Join(dir, browserUUID+".vnc"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := consoleServer(t, dir)

	run(t, bctx, "open the screen", chromedp.Navigate(srv.URL+"/servers/s-1/vnc"))
	g := acceptGuest(t, ln)
	keys := make(chan [2]uint32, 64)
	served := make(chan error, 1)
	go func() { served <- rfbServer(g, 320, 200, 0x20, 0x80, 0xc0, keys) }()

	pixel := `(() => { const c = document.querySelector('.console-screen canvas'); if (!c || c.width !== 320) return '';
  return Array.from(c.getContext('2d').getImageData(10, 10, 1, 1).data).join(','); })()`
	run(t, bctx, "see the guest's screen",
		chromedp.Poll(`document.querySelector('.console-status').textContent === 'Connected'`, nil),
		chromedp.Poll(pixel+` === '32,128,192,255'`, nil),
		chromedp.Click(".console-cad", chromedp.ByQuery),
	)
	want := [][2]uint32{{0xffe3, 1}, {0xffe9, 1}, {0xffff, 1}}
	for i := 0; i < len(want); {
		select {
		case k := <-keys:
			if k == want[i] {
				i++
			}
		case err := <-served:
			t.Fatalf("RFB server ended before Ctrl-Alt-Del arrived: %v", err)
		case <-time.After(time.Minute):
			t.Fatalf("Ctrl-Alt-Del did not reach the guest (waiting for keysym %#x down)", want[i][0])
		}
	}
	if bad := scriptViolations(t, bctx); len(bad) > 0 {
		t.Errorf("the page broke its CSP: %v", bad)
	}
	g.Close()
	run(t, bctx, "see the screen disconnected", chromedp.Poll(`!document.querySelector('.console-reconnect').hidden`, nil))
	if err := <-served; err != nil && !errors.Is(err, net.ErrClosed) {
		t.Errorf("RFB server: %v", err)
	}
}
