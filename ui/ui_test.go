package ui

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

// console is the web console under test, in front of a fake engine.
type console struct {
	t   *testing.T
	h   http.Handler
	eng *fakeEngine
}

func newConsole(t *testing.T) *console {
	t.Helper()
	eng := newFakeEngine()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	}
	return &console{t: t, h: New(eng, logger), eng: eng}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// session is a signed-in browser: its cookie and its CSRF token.
type session struct {
	cookie *http.Cookie
	csrf   string
}

func (c *console) do(r *http.Request) *http.Response {
	c.t.Helper()
	rec := httptest.NewRecorder()
	c.h.ServeHTTP(rec, r)
	return rec.Result()
}

func (c *console) get(path string, s *session, header ...string) *http.Response {
	c.t.Helper()
	r := httptest.NewRequest(http.MethodGet, path, nil)
	if s != nil {
		r.AddCookie(s.cookie)
	}
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	return c.do(r)
}

func (c *console) postForm(path string, form url.Values, s *session, header ...string) *http.Response {
	c.t.Helper()
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if s != nil {
		r.AddCookie(s.cookie)
	}
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	return c.do(r)
}

// login signs alice in and returns her session, read back from the page as a
// browser would: the cookie from Set-Cookie, the CSRF token from <body hx-headers>.
func (c *console) login() *session {
	c.t.Helper()
	res := c.postForm("/login", url.Values{"username": {"alice"}, "password": {"correct horse"}}, nil)
	ck := sessionCookie(res)
	if res.StatusCode != http.StatusSeeOther || ck == nil {
		c.t.Fatalf("login: status %d, cookie %v; want 303 and a session cookie", res.StatusCode, ck)
	}
	s := &session{cookie: ck}
	page := body(c.t, c.get("/", s))
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	if m == nil {
		c.t.Fatalf("dashboard has no CSRF field:\n%s", page)
	}
	s.csrf = m[1]
	return s
}

func sessionCookie(res *http.Response) *http.Cookie {
	for _, c := range res.Cookies() {
		if c.Name == "cairn_session" {
			return c
		}
	}
	return nil
}

func body(t *testing.T, res *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestNoSessionRedirectsToLogin(t *testing.T) {
	c := newConsole(t)
	for path, want := range map[string]string{
		"/":                     "/login",
		"/nodes":                "/login?next=%2Fnodes",
		"/nodes/n-525400000002": "/login?next=%2Fnodes%2Fn-525400000002",
		"/nodes?sort=name&x=1":  "/login?next=%2Fnodes%3Fsort%3Dname%26x%3D1",
		"/no-such-page":         "/login?next=%2Fno-such-page",
	} {
		res := c.get(path, nil)
		if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != want {
			t.Errorf("GET %s without a session: %d to %q, want 303 to %q", path, res.StatusCode, res.Header.Get("Location"), want)
		}
	}

	// htmx would swap a redirect's target into the page; it must navigate instead.
	res := c.get("/nodes/table", nil, "HX-Request", "true", "HX-Target", "nodes")
	if got := res.Header.Get("HX-Redirect"); got != "/login" {
		t.Errorf("htmx poll without a session: HX-Redirect %q, want /login", got)
	}
	if res.StatusCode == http.StatusOK || res.Header.Get("Location") != "" {
		t.Errorf("htmx poll without a session: status %d, Location %q; want no page and no 3xx", res.StatusCode, res.Header.Get("Location"))
	}

	// A cookie the engine does not know is no session either, and is cleared.
	res = c.get("/", &session{cookie: &http.Cookie{Name: "cairn_session", Value: "forged"}})
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/login" {
		t.Errorf("GET / with an unknown session: %d to %q, want 303 to /login", res.StatusCode, res.Header.Get("Location"))
	}
	if ck := sessionCookie(res); ck == nil || ck.MaxAge >= 0 {
		t.Errorf("unknown session cookie not cleared: %v", ck)
	}
}

