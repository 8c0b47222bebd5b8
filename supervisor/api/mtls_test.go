package api

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/supervisor/pki"
)

// tlsServer serves the API over HTTPS with the engine CA's listener configuration.
func tlsServer(t *testing.T, v *env) *httptest.Server {
	t.Helper()
	conf, err := v.e.CA().ServerTLSConfig(nil, []net.IP{net.ParseIP("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(v.h)
	srv.TLS = conf
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func client(ca *x509.CertPool, certs ...tls.Certificate) *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca, Certificates: certs}}}
}

func post(t *testing.T, c *http.Client, url, auth string, body any) (int, []byte) {
	t.Helper()
	data, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", url, bytes.NewReader(data))
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.Bytes()
}

// joinNode joins a node with a fresh key and returns its ID and TLS certificate.
func joinNode(t *testing.T, srv *httptest.Server, c *http.Client, token, mac string) (string, tls.Certificate) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	status, body := post(t, c, srv.URL+Prefix+"/nodes/join", "Bearer "+token, engine.JoinRequest{
		Name: "node", MAC: mac, CPUs: 2, MemoryBytes: 1 << 30,
		CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})),
	})
	if status != http.StatusOK {
		t.Fatalf("join %s: %d %s", mac, status, body)
	}
	var resp engine.JoinResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Node.Address != "127.0.0.1" {
		t.Errorf("the join did not take the node's address from the connection: %q", resp.Node.Address)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	cert, err := tls.X509KeyPair([]byte(resp.Certificate), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	return resp.Node.ID, cert
}

func TestJoinThenHeartbeatOverMutualTLS(t *testing.T) {
	v := newEnv(t)
	srv := tlsServer(t, v)
	anon := client(v.e.CA().Pool())

	if status, body := post(t, anon, srv.URL+Prefix+"/nodes/join", "Bearer wrong", engine.JoinRequest{MAC: "52:54:00:00:00:0a"}); status != http.StatusUnauthorized {
		t.Fatalf("join with a wrong token: %d %s", status, body)
	}
	idA, certA := joinNode(t, srv, anon, v.e.JoinToken(), "52:54:00:00:00:0a")
	idB, _ := joinNode(t, srv, anon, v.e.JoinToken(), "52:54:00:00:00:0b")
	nodeA := client(v.e.CA().Pool(), certA)
	beat := engine.Heartbeat{MemoryFreeBytes: 123, Load1: 0.25}

	status, body := post(t, nodeA, srv.URL+Prefix+"/nodes/"+idA+"/heartbeat", "", beat)
	if status != http.StatusOK || !strings.Contains(string(body), `"heartbeat_seconds": 5`) {
		t.Fatalf("heartbeat of A with A's certificate: %d %s", status, body)
	}
	n, err := v.e.Node(t.Context(), v.admin, idA)
	if err != nil || n.MemoryFreeBytes != 123 || n.State != engine.NodeReady {
		t.Fatalf("the beat was not recorded: %+v %v", n, err)
	}
	if status, body := post(t, nodeA, srv.URL+Prefix+"/nodes/"+idB+"/heartbeat", "", beat); status != http.StatusForbidden {
		t.Fatalf("heartbeat of B with A's certificate: %d %s, want 403", status, body)
	}
	if status, _ := post(t, anon, srv.URL+Prefix+"/nodes/"+idA+"/heartbeat", "", beat); status != http.StatusUnauthorized {
		t.Fatalf("heartbeat without a certificate: %d, want 401", status)
	}
	if status, _ := post(t, anon, srv.URL+Prefix+"/nodes/"+idA+"/heartbeat", "Basic "+basicValue("admin", testPassword), beat); status != http.StatusUnauthorized {
		t.Fatalf("heartbeat with an admin password instead of a certificate: %d, want 401", status)
	}
	// A node certificate is no user credential.
	req, _ := http.NewRequest("GET", srv.URL+Prefix+"/engine", nil)
	if resp, err := nodeA.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET /engine with a node certificate: %v %v, want 401", resp.StatusCode, err)
	}

	// The admin's own client certificate (CN cairn-admin) is from the CA, but it is
	// no node's.
	adminCert, _ := v.e.CA().ClientCertificate(pki.AdminClientCN)
	if status, _ := post(t, client(v.e.CA().Pool(), adminCert), srv.URL+Prefix+"/nodes/"+idA+"/heartbeat", "", beat); status != http.StatusUnauthorized {
		t.Fatalf("heartbeat with the admin's client certificate: %d, want 401", status)
	}

	// A certificate from another CA is not taken: Go's client does not even offer
	// it (the server names its CA), and forced on the server it fails the handshake.
	other, _ := pki.LoadOrCreate(t.TempDir())
	foreign, _ := other.ClientCertificate(pki.AdminClientCN)
	if status, _ := post(t, client(v.e.CA().Pool(), foreign), srv.URL+Prefix+"/nodes/"+idA+"/heartbeat", "", beat); status != http.StatusUnauthorized {
		t.Fatalf("a foreign certificate: %d, want 401", status)
	}
	forced := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs:              v.e.CA().Pool(),
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &foreign, nil },
	}}}
	if status, body := post(t, forced, srv.URL+Prefix+"/nodes/"+idA+"/heartbeat", "", beat); status != 0 {
		t.Fatalf("a foreign certificate forced on the server got an answer: %d %s", status, body)
	}
}

func basicValue(name, password string) string {
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth(name, password)
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}
