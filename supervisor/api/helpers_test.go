package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cairn-os/cairn/supervisor/engine"
	"golang.org/x/crypto/bcrypt"
)

// env is an engine with one user of each role and the API in front of it.
type env struct {
	e       *engine.Engine
	h       http.Handler
	admin   engine.User
	bob     engine.User // role user
	reader  engine.User // role readonly
	tokens  map[string]string
	victims []string // users an admin route may delete
}

const testPassword = "correct-horse"

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	e, err := engine.Open(ctx, engine.Config{StateDir: t.TempDir(), LANURL: "https://10.0.0.1", BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	if _, err := e.EnsureAdmin(ctx, testPassword); err != nil {
		t.Fatal(err)
	}
	admin, err := e.Authenticate(ctx, "admin", testPassword)
	if err != nil {
		t.Fatal(err)
	}
	v := &env{e: e, h: New(e, nil), admin: admin, tokens: map[string]string{}}
	v.bob, err = e.CreateUser(ctx, admin, "bob", testPassword, engine.RoleUser)
	if err != nil {
		t.Fatal(err)
	}
	v.reader, err = e.CreateUser(ctx, admin, "reader", testPassword, engine.RoleReadonly)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []engine.User{admin, v.bob} {
		tok, err := e.CreateToken(ctx, u, "test")
		if err != nil {
			t.Fatal(err)
		}
		v.tokens[u.Name] = tok.Secret
	}
	if _, err := e.RegisterLocalNode(ctx, engine.JoinRequest{Name: "admin", MAC: "52:54:00:00:00:01", Address: "10.0.0.1", CPUs: 2}); err != nil {
		t.Fatal(err)
	}
	return v
}

// call makes one request and returns the status, the headers and the body.
type result struct {
	status int
	header http.Header
	body   []byte
}

func (r result) errorMessage(t *testing.T) string {
	t.Helper()
	var eb errorBody
	if err := json.Unmarshal(r.body, &eb); err != nil || eb.Error == "" {
		t.Fatalf("status %d: body %q is not {\"error\": \"...\"}", r.status, r.body)
	}
	return eb.Error
}

func (v *env) do(method, path string, body io.Reader, mod func(*http.Request)) result {
	req := httptest.NewRequest(method, path, body)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if mod != nil {
		mod(req)
	}
	rec := httptest.NewRecorder()
	v.h.ServeHTTP(rec, req)
	return result{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

func basic(name, password string) func(*http.Request) {
	return func(r *http.Request) { r.SetBasicAuth(name, password) }
}

func bearerAuth(tok string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
}

// requestFor makes a request to rt with its path parameters filled and an empty JSON
// object as body when it takes one.
func requestFor(rt route, id string) (string, string, io.Reader) {
	path := Prefix + strings.ReplaceAll(rt.path, "{id}", id)
	var body io.Reader
	if rt.request != nil {
		body = strings.NewReader("{}")
	}
	return rt.method, path, body
}
