package api

import (
	"net/http"
	"strings"
	"testing"
)

func needsUser(rt route) bool {
	return rt.access == accessUser || rt.access == accessAdmin || rt.access == accessOwn
}

func mutating(rt route) bool { return rt.method != http.MethodGet && rt.method != http.MethodHead }

func TestEveryNonPublicRouteNeedsCredentials(t *testing.T) {
	v := newEnv(t)
	for _, rt := range routes {
		if rt.access == accessPublic {
			continue
		}
		t.Run(rt.method+" "+rt.path, func(t *testing.T) {
			method, path, body := requestFor(rt, "admin")
			res := v.do(method, path, body, nil)
			if res.status != http.StatusUnauthorized {
				t.Fatalf("without credentials: %d %s, want 401", res.status, res.body)
			}
			res.errorMessage(t)
			if needsUser(rt) && res.header.Get("WWW-Authenticate") != `Basic realm="cairn"` {
				t.Errorf("WWW-Authenticate = %q", res.header.Values("WWW-Authenticate"))
			}
		})
	}
}

func TestWrongPasswordAndBadToken(t *testing.T) {
	v := newEnv(t)
	for _, rt := range routes {
		if !needsUser(rt) {
			continue
		}
		for name, auth := range map[string]func(*http.Request){
			"wrong password":  basic("admin", "wrong-password"),
			"unknown user":    basic("mallory", testPassword),
			"bad token":       bearerAuth("cairn_bogus"),
			"token as basic":  basic("admin", v.tokens["admin"]),
			"unknown scheme":  func(r *http.Request) { r.Header.Set("Authorization", "Digest x") },
			"join token":      bearerAuth(v.e.JoinToken()),
			"truncated token": bearerAuth(v.tokens["admin"][:20]),
		} {
			method, path, body := requestFor(rt, "admin")
			res := v.do(method, path, body, auth)
			if res.status != http.StatusUnauthorized {
				t.Errorf("%s %s with %s: %d, want 401", rt.method, rt.path, name, res.status)
				continue
			}
			res.errorMessage(t)
		}
	}
}

func TestReadonlyCannotChangeAnything(t *testing.T) {
	v := newEnv(t)
	for _, rt := range routes {
		if !needsUser(rt) || rt.access == accessOwn || (rt.access != accessAdmin && !mutating(rt)) {
			continue
		}
		method, path, body := requestFor(rt, v.bob.ID)
		res := v.do(method, path, body, basic("reader", testPassword))
		if res.status != http.StatusForbidden {
			t.Errorf("readonly %s %s: %d %s, want 403", rt.method, rt.path, res.status, res.body)
			continue
		}
		res.errorMessage(t)
	}
}

func TestUserCannotUseAdminRoutes(t *testing.T) {
	v := newEnv(t)
	for _, rt := range routes {
		if rt.access != accessAdmin {
			continue
		}
		for name, auth := range map[string]func(*http.Request){
			"basic": basic("bob", testPassword),
			"token": bearerAuth(v.tokens["bob"]),
		} {
			method, path, body := requestFor(rt, "admin")
			res := v.do(method, path, body, auth)
			if res.status != http.StatusForbidden {
				t.Errorf("user (%s) %s %s: %d, want 403", name, rt.method, rt.path, res.status)
			}
		}
	}
}

func TestAdminMayCallEveryUserRoute(t *testing.T) {
	v := newEnv(t)
	for _, rt := range routes {
		if rt.access == accessJoinToken || rt.access == accessNodeCert {
			continue
		}
		// {id} is the local node for node routes; for the rest it names something
		// that may not exist, which is a 404 about the object, not about access.
		id := "admin"
		if strings.HasPrefix(rt.path, "/users/") {
			id = v.bob.ID
		}
		for name, auth := range map[string]func(*http.Request){
			"basic": basic("admin", testPassword),
			"token": bearerAuth(v.tokens["admin"]),
		} {
			method, path, body := requestFor(rt, id)
			res := v.do(method, path, body, auth)
			switch {
			case res.status == http.StatusUnauthorized, res.status == http.StatusForbidden,
				res.status == http.StatusUnsupportedMediaType, res.status == http.StatusMethodNotAllowed,
				res.status >= 500:
				t.Errorf("admin (%s) %s %s: %d %s", name, rt.method, rt.path, res.status, res.body)
			case res.status == http.StatusNotFound && strings.Contains(string(res.body), "no API route"):
				t.Errorf("admin (%s) %s %s: the route is not served", name, rt.method, rt.path)
			case res.status >= 400:
				// A complaint about the body or the object: say so, and go on.
				t.Logf("admin (%s) %s %s: %d %s", name, rt.method, rt.path, res.status, res.errorMessage(t))
			}
		}
	}
}

func TestFormBodiesAreRefused(t *testing.T) {
	v := newEnv(t)
	for _, ct := range []string{"application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain", ""} {
		res := v.do("POST", Prefix+"/tokens", strings.NewReader("name=x"), func(r *http.Request) {
			r.SetBasicAuth("admin", testPassword)
			r.Header.Set("Content-Type", ct)
		})
		if res.status != http.StatusUnsupportedMediaType {
			t.Errorf("Content-Type %q: %d, want 415", ct, res.status)
			continue
		}
		if msg := res.errorMessage(t); !strings.Contains(msg, "application/json") {
			t.Errorf("415 message %q does not say what to send", msg)
		}
	}
	// A POST without a body needs no Content-Type.
	res := v.do("POST", Prefix+"/nodes/admin/maintenance", nil, basic("admin", testPassword))
	if res.status != http.StatusOK {
		t.Errorf("POST without body: %d %s", res.status, res.body)
	}
}

func TestCookiesDoNotAuthenticate(t *testing.T) {
	v := newEnv(t)
	s, err := v.e.CreateSession(t.Context(), v.admin)
	if err != nil {
		t.Fatal(err)
	}
	res := v.do("GET", Prefix+"/engine", nil, func(r *http.Request) {
		for _, name := range []string{"session", "cairn_session", "cairn"} {
			r.AddCookie(&http.Cookie{Name: name, Value: s.ID})
		}
	})
	if res.status != http.StatusUnauthorized {
		t.Fatalf("a session cookie authenticated an API call: %d", res.status)
	}
}
