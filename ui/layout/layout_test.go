package layout

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/a-h/templ"

	"github.com/cairn-os/cairn/supervisor/engine"
)

func text(s string) templ.Component {
	return templ.ComponentFunc(func(_ context.Context, w io.Writer) error {
		_, err := io.WriteString(w, s)
		return err
	})
}

func render(r *http.Request, p Page) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	Render(rec, r, slog.New(slog.NewTextHandler(io.Discard, nil)), http.StatusOK, p)
	return rec
}

func TestRenderGivesHTMXOnlyTheFragmentItNamed(t *testing.T) {
	p := Page{
		Title:     "Nodes",
		Section:   "nodes",
		Content:   text(`<div id="content"><table id="nodes"></table></div>`),
		Fragments: map[string]templ.Component{"nodes": text(`<table id="nodes"></table>`)},
	}
	viewer := Viewer{User: engine.User{Name: "alice"}, Session: engine.Session{CSRF: "tok123"}}
	newReq := func(h ...string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/nodes", nil)
		r = r.WithContext(WithViewer(r.Context(), viewer))
		for i := 0; i+1 < len(h); i += 2 {
			r.Header.Set(h[i], h[i+1])
		}
		return r
	}

	full := render(newReq(), p).Body.String()
	for _, want := range []string{"<!doctype html>", "<title>Nodes · Cairn</title>", `id="content"`, `aria-current="page">Nodes`,
		`hx-headers="{&#34;X-CSRF-Token&#34;:&#34;tok123&#34;}"`, `name="csrf" value="tok123"`, `name="htmx-config"`, `includeIndicatorStyles&#34;:false`} {
		if !strings.Contains(strings.ToLower(full), strings.ToLower(want)) {
			t.Errorf("full page lacks %q:\n%s", want, full)
		}
	}
	if got := render(newReq("HX-Request", "true", "HX-Target", "nodes"), p).Body.String(); got != `<table id="nodes"></table>` {
		t.Errorf("htmx with HX-Target nodes got %q", got)
	}
	if got := render(newReq("HX-Request", "true", "HX-Target", "other"), p).Body.String(); got != `<div id="content"><table id="nodes"></table></div>` {
		t.Errorf("htmx with an unknown target got %q", got)
	}
	if got := render(newReq("HX-Request", "true", "HX-Boosted", "true", "HX-Target", "nodes"), p).Body.String(); !strings.Contains(got, "<html") {
		t.Errorf("boosted navigation did not get the whole page")
	}
}

func TestRenderFailureIsACleanError(t *testing.T) {
	broken := templ.ComponentFunc(func(context.Context, io.Writer) error { return io.ErrUnexpectedEOF })
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	rec := render(r, Page{Content: broken})
	if rec.Code != http.StatusInternalServerError || strings.Contains(rec.Body.String(), "<html") {
		t.Errorf("broken component: %d %q", rec.Code, rec.Body.String())
	}
}

func TestShellWithoutViewerHasNoNav(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/login", nil)
	page := render(r, Page{Title: "Sign in", Content: text("form")}).Body.String()
	if strings.Contains(page, "topbar") || strings.Contains(page, "hx-headers") || !strings.Contains(page, `class="bare"`) {
		t.Errorf("signed-out shell shows the nav:\n%s", page)
	}
}

func TestHumanUnits(t *testing.T) {
	for n, want := range map[uint64]string{
		0: "0 B", 512: "512 B", 1536: "1.5 KiB", 512 << 20: "512 MiB",
		16 << 30: "16 GiB", 15<<30 + 600<<20: "15.6 GiB", 2 << 40: "2 TiB",
	} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
	if VCPUs(1) != "1 vCPU" || VCPUs(4) != "4 vCPUs" {
		t.Errorf("VCPUs: %q %q", VCPUs(1), VCPUs(4))
	}
	now := time.Date(2025, 11, 22, 12, 0, 0, 0, time.UTC)
	for d, want := range map[time.Duration]string{
		3 * time.Second: "3 s ago", 95 * time.Second: "1 min ago", 5 * time.Hour: "5 h ago", 72 * time.Hour: "3 d ago",
	} {
		if got := Ago(now, now.Add(-d)); got != want {
			t.Errorf("Ago(%v) = %q, want %q", d, got, want)
		}
	}
	if Ago(now, time.Time{}) != "never" {
		t.Errorf("Ago(zero) = %q", Ago(now, time.Time{}))
	}
	if Percent(3, 4) != 75 || Percent(5, 4) != 100 || Percent(1, 0) != 0 || Used(4, 5) != 0 {
		t.Error("Percent or Used is off")
	}
}
