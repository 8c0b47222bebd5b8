package api

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"strings"
	"testing"
)

func TestPublicRoutes(t *testing.T) {
	v := newEnv(t)
	res := v.do("GET", Prefix+"/health", nil, nil)
	if res.status != 200 || !strings.Contains(string(res.body), `"ok"`) {
		t.Fatalf("health: %d %s", res.status, res.body)
	}

	res = v.do("GET", Prefix+"/engine/ca.pem", nil, nil)
	block, _ := pem.Decode(res.body)
	if res.status != 200 || block == nil {
		t.Fatalf("ca.pem: %d %q", res.status, res.body)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil || !cert.Equal(v.e.CA().Certificate()) {
		t.Fatalf("ca.pem is not the engine's CA: %v", err)
	}
}

func TestOpenAPIDocumentCoversTheRouteTable(t *testing.T) {
	v := newEnv(t)
	res := v.do("GET", Prefix+"/openapi.json", nil, nil)
	if res.status != 200 || res.header.Get("Content-Type") != "application/json" {
		t.Fatalf("openapi.json: %d %s", res.status, res.header.Get("Content-Type"))
	}
	var doc struct {
		OpenAPI    string                               `json:"openapi"`
		Paths      map[string]map[string]map[string]any `json:"paths"`
		Components struct {
			Schemas         map[string]any `json:"schemas"`
			SecuritySchemes map[string]any `json:"securitySchemes"`
		} `json:"components"`
	}
	if err := json.Unmarshal(res.body, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.0") {
		t.Errorf("openapi version %q", doc.OpenAPI)
	}
	for _, s := range []string{"basic", "bearer"} {
		if doc.Components.SecuritySchemes[s] == nil {
			t.Errorf("no security scheme %q", s)
		}
	}
	n := 0
	for _, rt := range routes {
		op := doc.Paths[Prefix+rt.path][strings.ToLower(rt.method)]
		if op == nil {
			t.Errorf("%s %s is not in the document", rt.method, rt.path)
			continue
		}
		n++
		if op["summary"] != rt.summary || op["operationId"] != rt.op {
			t.Errorf("%s %s: summary/operationId %v/%v", rt.method, rt.path, op["summary"], op["operationId"])
		}
		if strings.Contains(rt.path, "{id}") && op["parameters"] == nil {
			t.Errorf("%s %s: no path parameter", rt.method, rt.path)
		}
	}
	for _, name := range []string{"Node", "Info", "User", "Token", "JoinRequest", "JoinResponse", "Heartbeat"} {
		if doc.Components.Schemas[name] == nil {
			t.Errorf("no schema %s", name)
		}
	}
	node, _ := json.Marshal(doc.Components.Schemas["User"])
	if strings.Contains(string(node), "password") {
		t.Errorf("the User schema shows the password hash: %s", node)
	}
}

func TestErrorsAreJSONWithAMessage(t *testing.T) {
	v := newEnv(t)
	admin := basic("admin", testPassword)
	for _, tc := range []struct {
		method, path, body string
		status             int
		says               string
	}{
		{"GET", "/nodes/n-nothere", "", 404, "not found"},
		{"GET", "/nothing", "", 404, "openapi.json"},
		{"DELETE", "/engine", "", 405, "GET"},
		{"POST", "/users", `{"name":"bob","password":"long-enough"}`, 409, "already exists"},
		{"POST", "/users", `{"name":"x","password":"long-enough"}`, 400, "a name is"},
		{"POST", "/users", `{"name":`, 400, "JSON"},
		{"POST", "/users", `{"name":"zed","password":"long-enough"} {}`, 400, "one JSON value"},
		{"POST", "/users", `{"name":"zed","password":"` + strings.Repeat("x", 2<<20) + `"}`, 413, "larger"},
		{"DELETE", "/users/admin", "", 400, "yourself"},
	} {
		var res result
		if tc.body != "" {
			res = v.do(tc.method, Prefix+tc.path, strings.NewReader(tc.body), admin)
		} else {
			res = v.do(tc.method, Prefix+tc.path, nil, admin)
		}
		if res.status != tc.status {
			t.Errorf("%s %s: %d %s, want %d", tc.method, tc.path, res.status, res.body, tc.status)
			continue
		}
		if ct := res.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: Content-Type %q", tc.method, tc.path, ct)
		}
		if msg := res.errorMessage(t); !strings.Contains(msg, tc.says) {
			t.Errorf("%s %s: message %q does not say %q", tc.method, tc.path, msg, tc.says)
		}
	}
}

func TestUserCanSeeOnlyThemselves(t *testing.T) {
	v := newEnv(t)
	if res := v.do("GET", Prefix+"/users/"+v.reader.ID, nil, basic("reader", testPassword)); res.status != 200 {
		t.Errorf("readonly user sees themselves: %d %s", res.status, res.body)
	}
	if res := v.do("GET", Prefix+"/users/bob", nil, basic("reader", testPassword)); res.status != http.StatusForbidden {
		t.Errorf("readonly user sees bob: %d", res.status)
	}
}

func TestTokenLifecycle(t *testing.T) {
	v := newEnv(t)
	res := v.do("POST", Prefix+"/tokens", strings.NewReader(`{"name":"ci"}`), basic("bob", testPassword))
	if res.status != http.StatusCreated {
		t.Fatalf("create token: %d %s", res.status, res.body)
	}
	var tok struct{ ID, Secret string }
	json.Unmarshal(res.body, &tok)
	if res := v.do("GET", Prefix+"/engine", nil, bearerAuth(tok.Secret)); res.status != 200 {
		t.Fatalf("the new token does not work: %d", res.status)
	}
	res = v.do("GET", Prefix+"/tokens", nil, bearerAuth(tok.Secret))
	var list struct {
		Items []map[string]any `json:"items"`
	}
	json.Unmarshal(res.body, &list)
	if len(list.Items) != 2 || strings.Contains(string(res.body), "cairn_") {
		t.Fatalf("token list %s: want bob's two tokens without secrets", res.body)
	}
	if res := v.do("DELETE", Prefix+"/tokens/"+tok.ID, nil, bearerAuth(tok.Secret)); res.status != http.StatusNoContent {
		t.Fatalf("delete token: %d %s", res.status, res.body)
	}
	if res := v.do("GET", Prefix+"/engine", nil, bearerAuth(tok.Secret)); res.status != http.StatusUnauthorized {
		t.Fatalf("a deleted token still works: %d", res.status)
	}
}