func TestLoginWrongPasswordShowsErrorAndKeepsName(t *testing.T) {
	c := newConsole(t)
	res := c.postForm("/login", url.Values{"username": {"alice"}, "password": {"wrong"}}, nil)
	page := body(t, res)
	if res.StatusCode != http.StatusOK {
		t.Errorf("status %d, want 200 with the form", res.StatusCode)
	}
	if !strings.Contains(page, "Wrong name or password") {
		t.Errorf("page does not say the login was wrong:\n%s", page)
	}
	if !strings.Contains(page, `name="username" type="text" value="alice"`) {
		t.Errorf("page does not keep the name:\n%s", page)
	}
	if strings.Contains(page, "wrong") && strings.Contains(page, `value="wrong"`) {
		t.Errorf("page echoes the password")
	}
	if ck := sessionCookie(res); ck != nil {
		t.Errorf("failed login set a cookie: %v", ck)
	}
	if res.Header.Get("Set-Cookie") != "" {
		t.Errorf("failed login set a cookie: %q", res.Header.Get("Set-Cookie"))
	}

	// Unknown users read the same words.
	page = body(t, c.postForm("/login", url.Values{"username": {"mallory"}, "password": {"x"}}, nil))
	if !strings.Contains(page, "Wrong name or password") {
		t.Errorf("unknown user: page does not say the login was wrong")
	}
}

func TestLoginSetsStrictCookieAndRedirects(t *testing.T) {
	c := newConsole(t)
	res := c.postForm("/login", url.Values{"username": {"alice"}, "password": {"correct horse"}}, nil)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/" {
		t.Fatalf("login: %d to %q, want 303 to /", res.StatusCode, res.Header.Get("Location"))
	}
	ck := sessionCookie(res)
	if ck == nil {
		t.Fatal("login set no cairn_session cookie")
	}
	if !ck.HttpOnly || !ck.Secure || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" {
		t.Errorf("cookie %q: HttpOnly=%v Secure=%v SameSite=%v Path=%q; want HttpOnly, Secure, Strict, /",
			res.Header.Get("Set-Cookie"), ck.HttpOnly, ck.Secure, ck.SameSite, ck.Path)
	}
	if !c.eng.hasSession(ck.Value) {
		t.Errorf("cookie %q is not a session of the engine", ck.Value)
	}

	// The cookie opens the dashboard, and the login form sends a signed-in user on.
	s := &session{cookie: ck}
	if res := c.get("/", s); res.StatusCode != http.StatusOK {
		t.Errorf("GET / with the new session: %d, want 200", res.StatusCode)
	}
	if res := c.get("/login", s); res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/" {
		t.Errorf("GET /login signed in: %d to %q, want 303 to /", res.StatusCode, res.Header.Get("Location"))
	}
}

func TestLoginGoesBackToThePageAskedFor(t *testing.T) {
	c := newConsole(t)
	for next, want := range map[string]string{
		"/nodes/admin":         "/nodes/admin",
		"https://evil.example": "/",
		"//evil.example/x":     "/",
		`/\evil.example`:       "/",
		"/login":               "/",
	} {
		form := url.Values{"username": {"alice"}, "password": {"correct horse"}, "next": {next}}
		res := c.postForm("/login", form, nil)
		if got := res.Header.Get("Location"); got != want {
			t.Errorf("login with next=%q went to %q, want %q", next, got, want)
		}
	}
	// The form carries next through.
	page := body(t, c.get("/login?next=%2Fnodes%2Fadmin", nil))
	if !strings.Contains(page, `name="next" value="/nodes/admin"`) {
		t.Errorf("login form drops next:\n%s", page)
	}
}

