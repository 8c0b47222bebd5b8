package agent

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-os/cairn/supervisor/engine"
)

// logBuffer collects an agent's log for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// startAgent runs an agent against admin until the test ends. The libvirt proxy listens
// on a free loopback port.
func startAgent(t *testing.T, adminURL, token, fp string) (*Agent, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	a := New(Config{
		Args:       Args{Role: "compute", AdminURL: adminURL, Token: token, CAFingerprint: fp},
		Logger:     slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		ListenAddr: "127.0.0.1:0",
		Version:    "test",
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return 10 s after its context ended")
		}
		if t.Failed() {
			t.Logf("agent log:\n%s", logs)
		}
	})
	return a, logs
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestJoinAndHeartbeat(t *testing.T) {
	admin := newFakeAdmin(t)
	startAgent(t, admin.srv.URL, admin.token, admin.ca.fingerprint())

	var beats map[string]int
	waitFor(t, 15*time.Second, "two heartbeats", func() bool {
		_, _, _, beats = admin.snapshot()
		for _, n := range beats {
			if n >= 2 {
				return true
			}
		}
		return false
	})
	_, joins, denied, _ := admin.snapshot()
	if joins != 1 || denied != 0 {
		t.Errorf("joins = %d, denied = %d; want one join with the right token", joins, denied)
	}
	admin.mu.Lock()
	req := admin.joins[0]
	admin.mu.Unlock()
	want := "node:" + nodeID(req.MAC)
	if len(beats) != 1 || beats[want] < 2 {
		t.Errorf("heartbeats by client certificate CN = %v, want ≥ 2 from %q", beats, want)
	}
	if req.MAC == "" || req.CPUs == 0 || req.MemoryBytes == 0 || req.Version != "test" {
		t.Errorf("join request lacks inventory: %+v", req)
	}
	// The admin is on loopback, so loopback carries the route to it.
	if req.Address != "127.0.0.1" {
		t.Errorf("join address = %q, want 127.0.0.1 (the route to the admin)", req.Address)
	}
}

func TestHeartbeatIntervalFromAdmin(t *testing.T) {
	admin := newFakeAdmin(t)
	admin.joinSeconds = 60 // the join says once a minute ...
	admin.beatSeconds = 1  // ... the first heartbeat's answer says every second
	startAgent(t, admin.srv.URL, admin.token, admin.ca.fingerprint())
	waitFor(t, 20*time.Second, "three heartbeats", func() bool {
		_, _, _, beats := admin.snapshot()
		for _, n := range beats {
			return n >= 3
		}
		return false
	})
}

func TestJoinRefusesWrongCA(t *testing.T) {
	admin := newFakeAdmin(t)
	other := newTestCA(t, "someone else's CA")
	_, logs := startAgent(t, admin.srv.URL, admin.token, other.fingerprint())

	waitFor(t, 10*time.Second, "a TLS connection from the agent", func() bool {
		conns, _, _, _ := admin.snapshot()
		return conns >= 1
	})
	time.Sleep(1500 * time.Millisecond) // the first retry comes after 1 s
	conns, joins, denied, beats := admin.snapshot()
	if joins != 0 || denied != 0 || len(beats) != 0 {
		t.Errorf("admin with another CA saw %d joins, %d token refusals, beats %v: the agent sent its token", joins, denied, beats)
	}
	if conns < 2 {
		t.Errorf("agent connected %d times in 2.5 s; want it to retry", conns)
	}
	if s := logs.String(); !strings.Contains(s, "fingerprint") || strings.Count(s, "cannot join the admin") != 1 {
		t.Errorf("want one log line about the fingerprint, log:\n%s", s)
	}
}

func TestJoinRefusesWrongHost(t *testing.T) {
	// The right CA, but the admin's certificate is for another address.
	admin := newFakeAdmin(t, net.IPv4(192, 0, 2, 99))
	_, logs := startAgent(t, admin.srv.URL, admin.token, admin.ca.fingerprint())
	waitFor(t, 10*time.Second, "a TLS connection from the agent", func() bool {
		conns, _, _, _ := admin.snapshot()
		return conns >= 1
	})
	time.Sleep(300 * time.Millisecond)
	if _, joins, denied, _ := admin.snapshot(); joins != 0 || denied != 0 {
		t.Errorf("agent sent its token to an admin whose certificate is not for 127.0.0.1 (%d joins)", joins+denied)
	}
	waitFor(t, 5*time.Second, "a log line naming the certificate problem", func() bool {
		return strings.Contains(logs.String(), "127.0.0.1")
	})
}

func TestRejoinWhenAdminLosesNode(t *testing.T) {
	admin := newFakeAdmin(t)
	// The admin forgets the node at its first two beats.
	admin.beatStatus = func(n int) int {
		if n <= 2 {
			return http.StatusNotFound
		}
		return http.StatusOK
	}
	_, logs := startAgent(t, admin.srv.URL, admin.token, admin.ca.fingerprint())
	waitFor(t, 15*time.Second, "a heartbeat accepted after the node joined again", func() bool {
		_, _, _, beats := admin.snapshot()
		return len(beats) > 0
	})
	if _, joins, _, _ := admin.snapshot(); joins != 3 {
		t.Errorf("joins = %d, want 3 (first join, then one after each 404)", joins)
	}
	if !strings.Contains(logs.String(), "admin lost this node") {
		t.Errorf("no log line about the lost node:\n%s", logs)
	}
}

func TestJoinWrongToken(t *testing.T) {
	admin := newFakeAdmin(t)
	_, logs := startAgent(t, admin.srv.URL, "not-the-token", admin.ca.fingerprint())
	waitFor(t, 10*time.Second, "a refused join", func() bool {
		_, _, denied, _ := admin.snapshot()
		return denied >= 1
	})
	if _, joins, _, beats := admin.snapshot(); joins != 0 || len(beats) != 0 {
		t.Errorf("joins = %d, beats = %v with a wrong token", joins, beats)
	}
	waitFor(t, 5*time.Second, "a log line", func() bool {
		return strings.Contains(logs.String(), "rejected the join token")
	})
}

func TestIdentityChecksJoinAnswer(t *testing.T) {
	ca := newTestCA(t, "ca")
	fp, _ := parseFingerprint(ca.fingerprint())
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := func(c *testCA, pub crypto.PublicKey, usage ...x509.ExtKeyUsage) string {
		der, err := c.sign(pub, "node:n-1", nil, nil, usage...)
		if err != nil {
			t.Fatal(err)
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	}
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}
	other := newTestCA(t, "other")
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tests := []struct {
		name string
		resp engine.JoinResponse
		ok   bool
	}{
		{"good", engine.JoinResponse{Certificate: certPEM(ca, key.Public(), both...), CA: string(ca.pem)}, true},
		{"certificate for another key", engine.JoinResponse{Certificate: certPEM(ca, otherKey.Public(), both...), CA: string(ca.pem)}, false},
		{"CA not the fingerprinted one", engine.JoinResponse{Certificate: certPEM(other, key.Public(), both...), CA: string(other.pem)}, false},
		{"signed by another CA", engine.JoinResponse{Certificate: certPEM(other, key.Public(), both...), CA: string(ca.pem)}, false},
		{"client use only", engine.JoinResponse{Certificate: certPEM(ca, key.Public(), x509.ExtKeyUsageClientAuth), CA: string(ca.pem)}, false},
		{"no certificate", engine.JoinResponse{CA: string(ca.pem)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := identity(tt.resp, key, fp)
			if (err == nil) != tt.ok {
				t.Errorf("identity: err = %v, want ok = %v", err, tt.ok)
			}
		})
	}
}
