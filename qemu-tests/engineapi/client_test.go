package engineapi

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(t *testing.T) testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cairn test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return testCA{cert, key}
}

// serverCert is signed by ca and names only the admin's LAN address, as the real one
// may: the harness reaches it as 127.0.0.1 all the same.
func (ca testCA) serverCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "cairn"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("10.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func fakeAdmin(t *testing.T, signer, served testCA) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/health", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"status":"ok"}`))
	})
	mux.HandleFunc("GET /api/v1/engine/ca.pem", func(w http.ResponseWriter, r *http.Request) {
		pem.Encode(w, &pem.Block{Type: "CERTIFICATE", Bytes: served.cert.Raw})
	})
	mux.HandleFunc("GET /api/v1/nodes", func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "admin" || p != "right" {
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":"wrong name or password"}`))
			return
		}
		w.Write([]byte(`{"items":[{"id":"n-525400000101","mac":"52:54:00:00:01:01","state":"ready","cpus":2,"memory_bytes":2147483648,"roles":["compute"],"extra":1}]}`))
	})
	s := httptest.NewUnstartedServer(mux)
	s.TLS = &tls.Config{Certificates: []tls.Certificate{signer.serverCert(t)}}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

func TestPinThenList(t *testing.T) {
	ca := newCA(t)
	s := fakeAdmin(t, ca, ca)
	ctx := context.Background()
	c := New(s.URL, "admin", "right")
	if err := c.Health(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Nodes(ctx); err == nil {
		t.Fatal("listed nodes before the CA was pinned")
	}
	if err := c.Pin(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(c.CAFingerprint(), "sha256:") || len(c.CAFingerprint()) != 7+64 {
		t.Errorf("fingerprint %q", c.CAFingerprint())
	}
	n, ok, err := c.Node(ctx, NodeID("52:54:00:00:01:01"))
	if err != nil || !ok {
		t.Fatalf("node: %v %v", ok, err)
	}
	if n.State != "ready" || n.CPUs != 2 || n.MemoryBytes != 2<<30 {
		t.Errorf("node %+v", n)
	}
	bad := New(s.URL, "admin", "wrong")
	bad.Pin(ctx)
	if _, err := bad.Nodes(ctx); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("wrong password: %v, want ErrUnauthorized", err)
	}
}

func TestPinRefusesACAThatDidNotSign(t *testing.T) {
	signer, other := newCA(t), newCA(t)
	s := fakeAdmin(t, signer, other)
	if err := New(s.URL, "admin", "right").Pin(context.Background()); err == nil {
		t.Fatal("pinned a CA that did not sign the server's certificate")
	}
}
