package servers

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/ui/layout"
)

// mux serves the area's routes as ui/routes.go declares them.
func mux(h *Handlers) *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("GET /servers", h.List)
	m.HandleFunc("GET /servers/table", h.List)
	m.HandleFunc("GET /servers/new", h.NewForm)
	m.HandleFunc("POST /servers", h.Create)
	m.HandleFunc("GET /servers/{id}", h.Show)
	m.HandleFunc("POST /servers/{id}/start", h.Start)
	m.HandleFunc("POST /servers/{id}/shutdown", h.Shutdown)
	m.HandleFunc("POST /servers/{id}/stop", h.Stop)
	m.HandleFunc("POST /servers/{id}/reboot", h.Reboot)
	m.HandleFunc("POST /servers/{id}/suspend", h.Suspend)
	m.HandleFunc("POST /servers/{id}/resume", h.Resume)
	m.HandleFunc("POST /servers/{id}/migrate", h.Migrate)
	m.HandleFunc("POST /servers/{id}/delete", h.Delete)
	m.HandleFunc("POST /servers/{id}/autostart", h.Autostart)
	m.HandleFunc("POST /servers/{id}/disks", h.AttachDisk)
	m.HandleFunc("POST /servers/{id}/disks/{index}/detach", h.DetachDisk)
	m.HandleFunc("POST /servers/{id}/cdrom", h.SetCDROM)
	m.HandleFunc("POST /servers/{id}/connections", h.AttachConnection)
	m.HandleFunc("POST /servers/{id}/connections/{conn}/detach", h.DetachConnection)
	return m
}

type env struct {
	t   *testing.T
	f   *fakeEngine
	mux *http.ServeMux
}

func newEnv(t *testing.T) *env {
	f := newFake()
	h := New(f, slog.New(slog.NewTextHandler(io.Discard, nil)))
	h.now = func() time.Time { return time.Date(2025, 11, 22, 12, 0, 0, 0, time.UTC) }
	return &env{t: t, f: f, mux: mux(h)}
}

// do sends a request as u (the mux in front has checked the session and CSRF token);
// form, when not nil, is the posted form; header is pairs.
func (e *env) do(u engine.User, method, target string, form url.Values, header ...string) *httptest.ResponseRecorder {
	e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	r := httptest.NewRequest(method, target, body)
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	r = r.WithContext(layout.WithViewer(r.Context(), layout.Viewer{User: u, Session: engine.Session{CSRF: "tok"}}))
	rec := httptest.NewRecorder()
	e.mux.ServeHTTP(rec, r)
	return rec
}

func (e *env) get(u engine.User, target string, header ...string) *httptest.ResponseRecorder {
	return e.do(u, http.MethodGet, target, nil, header...)
}

func (e *env) post(u engine.User, target string, form url.Values) *httptest.ResponseRecorder {
	if form == nil {
		form = url.Values{}
	}
	return e.do(u, http.MethodPost, target, form)
}

func mustContain(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s lacks %q", what, w)
		}
	}
	if t.Failed() {
		t.Logf("%s:\n%s", what, got)
	}
}

func mustNotContain(t *testing.T, what, got string, unwanted ...string) {
	t.Helper()
	for _, w := range unwanted {
		if strings.Contains(got, w) {
			t.Errorf("%s has %q", what, w)
		}
	}
	if t.Failed() {
		t.Logf("%s:\n%s", what, got)
	}
}

func TestListShowsTheViewersServersWithTheirState(t *testing.T) {
	e := newEnv(t)
	rec := e.get(alice, "/servers")
	page := rec.Body.String()
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /servers: %d", rec.Code)
	}
	d, w := strings.Index(page, `data-server-id="s-2" data-state="shutoff"`), strings.Index(page, `data-server-id="s-1" data-state="running"`)
	if d < 0 || w < 0 || d > w {
		t.Errorf("alice's rows missing or not by name (db-1 at %d, web-1 at %d)", d, w)
	}
	mustContain(t, "alice's list", page, `<table id="servers"`, `hx-trigger="every 2s"`, "badge-green", ">Running<", ">Off<",
		"rack1-node1", "2 GiB", `href="/servers/new"`, "2 servers · 1 running")
	mustNotContain(t, "alice's list", page, "build-1", "<th>Owner</th>")

	// An admin sees everyone's, with their owners.
	page = e.get(root, "/servers").Body.String()
	mustContain(t, "the admin's list", page, `data-server-id="s-3" data-state="paused"`, "<th>Owner</th>", "<td>bob</td>", "Suspended")

	// The poll gets only the table.
	frag := e.get(alice, "/servers/table", "HX-Request", "true", "HX-Target", "servers").Body.String()
	if !strings.HasPrefix(frag, `<table id="servers"`) || strings.Contains(frag, "<html") {
		t.Errorf("poll answer is not just the table:\n%s", frag)
	}
}

