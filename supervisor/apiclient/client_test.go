package apiclient

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cairn-os/cairn/supervisor/api"
	"github.com/cairn-os/cairn/supervisor/engine"
	"golang.org/x/crypto/bcrypt"
)

func serve(t *testing.T) (*engine.Engine, string) {
	t.Helper()
	e, err := engine.Open(context.Background(), engine.Config{StateDir: t.TempDir(), BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	if _, err := e.EnsureAdmin(context.Background(), "admin-password"); err != nil {
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

func TestPinCA(t *testing.T) {
	e, url := serve(t)
	ctx := context.Background()
	caPEM, err := PinCA(ctx, url, e.CA().Fingerprint())
	if err != nil || string(caPEM) != string(e.CA().CertPEM()) {
		t.Fatalf("pin: %v", err)
	}
	if _, err := PinCA(ctx, url, "sha256:"+strings.Repeat("0", 64)); err == nil {
		t.Fatal("a wrong fingerprint was pinned")
	}
	// A server whose certificate is not from the CA it serves is refused.
	other := httptest.NewTLSServer(api.New(e, nil))
	defer other.Close()
	if _, _, err := FetchCA(ctx, other.URL); err == nil || !strings.Contains(err.Error(), "not from the CA") {
		t.Fatalf("fetch from a server with another certificate: %v", err)
	}
}

func TestClientErrorsAndNodeFlow(t *testing.T) {
	e, url := serve(t)
	ctx := context.Background()
	caPEM := e.CA().CertPEM()

	_, err := New(url, caPEM, Basic("admin", "nope")).Engine(ctx)
	if StatusOf(err) != http.StatusUnauthorized || !strings.Contains(err.Error(), "wrong user name or password") {
		t.Fatalf("wrong password: %v (status %d)", err, StatusOf(err))
	}
	admin := New(url, caPEM, Basic("admin", "admin-password"))
	tok, err := admin.CreateToken(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	c := New(url, caPEM, Bearer(tok.Secret))
	if _, err := c.Node(ctx, "n-nothere"); StatusOf(err) != http.StatusNotFound {
		t.Fatalf("unknown node: %v", err)
	}
	if _, err := New(url, nil, Bearer(tok.Secret)).Engine(ctx); err == nil {
		t.Fatal("a client trusting only the system roots accepted the engine's certificate")
	}

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	resp, err := New(url, caPEM, nil).Join(ctx, e.JoinToken(), engine.JoinRequest{
		MAC: "52:54:00:00:00:42", Address: "127.0.0.1", CPUs: 2,
		CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})),
	})
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	cert, err := tls.X509KeyPair([]byte(resp.Certificate), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	secs, err := New(url, []byte(resp.CA), nil, WithCertificate(cert)).Heartbeat(ctx, resp.Node.ID, engine.Heartbeat{Load1: 1.5})
	if err != nil || secs != 5 {
		t.Fatalf("heartbeat: %d %v", secs, err)
	}
	nodes, err := c.Nodes(ctx)
	if err != nil || len(nodes) != 1 || nodes[0].Load1 != 1.5 {
		t.Fatalf("nodes: %+v %v", nodes, err)
	}
}