func TestLoginIsRateLimitedPerAddress(t *testing.T) {
	c := newConsole(t)
	bad := url.Values{"username": {"alice"}, "password": {"guess"}}
	for i := range 10 {
		if res := c.postForm("/login", bad, nil); res.StatusCode != http.StatusOK {
			t.Fatalf("failed attempt %d: status %d, want 200 (not limited yet)", i+1, res.StatusCode)
		}
	}
	good := url.Values{"username": {"alice"}, "password": {"correct horse"}}
	res := c.postForm("/login", good, nil)
	page := body(t, res)
	if res.StatusCode != http.StatusTooManyRequests || sessionCookie(res) != nil {
		t.Fatalf("after 10 failures: status %d, cookie %v; want 429 and no session", res.StatusCode, sessionCookie(res))
	}
	if !strings.Contains(page, "Too many failed attempts") || res.Header.Get("Retry-After") == "" {
		t.Errorf("limited login does not say to wait (Retry-After %q):\n%s", res.Header.Get("Retry-After"), page)
	}
	// Another address is not held back.
	r := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(good.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.RemoteAddr = "192.0.2.77:4242"
	if res := c.do(r); res.StatusCode != http.StatusSeeOther {
		t.Errorf("login from another address: %d, want 303", res.StatusCode)
	}
}

func TestPostWithoutCSRFTokenIsForbidden(t *testing.T) {
	c := newConsole(t)
	s := c.login()
	for name, res := range map[string]*http.Response{
		"no token":           c.postForm("/logout", url.Values{}, s),
		"wrong form token":   c.postForm("/logout", url.Values{"csrf": {"csrf-999"}}, s),
		"wrong header token": c.postForm("/logout", url.Values{}, s, "X-CSRF-Token", "nope", "HX-Request", "true"),
	} {
		if res.StatusCode != http.StatusForbidden {
			t.Errorf("%s: status %d, want 403", name, res.StatusCode)
		}
	}
	if !c.eng.hasSession(s.cookie.Value) {
		t.Fatal("a POST without the CSRF token ended the session")
	}
	// The token htmx sends in the header is accepted.
	res := c.postForm("/logout", url.Values{}, s, "X-CSRF-Token", s.csrf, "HX-Request", "true")
	if res.StatusCode != http.StatusNoContent || res.Header.Get("HX-Redirect") != "/login" {
		t.Errorf("htmx logout with the header token: %d, HX-Redirect %q; want 204 to /login", res.StatusCode, res.Header.Get("HX-Redirect"))
	}
}

func TestCrossSitePostIsRefused(t *testing.T) {
	c := newConsole(t)
	res := c.postForm("/login", url.Values{"username": {"alice"}, "password": {"correct horse"}}, nil,
		"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example")
	if res.StatusCode != http.StatusForbidden || sessionCookie(res) != nil {
		t.Errorf("cross-site login: %d, cookie %v; want 403 and no session", res.StatusCode, sessionCookie(res))
	}
}

func TestLogoutDeletesSession(t *testing.T) {
	c := newConsole(t)
	s := c.login()
	res := c.postForm("/logout", url.Values{"csrf": {s.csrf}}, s)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/login" {
		t.Errorf("logout: %d to %q, want 303 to /login", res.StatusCode, res.Header.Get("Location"))
	}
	if c.eng.hasSession(s.cookie.Value) {
		t.Error("logout left the session in the engine")
	}
	if ck := sessionCookie(res); ck == nil || ck.MaxAge >= 0 {
		t.Errorf("logout did not clear the cookie: %v", ck)
	}
	if res := c.get("/", s); res.StatusCode != http.StatusSeeOther {
		t.Errorf("GET / with the old cookie: %d, want 303 to /login", res.StatusCode)
	}
}

