package layout

import (
	"bytes"
	"log/slog"
	"net/http"

	"github.com/a-h/templ"
)

// Page is what an area handler renders: its title, the nav section it belongs to, its
// content, and the fragments htmx may ask for by the id of their element.
type Page struct {
	// Title is the page's own name ("Nodes"); the shell adds the product's.
	Title string
	// Section is the nav item to mark as current: "dashboard", "nodes".
	Section string
	// Content is the page below the header.
	Content templ.Component
	// Fragments are parts of Content by element id ("nodes" for <table id="nodes">):
	// an htmx request whose HX-Target names one gets only that element.
	Fragments map[string]templ.Component
}

// IsHTMX reports whether r was sent by htmx (and not as a boosted navigation, which
// wants a whole page).
func IsHTMX(r *http.Request) bool {
	return r.Header.Get("HX-Request") == "true" && r.Header.Get("HX-Boosted") != "true"
}

// Render writes p with status: the whole page for a browser's request; for an htmx
// request only the fragment its HX-Target names, or the content without the shell
// when it names none of p's fragments. The page is rendered into a buffer first, so
// a failing component gives a clean 500 and not half a page.
func Render(w http.ResponseWriter, r *http.Request, logger *slog.Logger, status int, p Page) {
	var c templ.Component
	switch {
	case !IsHTMX(r):
		c = shell(p)
	case p.Fragments[r.Header.Get("HX-Target")] != nil:
		c = p.Fragments[r.Header.Get("HX-Target")]
	default:
		c = p.Content
	}
	var buf bytes.Buffer
	if err := c.Render(r.Context(), &buf); err != nil {
		logger.Error("render page", "path", r.URL.Path, "err", err)
		http.Error(w, "The page could not be rendered; the engine's log says why.", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Add("Vary", "HX-Request, HX-Target")
	w.WriteHeader(status)
	if _, err := w.Write(buf.Bytes()); err != nil {
		logger.Debug("write page", "path", r.URL.Path, "err", err)
	}
}

// Error renders a page that says what went wrong and what to do; for htmx requests,
// only the message.
func Error(w http.ResponseWriter, r *http.Request, logger *slog.Logger, status int, message string) {
	Render(w, r, logger, status, Page{
		Title:   http.StatusText(status),
		Content: errorPanel(status, message),
	})
}
