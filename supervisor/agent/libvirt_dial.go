package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/digitalocean/go-libvirt"
)

// libvirtDialTimeout bounds one TCP connect plus TLS handshake to a node.
const libvirtDialTimeout = 20 * time.Second

// ClientTLS is the admin's TLS configuration for a node's libvirt proxy: it presents
// clientCert (CN cairn-admin) and accepts the node only with a certificate that chains
// to ca, is valid for server use and has CN "node:<nodeID>". The node's address is not
// checked against the certificate: the CN names the node.
func ClientTLS(clientCert tls.Certificate, ca *x509.CertPool, nodeID string) *tls.Config {
	want := "node:" + nodeID
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{clientCert},
		// Verification is done in VerifyConnection: chain to ca, then the CN.
		InsecureSkipVerify: true, //nolint:gosec
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return fmt.Errorf("verify node %s: no certificate presented", nodeID)
			}
			leaf := cs.PeerCertificates[0]
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			if _, err := leaf.Verify(x509.VerifyOptions{
				Roots:         ca,
				Intermediates: inter,
				KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			}); err != nil {
				return fmt.Errorf("verify node %s: %w", nodeID, err)
			}
			if leaf.Subject.CommonName != want {
				return fmt.Errorf("verify node %s: certificate is for %q, not %q", nodeID, leaf.Subject.CommonName, want)
			}
			return nil
		},
	}
}

// DialLibvirt connects go-libvirt to the libvirtd behind a node's proxy at addr
// (host:16514) over TLS with cfg (see ClientTLS) and opens qemu:///system. ctx bounds
// the dial and the opening; the connection outlives it. Close it with Disconnect.
func DialLibvirt(ctx context.Context, addr string, cfg *tls.Config) (*libvirt.Libvirt, error) {
	d := &tlsDialer{addr: addr, cfg: cfg, ctx: ctx}
	l := libvirt.NewWithDialer(d)
	// go-libvirt's calls take no context: closing the connection is what ends a
	// connect that hangs.
	stop := context.AfterFunc(ctx, d.closeConn)
	err := l.ConnectToURI(libvirt.QEMUSystem)
	if !stop() {
		if err == nil {
			l.Disconnect()
		}
		return nil, fmt.Errorf("dial libvirt %s: %w", addr, ctx.Err())
	}
	if err != nil {
		return nil, fmt.Errorf("dial libvirt %s: %w", addr, err)
	}
	d.mu.Lock()
	d.ctx = context.Background() // later redials by go-libvirt are not bound to ctx
	d.mu.Unlock()
	return l, nil
}

// tlsDialer is go-libvirt's socket.Dialer over TLS, with libvirt's TLS confirmation.
type tlsDialer struct {
	addr string
	cfg  *tls.Config

	mu   sync.Mutex
	ctx  context.Context
	conn net.Conn
}

// Dial connects, handshakes and waits for the server's confirmation byte: libvirt's
// TLS servers (libvirtd and the node agent) send 1 once they accepted the client's
// certificate; a refused client sees the TLS alert or end of stream here.
func (d *tlsDialer) Dial() (net.Conn, error) {
	d.mu.Lock()
	ctx := d.ctx
	d.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, libvirtDialTimeout)
	defer cancel()
	td := tls.Dialer{Config: d.cfg}
	c, err := td.DialContext(ctx, "tcp", d.addr)
	if err != nil {
		return nil, err
	}
	dl, _ := ctx.Deadline()
	c.SetReadDeadline(dl)
	var b [1]byte
	if _, err := c.Read(b[:]); err != nil {
		c.Close()
		return nil, fmt.Errorf("node refused this client (certificate check): %w", err)
	}
	if b[0] != 1 {
		c.Close()
		return nil, errors.New("node refused this client (certificate check)")
	}
	c.SetReadDeadline(time.Time{})
	d.mu.Lock()
	d.conn = c
	d.mu.Unlock()
	return c, nil
}

func (d *tlsDialer) closeConn() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn != nil {
		d.conn.Close()
	}
}

// Describe reads the versions of libvirt and of the hypervisor behind l, as in
// "libvirt 9.0.0, QEMU 7.2.0" (engine.Node.Libvirt).
func Describe(ctx context.Context, l *libvirt.Libvirt) (string, error) {
	type result struct {
		s   string
		err error
	}
	ch := make(chan result, 1)
	go func() {
		lib, err := l.ConnectGetLibVersion()
		if err != nil {
			ch <- result{err: fmt.Errorf("describe libvirt: get library version: %w", err)}
			return
		}
		hv, err := l.ConnectGetVersion()
		if err != nil {
			ch <- result{err: fmt.Errorf("describe libvirt: get hypervisor version: %w", err)}
			return
		}
		ch <- result{s: "libvirt " + versionString(lib) + ", QEMU " + versionString(hv)}
	}()
	select {
	case <-ctx.Done():
		return "", fmt.Errorf("describe libvirt: %w", ctx.Err())
	case r := <-ch:
		return r.s, r.err
	}
}

// versionString reads libvirt's version encoding, major*1e6 + minor*1e3 + micro.
func versionString(v uint64) string {
	return fmt.Sprintf("%d.%d.%d", v/1000000, v/1000%1000, v%1000)
}
