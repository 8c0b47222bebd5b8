package static

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
)

func serveGet(target string, header ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.URL.Path = target // as a mux would hand it over, without cleaning
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, r)
	return rec
}

func TestServesStylesheetWithValidators(t *testing.T) {
	p := Path("app.css")
	if !strings.HasPrefix(p, "/static/app.css?v=") {
		t.Fatalf("Path(app.css) = %q", p)
	}
	rec := serveGet("/static/app.css")
	if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/css") {
		t.Fatalf("app.css: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	if rec.Header().Get("Cache-Control") != "no-cache" {
		t.Errorf("unhashed URL Cache-Control %q, want no-cache", rec.Header().Get("Cache-Control"))
	}
	if rec := serveGet("/static/app.css", "If-None-Match", rec.Header().Get("ETag")); rec.Code != http.StatusNotModified {
		t.Errorf("If-None-Match: %d, want 304", rec.Code)
	}
}

func TestRefusesPathsOutsideTheAssets(t *testing.T) {
	for _, p := range []string{"/static/../static.go", "/static/./app.css", "/static//app.css", `/static/vendor\..\static.go`, "/static/vendor.txt", "/static/static.go", "/x/app.css"} {
		if rec := serveGet(p); rec.Code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, rec.Code)
		}
	}
}

func TestMissingVendorFileSaysToRunMakeAssets(t *testing.T) {
	rec := serveGet("/static/vendor/not-vendored.js")
	if rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "make assets") {
		t.Errorf("missing vendor file: %d %q", rec.Code, rec.Body.String())
	}
	if Path("vendor/not-vendored.js") != "" || Has("vendor/not-vendored.js") {
		t.Error("Path of a missing asset is not empty")
	}
}

func TestLoadHashesContentAndSkipsBuildInput(t *testing.T) {
	a := load(fstest.MapFS{
		"app.css":            {Data: []byte("a{}")},
		"vendor.txt":         {Data: []byte("htmx.org 2.0.11")},
		"vendor/htmx.min.js": {Data: []byte("var htmx")},
	})
	if _, ok := a["vendor.txt"]; ok {
		t.Error("vendor.txt is served")
	}
	js, ok := a["vendor/htmx.min.js"]
	if !ok || !strings.Contains(js.ctype, "javascript") {
		t.Errorf("vendor/htmx.min.js: %v %q", ok, js.ctype)
	}
	b := load(fstest.MapFS{"app.css": {Data: []byte("b{}")}})
	if a["app.css"].hash == b["app.css"].hash {
		t.Error("different content, same hash")
	}
}
