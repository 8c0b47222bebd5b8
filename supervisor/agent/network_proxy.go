package agent

// Network connections on the node's mutual-TLS listener.
//
// The admin hands a node what it must have of Cairn's networks (engine.NodeNetwork)
// on a connection that negotiates the ALPN protocol NetworkALPN: it sends the
// NodeNetwork as one JSON document and the agent answers one line, "ok\n" once the
// node has applied it or "error <what went wrong>\n". Only the admin's certificate
// gets in (verifyAdminClient), as for consoles and libvirt.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/cairn-os/cairn/supervisor/engine"
)

// NetworkALPN is the ALPN protocol of network connections to a node's proxy.
const NetworkALPN = "cairn-network/1"

// Limits of a network connection: a NodeNetwork with thousands of mappings is a few
// MiB; applying it takes seconds.
const (
	maxNetworkDoc  = 32 << 20
	networkTimeout = 2 * time.Minute
	// maxErrorAnswer keeps the error line under readLine's limit.
	maxErrorAnswer = maxConsoleLine - 16
)

// serveNetwork applies one NodeNetwork sent on tc, an authenticated admin connection
// that negotiated NetworkALPN.
func (a *Agent) serveNetwork(ctx context.Context, tc *tls.Conn, log *slog.Logger) {
	tc.SetDeadline(time.Now().Add(networkTimeout))
	answer := func(err error) {
		if err == nil {
			io.WriteString(tc, "ok\n")
			return
		}
		log.Warn("network not applied", "err", err)
		msg := strings.ReplaceAll(err.Error(), "\n", " ")
		if len(msg) > maxErrorAnswer {
			msg = msg[:maxErrorAnswer]
		}
		fmt.Fprintf(tc, "error %s\n", msg)
	}
	var nn engine.NodeNetwork
	if err := json.NewDecoder(io.LimitReader(tc, maxNetworkDoc)).Decode(&nn); err != nil {
		answer(fmt.Errorf("read the network document: %w", err))
		return
	}
	if a.cfg.ApplyNetwork == nil {
		answer(errors.New("this node's agent applies no networks: update the node"))
		return
	}
	actx, cancel := context.WithTimeout(ctx, networkTimeout)
	defer cancel()
	start := time.Now()
	err := a.cfg.ApplyNetwork(actx, nn)
	if err == nil {
		log.Info("network applied", "version", nn.Version, "networks", len(nn.Networks), "took", time.Since(start).Round(time.Millisecond))
	}
	answer(err)
}

// PushNetwork hands nn to the node agent at addr ("10.0.0.12:16514") over mutual TLS
// with cfg (ClientTLS) and waits until the node has applied it.
func PushNetwork(ctx context.Context, addr string, cfg *tls.Config, nn engine.NodeNetwork) error {
	fail := func(err error) error { return fmt.Errorf("hand network %s to %s: %w", nn.Version, addr, err) }
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, networkTimeout)
		defer cancel()
	}
	doc, err := json.Marshal(nn)
	if err != nil {
		return fail(err)
	}
	cfg = cfg.Clone()
	cfg.NextProtos = []string{NetworkALPN}
	d := tls.Dialer{Config: cfg}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fail(err)
	}
	tc := c.(*tls.Conn)
	defer tc.Close()
	if p := tc.ConnectionState().NegotiatedProtocol; p != NetworkALPN {
		return fail(errors.New("the node's agent does not take networks: update the node"))
	}
	stop := context.AfterFunc(ctx, func() { tc.Close() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		tc.SetDeadline(dl)
	}
	if _, err := tc.Write(doc); err != nil {
		return fail(err)
	}
	line, err := readLine(tc)
	if err != nil {
		if ctx.Err() != nil {
			return fail(ctx.Err())
		}
		return fail(fmt.Errorf("node refused the request (certificate check?): %w", err))
	}
	if msg, ok := strings.CutPrefix(line, "error "); ok {
		return fail(errors.New(msg))
	}
	if line != "ok" {
		return fail(fmt.Errorf("unexpected answer %q", line))
	}
	return nil
}