func TestDashboardShowsNodesAndServices(t *testing.T) {
	c := newConsole(t)
	s := c.login()
	res := c.get("/", s)
	page := body(t, res)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /: %d", res.StatusCode)
	}
	for _, want := range []string{
		`data-node-id="admin" data-state="ready"`,
		`data-node-id="n-525400000002" data-state="maintenance"`,
		`data-node-id="n-525400000003" data-state="down"`,
		">rack1-node2<", ">rack1-node3<",
		"badge-green", "badge-amber", "badge-red",
		"4 vCPUs", "16 GiB", "s ago", "1 min ago", "10.0.100.2",
		`data-service="libvirtd" data-state="backoff"`, ">virtlogd<", ">312<", "exit status 1",
		"https://10.0.0.1", "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		"61 GiB", "96 GiB", "20<span class=\"unit\">vCPUs",
		`aria-current="page">Dashboard`, ">alice<", `action="/logout"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("dashboard lacks %q", want)
		}
	}

	// The capacity cards poll GET / and get only themselves back.
	frag := body(t, c.get("/", s, "HX-Request", "true", "HX-Target", "capacity"))
	if !strings.HasPrefix(strings.TrimSpace(frag), `<section id="capacity"`) || strings.Contains(frag, "<html") || strings.Contains(frag, "libvirtd") {
		t.Errorf("capacity fragment is not just the section:\n%s", frag)
	}
}

func TestNodesTableFragment(t *testing.T) {
	c := newConsole(t)
	s := c.login()

	res := c.get("/nodes/table", s, "HX-Request", "true", "HX-Target", "nodes")
	frag := body(t, res)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /nodes/table: %d", res.StatusCode)
	}
	if strings.Contains(frag, "<html") || strings.Contains(frag, "<body") || strings.Contains(frag, "topbar") {
		t.Errorf("htmx fragment holds the page shell:\n%s", frag)
	}
	if !strings.HasPrefix(strings.TrimSpace(frag), `<table id="nodes"`) {
		t.Errorf("fragment is not the table:\n%s", frag)
	}
	if n := strings.Count(frag, "data-node-id="); n != 3 {
		t.Errorf("fragment has %d node rows, want 3", n)
	}
	if !strings.Contains(frag, `hx-get="/nodes/table"`) || !strings.Contains(frag, `hx-trigger="every 2s"`) {
		t.Errorf("fragment stops polling:\n%s", frag)
	}
	if !strings.Contains(res.Header.Get("Vary"), "HX-Target") {
		t.Errorf("Vary %q does not name HX-Target", res.Header.Get("Vary"))
	}

	// htmx without a target it knows gets the content, still without the shell.
	if frag := body(t, c.get("/nodes/table", s, "HX-Request", "true")); strings.Contains(frag, "<html") || !strings.Contains(frag, `<table id="nodes"`) {
		t.Errorf("htmx request without HX-Target:\n%s", frag)
	}
	// A browser gets the whole page.
	page := body(t, c.get("/nodes", s))
	if !strings.Contains(page, "<html") || !strings.Contains(page, `<table id="nodes"`) || !strings.Contains(page, `aria-current="page">Nodes`) {
		t.Errorf("GET /nodes is not the whole page:\n%s", page)
	}
}

func TestNodesEmptyState(t *testing.T) {
	c := newConsole(t)
	c.eng.nodes = nil
	s := c.login()
	frag := body(t, c.get("/nodes/table", s, "HX-Request", "true", "HX-Target", "nodes"))
	if !strings.Contains(frag, "No compute nodes yet") || !strings.Contains(frag, "PXE-boot a machine on the LAN (10.0.0.0/16)") {
		t.Errorf("empty table does not say how nodes join:\n%s", frag)
	}
	if strings.Contains(frag, "data-node-id") {
		t.Errorf("empty table has node rows")
	}
}

func TestNodeDetails(t *testing.T) {
	c := newConsole(t)
	s := c.login()
	page := body(t, c.get("/nodes/admin", s))
	for _, want := range []string{"libvirt 9.0.0, QEMU 7.2.0", ">vda<", "64 GiB", "QEMU HARDDISK", ">eth0<", "10.0.0.1/16", "52:54:00:00:00:01", "Available"} {
		if !strings.Contains(page, want) {
			t.Errorf("node page lacks %q", want)
		}
	}
	page = body(t, c.get("/nodes/n-525400000002", s))
	if !strings.Contains(page, "Not reached yet") || !strings.Contains(page, "No disks") {
		t.Errorf("node without libvirt or disks does not say so:\n%s", page)
	}
	res := c.get("/nodes/n-gone", s)
	if res.StatusCode != http.StatusNotFound || !strings.Contains(body(t, res), "There is no node n-gone") {
		t.Errorf("unknown node: %d, want 404 that names it", res.StatusCode)
	}
}

func TestStaticAssets(t *testing.T) {
	c := newConsole(t)
	res := c.get("/static/app.css", nil)
	css := body(t, res)
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/css") || !strings.Contains(css, ".badge-green") {
		t.Fatalf("GET /static/app.css: %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	etag := res.Header.Get("ETag")
	if etag == "" {
		t.Fatal("app.css has no ETag")
	}
	if res := c.get("/static/app.css", nil, "If-None-Match", etag); res.StatusCode != http.StatusNotModified {
		t.Errorf("revalidation: %d, want 304", res.StatusCode)
	}
	// The page links the hashed URL, which may be cached for a year.
	page := body(t, c.get("/login", nil))
	m := regexp.MustCompile(`href="(/static/app\.css\?v=[0-9a-f]+)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("login page links no hashed app.css:\n%s", page)
	}
	if cc := c.get(m[1], nil).Header.Get("Cache-Control"); !strings.Contains(cc, "immutable") {
		t.Errorf("hashed URL Cache-Control %q, want immutable", cc)
	}

	for _, path := range []string{"/static/../ui.go", "/static/%2e%2e/ui.go", "/static/..%2fui.go", "/static/vendor.txt", "/static/"} {
		res := c.get(path, nil)
		b := body(t, res)
		if res.StatusCode == http.StatusOK || strings.Contains(b, "package ui") || strings.Contains(b, "htmx.org") {
			t.Errorf("GET %s: %d, served %.40q; want it refused", path, res.StatusCode, b)
		}
	}
	res = c.get("/static/vendor/missing.js", nil)
	if b := body(t, res); res.StatusCode != http.StatusNotFound || !strings.Contains(b, "make assets") {
		t.Errorf("missing vendor file: %d %q, want 404 saying to run make assets", res.StatusCode, b)
	}
}

