// Package api serves Cairn's HTTP API under /api/v1: JSON over HTTPS, every route
// declared once in routes.go with who may call it, and an OpenAPI document made from
// that same table.
//
// People and scripts authenticate with HTTP Basic (name and password) or
// "Authorization: Bearer <api token>". Compute nodes join with the join token as a
// bearer token and then beat with their certificate. The HTTPS server in front of
// this handler must ask for client certificates without requiring them:
// tls.VerifyClientCertIfGiven with ClientCAs set to the engine CA's pool
// (pki.CA.ServerTLSConfig makes that configuration). The node routes verify the
// certificate chain against the CA again themselves, so a listener configured
// otherwise lets nobody in.
//
// The API never reads cookies and refuses form bodies: a POST with a body must be
// application/json (415 otherwise), so a web page cannot make a browser call it.
package api

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"reflect"
	"strings"

	"github.com/cairn-os/cairn/supervisor/engine"
)

// Prefix is where the API lives.
const Prefix = "/api/v1"

// maxBody is the largest request body the API reads.
const maxBody = 1 << 20

// server serves the route table.
type server struct {
	e          *engine.Engine
	log        *slog.Logger
	mux        *http.ServeMux
	openAPIDoc []byte
}

// caller is who is calling: a user, a node (by its certificate) or a node that
// presents the join token.
type caller struct {
	user      engine.User
	node      string
	joinToken string
}

// New returns the handler of /api/v1 for e. Paths outside /api/v1 get a JSON 404.
func New(e *engine.Engine, logger *slog.Logger) http.Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &server{e: e, log: logger.With("component", "api"), mux: http.NewServeMux()}
	doc, err := json.MarshalIndent(openAPI(routes), "", "  ")
	if err != nil {
		// The document is made from static types; failing here is a programming error.
		panic("api: openapi document: " + err.Error())
	}
	s.openAPIDoc = doc
	for _, rt := range routes {
		s.mux.Handle(rt.method+" "+Prefix+rt.path, s.wrap(rt))
	}
	s.mux.HandleFunc("/", s.noRoute)
	return s.mux
}

// wrap makes the handler of one route: body limit, content type, authentication by
// access level, the call, and the answer.
func (s *server) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		if rt.body == "" {
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		}
		c, err := s.authenticate(r, rt)
		if err != nil {
			s.writeError(w, r, rt, err)
			return
		}
		if err := checkContentType(r, rt); err != nil {
			s.writeError(w, r, rt, err)
			return
		}
		out, err := rt.handle(s, r, c)
		if err != nil {
			s.writeError(w, r, rt, err)
			return
		}
		status := rt.status
		if status == 0 {
			status = http.StatusOK
		}
		switch v := out.(type) {
		case streamer:
			v(w, r)
		case nil:
			w.WriteHeader(http.StatusNoContent)
		case pemFile:
			h.Set("Content-Type", "application/x-pem-file")
			w.WriteHeader(status)
			w.Write(v)
		case rawJSON:
			h.Set("Content-Type", "application/json")
			w.WriteHeader(status)
			w.Write(v)
		default:
			if rt.list {
				out = listOf(out)
			}
			writeJSON(w, status, out)
		}
	})
}

// rawJSON is an answer already encoded.
type rawJSON []byte

// listOf wraps a slice as {"items": [...]}, never null.
func listOf(v any) any {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Slice && rv.IsNil() {
		v = reflect.MakeSlice(rv.Type(), 0, 0).Interface()
	}
	return struct {
		Items any `json:"items"`
	}{v}
}

// noRoute answers paths no route has: 405 with Allow when other methods exist for
// the path, 404 otherwise.
func (s *server) noRoute(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := s.mux.Handler(probe); pattern != "" && pattern != "/" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: r.Method + " is not allowed on " + r.URL.Path + "; use " + strings.Join(allow, " or ")})
		return
	}
	writeJSON(w, http.StatusNotFound, errorBody{Error: "no API route " + r.Method + " " + r.URL.Path + "; see " + Prefix + "/openapi.json for the routes"})
}