func TestCreateRefusedKeepsWhatWasTypedAndShowsTheEnginesMessage(t *testing.T) {
	e := newEnv(t)
	form := url.Values{
		"name": {"Web Server"}, "vcpus": {"3"}, "memory_mib": {"3072"}, "nics": {"2"},
		"disk0_source": {"clone:i-master"}, "disk0_bus": {"scsi"}, "disk0_node": {"n-2"},
		"disk1_source": {"image:i-free"}, "disk1_bus": {"virtio"},
		"cdrom": {"i-iso"}, "boot0": {"cdrom"}, "boot1": {"disk"}, "autostart": {"on"}, "lock_node": {"n-1"},
	}
	rec := e.post(alice, "/servers", form)
	page := rec.Body.String()
	if rec.Code != http.StatusBadRequest {
		t.Errorf("bad name: %d, want 400", rec.Code)
	}
	mustContain(t, "the form after a refusal", page,
		`id="form-error"`, "create server &#34;Web Server&#34;: invalid: a name is 2 to 64 characters",
		`value="Web Server"`, `value="3"`, `value="3072"`, `value="2"`,
		`value="clone:i-master" selected`, `value="scsi" selected`, `value="n-2" selected`,
		`value="image:i-free" selected`, `value="i-iso" selected`, `value="cdrom" selected`, `value="n-1" selected`,
		`name="autostart" checked`)
	mustNotContain(t, "the form after a refusal", page, `name="start" checked`)

	// What the engine was asked for: the master cloned to n-2, the image as it is.
	want := engine.ServerRequest{Name: "Web Server", VCPUs: 3, MemoryMiB: 3072, NICs: 2, CDROM: "i-iso",
		Boot: []string{"cdrom", "disk"}, Autostart: true, LockNode: "n-1",
		Disks: []engine.ServerDiskRequest{{Image: "i-master", Bus: "scsi", Clone: true, CloneNode: "n-2"}, {Image: "i-free", Bus: "virtio"}}}
	got := e.f.created
	if got.Name != want.Name || got.VCPUs != want.VCPUs || got.MemoryMiB != want.MemoryMiB || got.NICs != want.NICs ||
		got.CDROM != want.CDROM || !slices.Equal(got.Boot, want.Boot) || !got.Autostart || got.Start || got.LockNode != want.LockNode ||
		!slices.Equal(got.Disks, want.Disks) {
		t.Errorf("engine got %+v, want %+v", got, want)
	}

	// Fixed, it is made and the browser goes to its page.
	form.Set("name", "web-2")
	rec = e.post(alice, "/servers", form)
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/servers/s-new" {
		t.Errorf("create: %d to %q, want 303 to /servers/s-new", rec.Code, rec.Header().Get("Location"))
	}
}

// TestCreateFormAttachesConnections: the form offers the viewer's free connections and
// the ticked ones go to the engine with the new server.
func TestCreateFormAttachesConnections(t *testing.T) {
	e := newEnv(t)
	page := e.get(alice, "/servers/new").Body.String()
	mustContain(t, "the create form", page, `name="connection" value="c-free"`, "spare — internal 10.1.2.11")
	// Attached ones and other users' are not offered.
	mustNotContain(t, "the create form", page, `value="c-lan"`, `value="c-bob"`)
	form := url.Values{"name": {"web-3"}, "vcpus": {"1"}, "memory_mib": {"512"}, "nics": {"0"}, "connection": {"c-free"}}
	if rec := e.post(alice, "/servers", form); rec.Code != http.StatusSeeOther {
		t.Fatalf("create with a connection: %d %s", rec.Code, rec.Body.String())
	}
	if got := e.f.created.Connections; !slices.Equal(got, []string{"c-free"}) {
		t.Errorf("the engine was asked for connections %v, want [c-free]", got)
	}
	// A refusal keeps the tick.
	form.Set("name", "Bad Name")
	mustContain(t, "the form after a refusal", e.post(alice, "/servers", form).Body.String(), `value="c-free" checked`)
}

