package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// AdminCN is the common name of the admin's client certificate: the only client the
// libvirt proxy serves.
const AdminCN = "cairn-admin"

// proxyHandshakeTimeout bounds a client's TLS handshake, so that a half-open
// connection does not hold a goroutine.
const proxyHandshakeTimeout = 10 * time.Second

// proxyTLS serves the node's current certificate and requires a client certificate
// that chains to the engine's CA and names the admin. Before the first join there is
// no certificate, and every handshake fails.
func (a *Agent) proxyTLS() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			id := a.ident.Load()
			if id == nil {
				return nil, errors.New("libvirt proxy: node has not joined yet")
			}
			return &tls.Config{
				MinVersion:       tls.VersionTLS12,
				Certificates:     []tls.Certificate{id.cert},
				ClientAuth:       tls.RequireAndVerifyClientCert,
				ClientCAs:        id.ca,
				VerifyConnection: verifyAdminClient,
				// Console connections ask for this protocol (console_proxy.go);
				// libvirt clients ask for none and get libvirtd.
				NextProtos: []string{ConsoleALPN, NetworkALPN},
			}, nil
		},
	}
}

// verifyAdminClient runs after the chain check: the client must be the admin.
func verifyAdminClient(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("libvirt proxy: no client certificate")
	}
	if cn := cs.PeerCertificates[0].Subject.CommonName; cn != AdminCN {
		return fmt.Errorf("libvirt proxy: client certificate CN %q is not %q", cn, AdminCN)
	}
	return nil
}

// serveProxy accepts connections until ln is closed. A panic in the accept loop is
// recovered and the loop starts again.
func (a *Agent) serveProxy(ctx context.Context, ln net.Listener) {
	cfg := a.proxyTLS()
	var wg sync.WaitGroup
	defer wg.Wait()
	for ctx.Err() == nil {
		stop := false
		a.safely("libvirt proxy accept", func() {
			c, err := ln.Accept()
			if err != nil {
				if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
					stop = true
					return
				}
				a.log.Warn("libvirt proxy accept failed", "err", err)
				sleep(ctx, 100*time.Millisecond) // out of file descriptors: do not spin
				return
			}
			wg.Go(func() {
				a.safely("libvirt proxy connection", func() { a.proxyConn(ctx, c, cfg) })
			})
		})
		if stop {
			return
		}
	}
}

// proxyConn authenticates one client and pipes it to the local libvirt socket.
func (a *Agent) proxyConn(ctx context.Context, raw net.Conn, cfg *tls.Config) {
	defer raw.Close()
	log := a.log.With("remote", raw.RemoteAddr().String())
	tc := tls.Server(raw, cfg)
	hctx, cancel := context.WithTimeout(ctx, proxyHandshakeTimeout)
	err := tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		log.Warn("libvirt proxy refused a client", "err", err)
		return
	}
	// Console connections go to a guest's console, not to libvirtd (console_proxy.go).
	switch tc.ConnectionState().NegotiatedProtocol {
	case ConsoleALPN:
		a.serveConsole(ctx, tc, log)
		return
	case NetworkALPN:
		a.serveNetwork(ctx, tc, log)
		return
	}
	var d net.Dialer
	lc, err := d.DialContext(ctx, "unix", a.cfg.LibvirtSocket)
	if err != nil {
		log.Error("libvirt proxy cannot reach libvirtd", "socket", a.cfg.LibvirtSocket, "err", err)
		return
	}
	uc := lc.(*net.UnixConn)
	defer uc.Close()
	// libvirt's TLS transport: the server confirms the client's certificate with one
	// byte 1 before the RPC stream starts; libvirt clients wait for it.
	if _, err := tc.Write([]byte{1}); err != nil {
		return
	}
	stop := context.AfterFunc(ctx, func() {
		raw.Close()
		uc.Close()
	})
	defer stop()
	log.Debug("libvirt proxy client connected")
	pipe(a, tc, uc)
}

// pipe copies both ways. When one side stops sending, the other side's writing half is
// closed and the other direction runs on; an error in either closes both.
func pipe(a *Agent, tc *tls.Conn, uc *net.UnixConn) {
	done := make(chan error, 2)
	copyHalf := func(what string, dst io.Writer, src io.Reader, closeWrite func() error) {
		err := errors.New("panic")
		defer func() { done <- err }()
		a.safely(what, func() {
			_, err = io.Copy(dst, src)
			closeWrite()
		})
	}
	go copyHalf("libvirt proxy to libvirtd", uc, tc, uc.CloseWrite)
	go copyHalf("libvirt proxy to client", tc, uc, tc.CloseWrite)
	for range 2 {
		if err := <-done; err != nil {
			tc.NetConn().Close()
			uc.Close()
		}
	}
}