// TestEveryResponseIsLockedDown walks every kind of response, checks the security
// headers, and scans every HTML page for inline scripts, styles and handlers the
// CSP would block (or that would need it loosened).
func TestEveryResponseIsLockedDown(t *testing.T) {
	c := newConsole(t)
	s := c.login()
	c.eng.services = append(c.eng.services, c.eng.services[0])
	c.eng.info.Settings = []string{"No data disk: state lives in RAM until one is added"}
	cases := map[string]*http.Response{
		"login form":        c.get("/login", nil),
		"failed login":      c.postForm("/login", url.Values{"username": {"alice"}, "password": {"x"}}, nil),
		"redirect to login": c.get("/", nil),
		"dashboard":         c.get("/", s),
		"capacity fragment": c.get("/", s, "HX-Request", "true", "HX-Target", "capacity"),
		"nodes":             c.get("/nodes", s),
		"nodes fragment":    c.get("/nodes/table", s, "HX-Request", "true", "HX-Target", "nodes"),
		"node":              c.get("/nodes/admin", s),
		"unknown node":      c.get("/nodes/nope", s),
		"unknown page":      c.get("/nope", s),
		"csrf refusal":      c.postForm("/logout", url.Values{}, s),
		"cross-site":        c.postForm("/login", url.Values{}, nil, "Sec-Fetch-Site", "cross-site"),
		"stylesheet":        c.get("/static/app.css", nil),
		"missing asset":     c.get("/static/nope.css", nil),
		"wrong method":      c.do(httptest.NewRequest(http.MethodDelete, "/login", nil)),
	}
	for name, res := range cases {
		h := res.Header
		if got := h.Get("Content-Security-Policy"); got != ContentSecurityPolicy {
			t.Errorf("%s: CSP %q", name, got)
		}
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("X-Frame-Options") != "DENY" || h.Get("Referrer-Policy") == "" {
			t.Errorf("%s: security headers missing: %v", name, h)
		}
		if strings.HasPrefix(h.Get("Content-Type"), "text/html") {
			checkNoInline(t, name, body(t, res))
		}
	}
}

// checkNoInline fails t when page has an inline script, a <style> element, a style
// attribute, an event-handler attribute or a javascript: URL.
func checkNoInline(t *testing.T, name, page string) {
	t.Helper()
	z := html.NewTokenizer(strings.NewReader(page))
	inScript := false
	for {
		switch z.Next() {
		case html.ErrorToken:
			if z.Err() != io.EOF {
				t.Errorf("%s: bad HTML: %v", name, z.Err())
			}
			return
		case html.TextToken:
			if inScript && strings.TrimSpace(string(z.Text())) != "" {
				t.Errorf("%s: inline script %q", name, z.Text())
			}
		case html.EndTagToken:
			inScript = false
		case html.StartTagToken, html.SelfClosingTagToken:
			tok := z.Token()
			switch tok.Data {
			case "style":
				t.Errorf("%s: <style> element", name)
			case "script":
				inScript = true
				src := ""
				for _, a := range tok.Attr {
					if a.Key == "src" {
						src = a.Val
					}
				}
				if !strings.HasPrefix(src, "/static/") {
					t.Errorf("%s: script without a /static/ src: %v", name, tok)
				}
			}
			for _, a := range tok.Attr {
				k, v := strings.ToLower(a.Key), strings.ToLower(strings.TrimSpace(a.Val))
				switch {
				case k == "style":
					t.Errorf("%s: style attribute on <%s>: %q", name, tok.Data, a.Val)
				case strings.HasPrefix(k, "on") || strings.HasPrefix(k, "hx-on"):
					t.Errorf("%s: inline handler %s on <%s>", name, k, tok.Data)
				case strings.HasPrefix(v, "javascript:"):
					t.Errorf("%s: javascript: URL in %s", name, k)
				}
			}
		}
	}
}