func TestCreateFormOffersImagesMastersAndISOs(t *testing.T) {
	e := newEnv(t)
	page := e.get(alice, "/servers/new").Body.String()
	mustContain(t, "the create form", page, `action="/servers"`, `name="csrf" value="tok"`,
		`value="image:i-free"`, `value="clone:i-master"`, `<option value="i-iso">`, `name="disk3_source"`, `name="start" checked`)
	// Images other servers use, and ISOs, are not offered as disks.
	mustNotContain(t, "the create form", page, `value="image:i-web"`, `value="image:i-iso"`, `name="disk4_source"`)
}

func TestShutdownShowsTheOperationsProgress(t *testing.T) {
	e := newEnv(t)
	rec := e.post(alice, "/servers/s-1/shutdown", nil)
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/servers/s-1?op=op-1" {
		t.Fatalf("shutdown: %d to %q, want 303 to the server's page with its operation", rec.Code, rec.Header().Get("Location"))
	}
	page := e.get(alice, "/servers/s-1?op=op-1").Body.String()
	mustContain(t, "the page during a shutdown", page,
		`<div id="op-op-1" class="op op-running" data-op-id="op-1" data-op-state="running" hx-get="/operations/op-1" hx-trigger="every 1s"`,
		"<progress", "Waiting for the guest to power off", `action="/operations/op-1/cancel"`,
		`hx-trigger="server-changed from:body, operation-ended from:body"`, `hx-get="/servers/s-1?op=op-1"`)
	mustNotContain(t, "the page during a shutdown", page, `id="force-off-offer"`)

	// Without ?op= the page still finds the shutdown while it runs.
	mustContain(t, "the page without ?op=", e.get(alice, "/servers/s-1").Body.String(), `data-op-state="running"`)
}

func TestFailedShutdownOffersForceOff(t *testing.T) {
	e := newEnv(t)
	e.post(alice, "/servers/s-1/shutdown", nil)
	e.f.endOp("op-1", engine.OpFailed, "the guest did not power off within 2m0s; force it off")
	page := e.get(alice, "/servers/s-1?op=op-1").Body.String()
	mustContain(t, "the page after the shutdown timed out", page,
		`data-op-state="failed"`, "the guest did not power off within 2m0s; force it off",
		`id="force-off-offer"`)
	offer := page[strings.Index(page, `id="force-off-offer"`):]
	mustContain(t, "the force-off offer", offer, `action="/servers/s-1/stop"`, ">Force off<")
	mustNotContain(t, "the ended operation", page, `hx-get="/operations/op-1"`)

	// Forced off, the server is off, and the page offers Start.
	if rec := e.post(alice, "/servers/s-1/stop", nil); rec.Code != http.StatusSeeOther {
		t.Fatalf("force off: %d", rec.Code)
	}
	page = e.get(alice, "/servers/s-1?op=op-1").Body.String()
	mustContain(t, "the page after force off", page, `data-state="shutoff"`, `action="/servers/s-1/start"`)
	mustNotContain(t, "the page after force off", page, `id="force-off-offer"`)
}

