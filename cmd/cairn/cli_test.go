package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-os/cairn/supervisor/api"
	"github.com/cairn-os/cairn/supervisor/engine"
	"golang.org/x/crypto/bcrypt"
)

const adminPassword = "admin-password"

// testEngine serves a real engine over HTTPS on loopback, with a certificate from
// the engine's CA.
func testEngine(t *testing.T) (*engine.Engine, string) {
	t.Helper()
	ctx := context.Background()
	e, err := engine.Open(ctx, engine.Config{StateDir: t.TempDir(), BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	if _, err := e.EnsureAdmin(ctx, adminPassword); err != nil {
		t.Fatal(err)
	}
	if _, err := e.RegisterLocalNode(ctx, engine.JoinRequest{Name: "admin", MAC: "52:54:00:00:00:01", Address: "10.0.0.1", CPUs: 4, MemoryBytes: 8 << 30}); err != nil {
		t.Fatal(err)
	}
	conf, err := e.CA().ServerTLSConfig(nil, []net.IP{net.ParseIP("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(api.New(e, nil))
	srv.TLS = conf
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return e, srv.URL
}

type cli struct {
	t      *testing.T
	config string
	env    map[string]string
}

func (c *cli) run(stdin string, args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	args = append(args, "--config", c.config)
	code := run(args, strings.NewReader(stdin), &out, &errOut, func(k string) string { return c.env[k] })
	return code, out.String(), errOut.String()
}

func TestLoginThenListNodes(t *testing.T) {
	e, url := testEngine(t)
	c := &cli{t: t, config: filepath.Join(t.TempDir(), "cairn", "config.json")}

	code, out, errOut := c.run(adminPassword+"\n", "login", url, "--password-stdin", "--ca-fingerprint", e.CA().Fingerprint())
	if code != 0 {
		t.Fatalf("login: exit %d, %s%s", code, out, errOut)
	}
	fi, err := os.Stat(c.config)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config: %v, mode %v; want 0600", err, fi.Mode())
	}
	var saved config
	data, _ := os.ReadFile(c.config)
	json.Unmarshal(data, &saved)
	if saved.URL != url || !strings.HasPrefix(saved.Token, "cairn_") || saved.CAPEM != string(e.CA().CertPEM()) {
		t.Fatalf("saved config %+v", saved)
	}
	if _, err := e.TokenUser(context.Background(), saved.Token); err != nil {
		t.Fatalf("the saved token does not work: %v", err)
	}

	code, out, errOut = c.run("", "nodes", "list", "-o", "json")
	if code != 0 {
		t.Fatalf("nodes list: exit %d, %s", code, errOut)
	}
	var nodes struct {
		Items []engine.Node `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &nodes); err != nil {
		t.Fatalf("nodes list -o json is not JSON: %v\n%s", err, out)
	}
	if len(nodes.Items) != 1 || nodes.Items[0].ID != "admin" || nodes.Items[0].CPUs != 4 {
		t.Fatalf("nodes = %+v", nodes.Items)
	}

	code, out, _ = c.run("", "nodes", "list")
	if code != 0 || !strings.Contains(out, "ID") || !strings.Contains(out, "8.0 GiB") {
		t.Fatalf("nodes list table: exit %d\n%s", code, out)
	}
	if code, out, _ = c.run("", "engine"); code != 0 || !strings.Contains(out, e.CA().Fingerprint()) {
		t.Fatalf("engine: exit %d\n%s", code, out)
	}
	if code, _, errOut = c.run("", "nodes", "show", "n-nothere"); code != exitNotFound || !strings.Contains(errOut, "not found") {
		t.Fatalf("show unknown node: exit %d, %s", code, errOut)
	}
	if code, out, errOut = c.run("", "nodes", "rename", "admin", "rack1-a"); code != 0 || !strings.Contains(out, "rack1-a") {
		t.Fatalf("nodes rename: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, _ = c.run("", "nodes", "list"); code != 0 || !strings.Contains(out, "rack1-a") {
		t.Fatalf("nodes list after the rename: exit %d\n%s", code, out)
	}
	if code, _, errOut = c.run("", "nodes", "rename", "admin", "no spaces"); code == 0 || !strings.Contains(errOut, "letters, digits") {
		t.Fatalf("nodes rename with a bad name: exit %d, %s", code, errOut)
	}
	if code, out, errOut = c.run("long-enough-pw\n", "users", "create", "carol", "--role", "readonly", "--password-stdin"); code != 0 {
		t.Fatalf("users create: exit %d, %s", code, errOut)
	}
	if code, out, _ = c.run("", "users", "list"); code != 0 || !strings.Contains(out, "carol") || !strings.Contains(out, "readonly") {
		t.Fatalf("users list: exit %d\n%s", code, out)
	}
	if code, _, errOut = c.run("", "services", "list", "-o", "json"); code != 0 {
		t.Fatalf("services list: exit %d, %s", code, errOut)
	}

	// Logging in again replaces the token and deletes the old one.
	if code, _, errOut = c.run(adminPassword+"\n", "login", url, "--password-stdin", "--ca-fingerprint", e.CA().Fingerprint()); code != 0 {
		t.Fatalf("second login: exit %d, %s", code, errOut)
	}
	if _, err := e.TokenUser(context.Background(), saved.Token); err == nil {
		t.Fatal("the first login's token still works after the second login")
	}

	// CAIRN_TOKEN overrides the saved token.
	c.env = map[string]string{"CAIRN_TOKEN": "cairn_nope"}
	if code, _, errOut = c.run("", "nodes", "list"); code != exitAuth || !strings.Contains(errOut, "cairn login") {
		t.Fatalf("bad CAIRN_TOKEN: exit %d, %s", code, errOut)
	}
}

func TestLoginRefusesAWrongFingerprint(t *testing.T) {
	e, url := testEngine(t)
	c := &cli{t: t, config: filepath.Join(t.TempDir(), "config.json")}
	wrong := "sha256:" + strings.Repeat("ab", 32)
	code, _, errOut := c.run(adminPassword+"\n", "login", url, "--password-stdin", "--ca-fingerprint", wrong)
	if code == 0 {
		t.Fatal("login with a wrong fingerprint succeeded")
	}
	if !strings.Contains(errOut, "fingerprint does not match") || !strings.Contains(errOut, e.CA().Fingerprint()) || !strings.Contains(errOut, "Nothing was sent or saved") {
		t.Fatalf("message does not say what happened:\n%s", errOut)
	}
	if _, err := os.Stat(c.config); !os.IsNotExist(err) {
		t.Fatalf("a config was saved after a refused login: %v", err)
	}
	if toks, _ := e.Tokens(context.Background(), mustUser(t, e)); len(toks) != 0 {
		t.Fatalf("a token was made after a refused fingerprint: %+v", toks)
	}

	// Without a fingerprint and without a terminal to ask on, login shows it.
	code, _, errOut = c.run(adminPassword+"\n", "login", url, "--password-stdin")
	if code == 0 || !strings.Contains(errOut, "--ca-fingerprint "+e.CA().Fingerprint()) {
		t.Fatalf("login without fingerprint: exit %d\n%s", code, errOut)
	}
	// A wrong password is refused with the engine's message.
	code, _, errOut = c.run("wrong-password\n", "login", url, "--password-stdin", "--ca-fingerprint", e.CA().Fingerprint())
	if code != exitAuth || !strings.Contains(errOut, "wrong user name or password") {
		t.Fatalf("wrong password: exit %d\n%s", code, errOut)
	}
	if code, _, _ := c.run("", "login", "http://"+strings.TrimPrefix(url, "https://"), "--password-stdin"); code != exitUsage {
		t.Fatalf("http URL: exit %d, want usage", code)
	}
}

func TestNotLoggedIn(t *testing.T) {
	c := &cli{t: t, config: filepath.Join(t.TempDir(), "config.json")}
	code, _, errOut := c.run("", "nodes", "list")
	if code != exitAuth || !strings.Contains(errOut, "not logged in: run `cairn login https://ADMIN`") {
		t.Fatalf("exit %d, %s", code, errOut)
	}
	if code, _, _ := c.run("", "nodes", "show"); code != exitUsage {
		t.Fatalf("missing argument: exit %d, want %d", code, exitUsage)
	}
	if code, _, _ := c.run("", "nodes", "list", "-o", "yaml"); code != exitUsage {
		t.Fatalf("bad output: exit %d, want %d", code, exitUsage)
	}
	for _, args := range [][]string{{"frobnicate"}, {"nodes", "frob"}} {
		if code, _, _ := c.run("", args...); code != exitUsage {
			t.Fatalf("unknown command %v: exit %d, want %d", args, code, exitUsage)
		}
	}
}

func mustUser(t *testing.T, e *engine.Engine) engine.User {
	u, err := e.Authenticate(context.Background(), "admin", adminPassword)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
