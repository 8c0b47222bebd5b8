package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"
)

// joinedAgent starts an agent against a fake admin and waits until it beats, so that
// its libvirt proxy has a certificate. It returns the proxy's address and the node ID.
func joinedAgent(t *testing.T) (*fakeAdmin, string, string) {
	t.Helper()
	admin := newFakeAdmin(t)
	a, _ := startAgent(t, admin.srv.URL, admin.token, admin.ca.fingerprint())
	waitFor(t, 15*time.Second, "the agent's first heartbeat", func() bool {
		_, _, _, beats := admin.snapshot()
		return len(beats) > 0
	})
	<-a.listening
	return admin, a.addr.String(), a.ident.Load().id
}

func TestLibvirtProxyDescribe(t *testing.T) {
	RequireLibvirt(t)
	admin, addr, id := joinedAgent(t)
	adminCert := admin.ca.issue(t, AdminCN, nil, nil, x509.ExtKeyUsageClientAuth)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := DialLibvirt(ctx, addr, ClientTLS(adminCert, admin.ca.pool, id))
	if err != nil {
		t.Fatalf("DialLibvirt: %v", err)
	}
	defer l.Disconnect()
	desc, err := Describe(ctx, l)
	if err != nil {
		t.Fatalf("Describe: %v", err)
	}
	if !strings.Contains(desc, "libvirt 9") || !strings.Contains(desc, "QEMU") {
		t.Errorf("Describe = %q, want libvirt 9.x and QEMU", desc)
	}
	t.Logf("node %s: %s", id, desc)

	// A second connection at the same time: each is its own pipe.
	l2, err := DialLibvirt(ctx, addr, ClientTLS(adminCert, admin.ca.pool, id))
	if err != nil {
		t.Fatalf("second DialLibvirt: %v", err)
	}
	if _, err := l2.ConnectGetHostname(); err != nil {
		t.Errorf("second connection: ConnectGetHostname: %v", err)
	}
	if err := l2.Disconnect(); err != nil {
		t.Errorf("Disconnect: %v", err)
	}
	if _, err := l.ConnectGetLibVersion(); err != nil {
		t.Errorf("first connection after the second closed: %v", err)
	}
}

// TestLibvirtProxyRefuses needs no libvirtd: the proxy refuses before it dials it.
func TestLibvirtProxyRefuses(t *testing.T) {
	admin, addr, id := joinedAgent(t)
	stranger := newTestCA(t, "stranger CA")
	tests := []struct {
		name   string
		cert   tls.Certificate
		nodeID string
		pool   *x509.CertPool
		want   string
	}{
		{"admin CN from another CA", stranger.issue(t, AdminCN, nil, nil, x509.ExtKeyUsageClientAuth), id, admin.ca.pool, "refused"},
		{"engine CA but not the admin", admin.ca.issue(t, "node:"+id, nil, nil, x509.ExtKeyUsageClientAuth), id, admin.ca.pool, "refused"},
		{"no client certificate", tls.Certificate{}, id, admin.ca.pool, "refused"},
		{"node is not the one expected", admin.ca.issue(t, AdminCN, nil, nil, x509.ExtKeyUsageClientAuth), "n-other", admin.ca.pool, "node:n-other"},
		{"node not from the engine CA", admin.ca.issue(t, AdminCN, nil, nil, x509.ExtKeyUsageClientAuth), id, stranger.pool, "unknown authority"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			cfg := ClientTLS(tt.cert, tt.pool, tt.nodeID)
			if tt.cert.Certificate == nil {
				cfg.Certificates = nil
			}
			l, err := DialLibvirt(ctx, addr, cfg)
			if err == nil {
				l.Disconnect()
				t.Fatal("DialLibvirt succeeded, want refused")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("DialLibvirt: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestLibvirtProxyBeforeJoin: a proxy without a certificate serves nobody.
func TestLibvirtProxyBeforeJoin(t *testing.T) {
	// An admin that never answers: the agent never joins.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ca := newTestCA(t, "ca")
	a, _ := startAgent(t, "https://"+ln.Addr().String(), "t", ca.fingerprint())
	<-a.listening
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := ClientTLS(ca.issue(t, AdminCN, nil, nil, x509.ExtKeyUsageClientAuth), ca.pool, "n-1")
	if l, err := DialLibvirt(ctx, a.addr.String(), cfg); err == nil {
		l.Disconnect()
		t.Fatal("DialLibvirt to an agent that has not joined succeeded")
	}
}