func TestActionsFollowTheState(t *testing.T) {
	e := newEnv(t)
	running := e.get(alice, "/servers/s-1").Body.String()
	mustContain(t, "a running server", running, `action="/servers/s-1/shutdown"`, `action="/servers/s-1/reboot"`,
		`action="/servers/s-1/suspend"`, `action="/servers/s-1/stop"`, `action="/servers/s-1/migrate"`,
		`<option value="n-2">rack1-node2 (ready)</option>`, `href="/servers/s-1/console"`, `href="/servers/s-1/vnc"`,
		`action="/servers/s-1/disks/1/detach"`, `action="/servers/s-1/disks"`, `<option value="i-free">`,
		`action="/servers/s-1/cdrom"`, "debian-12-netinst", "52:54:00:12:34:56", "user-mode networking")
	mustNotContain(t, "a running server", running, `action="/servers/s-1/start"`, `action="/servers/s-1/delete"`,
		`<option value="n-1">`, `<option value="n-3">`)

	off := e.get(alice, "/servers/s-2").Body.String()
	mustContain(t, "a shut-off server", off, `action="/servers/s-2/start"`, `action="/servers/s-2/delete"`, `name="delete_disks"`)
	mustNotContain(t, "a shut-off server", off, `action="/servers/s-2/shutdown"`, `action="/servers/s-2/stop"`, `href="/servers/s-2/console"`)

	paused := e.get(root, "/servers/s-3").Body.String()
	mustContain(t, "a suspended server", paused, `action="/servers/s-3/resume"`, `action="/servers/s-3/stop"`)
	mustNotContain(t, "a suspended server", paused, `action="/servers/s-3/suspend"`, `action="/servers/s-3/shutdown"`)

	for path, call := range map[string]string{
		"/servers/s-1/reboot": "reboot s-1", "/servers/s-1/suspend": "suspend s-1", "/servers/s-2/start": "start s-2",
		"/servers/s-1/disks/0/detach": "detach s-1", "/servers/s-1/cdrom": "cdrom s-1", "/servers/s-1/autostart": "update s-1",
	} {
		if rec := e.post(alice, path, nil); rec.Code != http.StatusSeeOther || !slices.Contains(e.f.called(), call) {
			t.Errorf("POST %s: %d, engine calls %v", path, rec.Code, e.f.called())
		}
	}
}

func TestRefusedActionShowsTheEnginesMessage(t *testing.T) {
	e := newEnv(t)
	rec := e.post(alice, "/servers/s-1/start", nil)
	if rec.Code != http.StatusBadRequest {
		t.Errorf("starting a running server: %d, want 400", rec.Code)
	}
	mustContain(t, "the refusal", rec.Body.String(), `id="problem"`, "start server &#34;s-1&#34;: invalid: it is running", `data-state="running"`)

	// An unexpected failure does not leak its cause, and says where to look.
	e.f.err = errors.New("virError(Code=1): internal error: qemu unexpectedly closed the monitor")
	rec = e.post(alice, "/servers/s-1/reboot", nil)
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("engine failure: %d", rec.Code)
	}
	mustContain(t, "the failure", rec.Body.String(), "could not reboot the server. The engine&#39;s log says what failed.")
	mustNotContain(t, "the failure", rec.Body.String(), "virError")
}

func TestAnotherUsersServerIsNotFound(t *testing.T) {
	e := newEnv(t)
	rec := e.get(alice, "/servers/s-3")
	if rec.Code != http.StatusNotFound {
		t.Errorf("alice reads bob's server: %d, want 404", rec.Code)
	}
	mustContain(t, "the 404 page", rec.Body.String(), "There is no server s-3")
	mustNotContain(t, "the 404 page", rec.Body.String(), "build-1")
	for _, action := range []string{"resume", "stop", "delete", "shutdown"} {
		if rec := e.post(alice, "/servers/s-3/"+action, nil); rec.Code != http.StatusNotFound {
			t.Errorf("alice posts %s to bob's server: %d, want 404", action, rec.Code)
		}
	}
	if calls := e.f.called(); len(calls) != 0 {
		t.Errorf("the engine carried out %v for the wrong user", calls)
	}
}

func TestReadonlyViewerSeesNoActions(t *testing.T) {
	e := newEnv(t)
	e.post(alice, "/servers/s-1/shutdown", nil)
	for _, path := range []string{"/servers", "/servers/s-1", "/servers/s-2"} {
		page := e.get(reader, path).Body.String()
		// The shell's logout form is the only form a read-only viewer gets.
		if n := strings.Count(page, "<form"); n != 1 {
			t.Errorf("%s shows a read-only viewer %d forms, want only the logout form", path, n)
		}
		mustNotContain(t, path, page, "<button type=\"submit\" class=\"btn", `href="/servers/new"`, ">Cancel<")
	}
	mustContain(t, "a server's page", e.get(reader, "/servers/s-1").Body.String(), `data-state="running"`, "read-only")
	if rec := e.get(reader, "/servers/new"); rec.Code != http.StatusForbidden {
		t.Errorf("read-only GET /servers/new: %d, want 403", rec.Code)
	}
	rec := e.post(reader, "/servers/s-1/reboot", nil)
	if rec.Code != http.StatusForbidden {
		t.Errorf("read-only reboot: %d, want 403", rec.Code)
	}
	mustContain(t, "the refusal", rec.Body.String(), "readonly users can only look; ask an admin")
}

