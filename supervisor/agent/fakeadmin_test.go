package agent

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/cairn-os/cairn/supervisor/engine"
)

// fakeAdmin implements the admin's join and heartbeat endpoints as
// docs/architecture.md describes them, with its own CA.
type fakeAdmin struct {
	ca    *testCA
	token string
	srv   *httptest.Server
	// beatStatus, when set, gives the status of the n-th heartbeat (from 1).
	beatStatus func(n int) int
	// joinSeconds is the interval in join answers (1 when zero); beatSeconds, when
	// set, is the interval in heartbeat answers.
	joinSeconds, beatSeconds int

	mu     sync.Mutex
	conns  int                  // TLS connections accepted
	joins  []engine.JoinRequest // join requests that got past the token check
	denied int                  // join requests with a wrong token
	beats  map[string]int       // heartbeats by client certificate CN
	nbeats int
}

// newFakeAdmin starts an admin on 127.0.0.1 whose server certificate is valid for
// serverIPs and is sent with its CA.
func newFakeAdmin(t *testing.T, serverIPs ...net.IP) *fakeAdmin {
	t.Helper()
	f := &fakeAdmin{ca: newTestCA(t, "cairn test CA"), token: "join-" + t.Name(), beats: map[string]int{}}
	if serverIPs == nil {
		serverIPs = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/nodes/join", f.join)
	mux.HandleFunc("POST /api/v1/nodes/{id}/heartbeat", f.heartbeat)
	f.srv = httptest.NewUnstartedServer(mux)
	f.srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{f.ca.issue(t, "cairn-server", serverIPs, nil, x509.ExtKeyUsageServerAuth)},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    f.ca.pool,
	}
	f.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			f.mu.Lock()
			f.conns++
			f.mu.Unlock()
		}
	}
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are what some tests want
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAdmin) fail(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

func (f *fakeAdmin) join(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		f.mu.Lock()
		f.denied++
		f.mu.Unlock()
		f.fail(w, http.StatusUnauthorized, "join token not valid")
		return
	}
	var req engine.JoinRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		f.fail(w, http.StatusBadRequest, err.Error())
		return
	}
	blk, _ := pem.Decode([]byte(req.CSR))
	if blk == nil || blk.Type != "CERTIFICATE REQUEST" {
		f.fail(w, http.StatusBadRequest, "csr: not a PEM certificate request")
		return
	}
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err == nil {
		err = csr.CheckSignature()
	}
	if err != nil {
		f.fail(w, http.StatusBadRequest, "csr: "+err.Error())
		return
	}
	f.mu.Lock()
	f.joins = append(f.joins, req)
	f.mu.Unlock()
	id := nodeID(req.MAC)
	der, err := f.ca.sign(csr.PublicKey, "node:"+id, []net.IP{net.ParseIP(req.Address)}, nil,
		x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth)
	if err != nil {
		f.fail(w, http.StatusInternalServerError, err.Error())
		return
	}
	json.NewEncoder(w).Encode(engine.JoinResponse{
		Node:             engine.Node{ID: id, Name: req.Name, MAC: req.MAC, Address: req.Address, State: engine.NodeReady},
		Certificate:      string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		CA:               string(f.ca.pem),
		HeartbeatSeconds: max(f.joinSeconds, 1),
	})
}

func nodeID(mac string) string { return "n-" + strings.ReplaceAll(mac, ":", "") }

func (f *fakeAdmin) heartbeat(w http.ResponseWriter, r *http.Request) {
	want := "node:" + r.PathValue("id")
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 || r.TLS.PeerCertificates[0].Subject.CommonName != want {
		f.fail(w, http.StatusUnauthorized, "heartbeat needs the node's certificate")
		return
	}
	var hb engine.Heartbeat
	if err := json.NewDecoder(r.Body).Decode(&hb); err != nil || hb.MemoryBytes == 0 || hb.CPUs == 0 {
		f.fail(w, http.StatusBadRequest, "bad heartbeat")
		return
	}
	f.mu.Lock()
	f.nbeats++
	n := f.nbeats
	f.mu.Unlock()
	if f.beatStatus != nil {
		if code := f.beatStatus(n); code != http.StatusOK {
			f.fail(w, code, "node not found")
			return
		}
	}
	f.mu.Lock()
	f.beats[want]++
	f.mu.Unlock()
	if f.beatSeconds == 0 {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	json.NewEncoder(w).Encode(map[string]int{"heartbeat_seconds": f.beatSeconds})
}

func (f *fakeAdmin) snapshot() (conns, joins, denied int, beats map[string]int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b := map[string]int{}
	for k, v := range f.beats {
		b[k] = v
	}
	return f.conns, len(f.joins), f.denied, b
}
