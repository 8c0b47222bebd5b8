// Package static holds the web console's assets, embedded at build time: our own
// stylesheet, logo and console scripts (console/), and the third-party files `make
// assets` vendors into vendor/ (single files, and noVNC's tree of ES modules).
// Every file is served under /static/ with an ETag, and URLs made by Path carry the
// file's content hash so that browsers may cache them for a year.
package static

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

// The pattern vendor* matches the tracked vendor.txt on a fresh clone, and the
// git-ignored vendor/ directory too once `make assets` has filled it: a plain "vendor"
// pattern would not compile before then.
//
//go:embed app.css cairn.svg console servers.css storage.css upload.js vendor*
var embedded embed.FS

// Prefix is where the assets are served.
const Prefix = "/static/"

// asset is one servable file with its validators.
type asset struct {
	data  []byte
	etag  string
	hash  string
	ctype string
}

// assets are the servable files by name; vendor.txt is build input, not an asset.
var assets = load(embedded)

func load(fsys fs.FS) map[string]asset {
	m := map[string]asset{}
	err := fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || name == "vendor.txt" {
			return err
		}
		data, err := fs.ReadFile(fsys, name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		hash := hex.EncodeToString(sum[:])[:16]
		ctype := mime.TypeByExtension(path.Ext(name))
		if ctype == "" {
			ctype = http.DetectContentType(data)
		}
		m[name] = asset{data: data, etag: `"` + hash + `"`, hash: hash, ctype: ctype}
		return nil
	})
	if err != nil {
		// The embedded tree is fixed at build time; failing to walk it is a bug.
		panic("static: read embedded assets: " + err.Error())
	}
	return m
}

// Has reports whether the build holds the asset name ("vendor/htmx.min.js").
func Has(name string) bool {
	_, ok := assets[name]
	return ok
}

// Path returns the URL of the asset name with its content hash, or "" when the build
// does not hold it (vendor files before `make assets`).
func Path(name string) string {
	a, ok := assets[name]
	if !ok {
		return ""
	}
	return Prefix + name + "?v=" + a.hash
}

// Handler serves the assets. Mount it at "GET /static/"; it reads the file name from
// the path after the prefix and refuses names that are not plain relative paths.
// A request carrying the current content hash (?v=) may be cached for a year; any
// other is revalidated with the ETag.
func Handler() http.Handler {
	return http.HandlerFunc(serve)
}

func serve(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutPrefix(r.URL.Path, Prefix)
	if !ok || !fs.ValidPath(name) || name == "." || strings.Contains(name, `\`) {
		http.Error(w, "no such asset", http.StatusNotFound)
		return
	}
	a, ok := assets[name]
	if !ok {
		if strings.HasPrefix(name, "vendor/") {
			http.Error(w, name+" is not in this build: run `make assets` and rebuild the supervisor", http.StatusNotFound)
			return
		}
		http.Error(w, "no such asset: "+name, http.StatusNotFound)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.ctype)
	h.Set("ETag", a.etag)
	if r.URL.Query().Get("v") == a.hash {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(a.data))
}