func TestStatePollTellsThePageToReload(t *testing.T) {
	e := newEnv(t)
	poll := func() *httptest.ResponseRecorder {
		return e.get(alice, "/servers/s-1?seen="+url.QueryEscape("running@n-1"), "HX-Request", "true", "HX-Target", "server-status")
	}
	rec := poll()
	if got := rec.Header().Get("HX-Trigger"); got != "" {
		t.Errorf("unchanged state triggers %q", got)
	}
	if !strings.HasPrefix(rec.Body.String(), `<span id="server-status"`) {
		t.Errorf("poll answer is not just the badge:\n%s", rec.Body.String())
	}
	e.f.setServer("s-1", func(s *engine.Server) { s.State = engine.ServerShutoff })
	rec = poll()
	if got := rec.Header().Get("HX-Trigger"); got != "server-changed" {
		t.Errorf("changed state triggers %q, want server-changed", got)
	}
	mustContain(t, "the new badge", rec.Body.String(), `data-state="shutoff"`, `seen=shutoff%40n-1`, ">Off<")

	// The reload gets only the page body.
	body := e.get(alice, "/servers/s-1", "HX-Request", "true", "HX-Target", "server").Body.String()
	if !strings.HasPrefix(body, `<div id="server"`) || !strings.Contains(body, `action="/servers/s-1/start"`) {
		t.Errorf("reload answer:\n%s", body)
	}
}

func TestDeleteGoesToTheListAndSaysWhatWasKept(t *testing.T) {
	e := newEnv(t)
	rec := e.post(alice, "/servers/s-2/delete", url.Values{"delete_disks": {"on"}})
	if rec.Code != http.StatusOK {
		t.Fatalf("delete with kept disks: %d", rec.Code)
	}
	mustContain(t, "the list after a delete that kept a disk", rec.Body.String(),
		"Server db-1 was deleted. These disk images were kept:", "i-db: delete image &#34;i-db&#34;: in use")

	e.f.setServer("s-1", func(s *engine.Server) { s.State = engine.ServerShutoff })
	rec = e.post(alice, "/servers/s-1/delete", url.Values{})
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/servers?deleted=web-1" {
		t.Fatalf("delete: %d to %q", rec.Code, rec.Header().Get("Location"))
	}
	page := e.get(alice, "/servers?deleted=web-1").Body.String()
	mustContain(t, "the list after a delete", page, "Server web-1 was deleted.", "No servers yet")
	// A link cannot put words in the console's mouth.
	mustNotContain(t, "a crafted link", e.get(alice, "/servers?deleted="+url.QueryEscape("Call 555-0100 now")).Body.String(), "555")
}

func TestMigrateShowsItsOperation(t *testing.T) {
	e := newEnv(t)
	rec := e.post(alice, "/servers/s-1/migrate", url.Values{"node": {"n-2"}})
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/servers/s-1?op=op-1" {
		t.Fatalf("migrate: %d to %q", rec.Code, rec.Header().Get("Location"))
	}
	page := e.get(alice, "/servers/s-1?op=op-1").Body.String()
	mustContain(t, "the page during a migration", page, "Migration of s-1", "Migrating to n-2")
	// Another server's operation is not shown as this one's.
	mustNotContain(t, "another server's page", e.get(alice, "/servers/s-2?op=op-1").Body.String(), `id="op-op-1"`)
}

func TestPagesCarryTheCSRFTokenInEveryForm(t *testing.T) {
	e := newEnv(t)
	page := e.get(alice, "/servers/s-1").Body.String()
	forms := regexp.MustCompile(`(?s)<form[^>]*method="post".*?</form>`).FindAllString(page, -1)
	if len(forms) < 5 {
		t.Fatalf("only %d forms on a running server's page", len(forms))
	}
	for _, f := range forms {
		if !strings.Contains(f, `name="csrf" value="tok"`) {
			t.Errorf("form without the CSRF token: %s", f)
		}
	}
}
