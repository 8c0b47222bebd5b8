package agent

// Console connections on the node's mutual-TLS listener.
//
// A client that negotiates the ALPN protocol ConsoleALPN gets a guest's console
// instead of libvirtd. It sends one request line, "<kind> <uuid>\n", kind being
// serial, vnc or log and uuid a server's uuid in canonical form; the agent answers
// one line, "ok\n" or "error <what to do>\n". After ok, serial and vnc are the guest's
// socket both ways until either side closes; log is the serial log's last 256 KiB,
// then the end of the stream. Clients without ALPN (go-libvirt, virsh) get libvirtd
// as before; only the admin's certificate gets in either way (verifyAdminClient).

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/cairn-os/cairn/supervisor/console"
)

// ConsoleALPN is the ALPN protocol of console connections to a node's proxy.
const ConsoleALPN = "cairn-console/1"

// Where a node's consoles are: the virt package makes <ConsoleDir>/<uuid>.serial,
// <ConsoleDir>/<uuid>.vnc and <ConsoleLogDir>/<uuid>.serial.log.
const (
	DefaultConsoleDir    = "/run/cairn/consoles"
	DefaultConsoleLogDir = "/var/log/cairn/consoles"
)

// The kinds of console request; "log" is the serial log's tail.
const (
	consoleSerial = string(console.Serial)
	consoleVNC    = string(console.VNC)
	consoleLog    = "log"
)

// consoleRequestTimeout bounds the request and answer lines: a client that connects
// and says nothing does not hold a goroutine.
const consoleRequestTimeout = 10 * time.Second

// maxConsoleLine is the longest request or answer line; "serial " and a uuid are 43.
const maxConsoleLine = 512

// consoleDirs are the directories the proxy serves consoles from. They are the
// defaults until agent.Config carries them; tests point them at temporary ones.
var consoleDirs = struct{ sockets, logs string }{DefaultConsoleDir, DefaultConsoleLogDir}

// serveConsole answers one console request on tc, an authenticated admin connection
// that negotiated ConsoleALPN. The uuid is checked before any path is made from it.
func (a *Agent) serveConsole(ctx context.Context, tc *tls.Conn, log *slog.Logger) {
	tc.SetDeadline(time.Now().Add(consoleRequestTimeout))
	line, err := readLine(tc)
	if err != nil {
		log.Warn("console request unreadable", "err", err)
		return
	}
	kind, uuid, _ := strings.Cut(line, " ")
	log = log.With("console", kind, "server", uuid)
	refuse := func(msg string, err error) {
		log.Warn("console request refused", "err", err)
		fmt.Fprintf(tc, "error %s\n", msg)
	}
	if err := console.CheckUUID(uuid); err != nil {
		refuse(err.Error(), err)
		return
	}
	switch kind {
	case consoleSerial, consoleVNC:
		path, err := console.SocketPath(consoleDirs.sockets, uuid, console.Kind(kind))
		if err != nil {
			refuse(err.Error(), err)
			return
		}
		var d net.Dialer
		dctx, cancel := context.WithTimeout(ctx, consoleRequestTimeout)
		c, err := d.DialContext(dctx, "unix", path)
		cancel()
		if err != nil {
			refuse(fmt.Sprintf("server %s has no %s console on this node: is it running here?", uuid, kind), err)
			return
		}
		uc := c.(*net.UnixConn)
		defer uc.Close()
		if _, err := io.WriteString(tc, "ok\n"); err != nil {
			return
		}
		tc.SetDeadline(time.Time{})
		stop := context.AfterFunc(ctx, func() {
			tc.NetConn().Close()
			uc.Close()
		})
		defer stop()
		log.Info("console opened")
		pipe(a, tc, uc)
		log.Info("console closed")
	case consoleLog:
		path, err := console.LogPath(consoleDirs.logs, uuid)
		if err != nil {
			refuse(err.Error(), err)
			return
		}
		rc, err := console.Tail(path, console.HistoryBytes)
		if err != nil {
			refuse(fmt.Sprintf("the serial log of server %s cannot be read; the node's log says why", uuid), err)
			return
		}
		defer rc.Close()
		if _, err := io.WriteString(tc, "ok\n"); err != nil {
			return
		}
		// The log is at most 256 KiB: a minute is plenty for any link that works.
		tc.SetDeadline(time.Now().Add(time.Minute))
		if _, err := io.Copy(tc, rc); err != nil {
			log.Warn("console log not sent", "err", err)
			return
		}
		tc.CloseWrite()
	default:
		refuse(fmt.Sprintf("unknown console %q: ask for serial, vnc or log", kind), errors.New("unknown console kind"))
	}
}

// readLine reads one line ending in \n, byte by byte so that nothing after it is
// taken from the stream; it refuses lines longer than maxConsoleLine.
func readLine(r io.Reader) (string, error) {
	var line bytes.Buffer
	var b [1]byte
	for line.Len() < maxConsoleLine {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return "", err
		}
		if b[0] == '\n' {
			return line.String(), nil
		}
		line.WriteByte(b[0])
	}
	return "", fmt.Errorf("line longer than %d bytes", maxConsoleLine)
}

// DialConsole opens a console of the server uuid through the node agent at addr
// (host:16514) with cfg (see ClientTLS). kind is "serial" or "vnc" for the live
// socket, "log" for the serial log's tail, which ends with the stream. ctx bounds
// the dial and the request; the connection outlives it.
func DialConsole(ctx context.Context, addr string, cfg *tls.Config, kind, uuid string) (net.Conn, error) {
	fail := func(err error) (net.Conn, error) {
		return nil, fmt.Errorf("open %s console of server %s on %s: %w", kind, uuid, addr, err)
	}
	switch kind {
	case consoleSerial, consoleVNC, consoleLog:
	default:
		return fail(fmt.Errorf("%w: unknown kind (want serial, vnc or log)", console.ErrInvalid))
	}
	if err := console.CheckUUID(uuid); err != nil {
		return fail(err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, libvirtDialTimeout)
		defer cancel()
	}
	cfg = cfg.Clone()
	cfg.NextProtos = []string{ConsoleALPN}
	d := tls.Dialer{Config: cfg}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fail(err)
	}
	tc := c.(*tls.Conn)
	if p := tc.ConnectionState().NegotiatedProtocol; p != ConsoleALPN {
		tc.Close()
		return fail(errors.New("the node's agent does not serve consoles: update the node"))
	}
	stop := context.AfterFunc(ctx, func() { tc.Close() })
	dl, _ := ctx.Deadline()
	tc.SetDeadline(dl)
	line, err := func() (string, error) {
		if _, err := fmt.Fprintf(tc, "%s %s\n", kind, uuid); err != nil {
			return "", err
		}
		return readLine(tc)
	}()
	if !stop() {
		tc.Close()
		return fail(ctx.Err())
	}
	if err != nil {
		tc.Close()
		// TLS 1.3 checks the client's certificate after the client's handshake has
		// returned: a refused admin certificate shows up here.
		return fail(fmt.Errorf("node refused the request (certificate check?): %w", err))
	}
	if msg, ok := strings.CutPrefix(line, "error "); ok {
		tc.Close()
		return fail(errors.New(msg))
	}
	if line != "ok" {
		tc.Close()
		return fail(fmt.Errorf("unexpected answer %q from the node's agent", line))
	}
	tc.SetDeadline(time.Time{})
	return tc, nil
}

// ConsoleTarget is how the admin reaches the kind console of the server uuid on the
// compute node whose agent listens at addr: DialConsole for the live socket and, for
// the serial console, the log's tail as history.
func ConsoleTarget(addr string, cfg *tls.Config, uuid string, kind console.Kind) console.Target {
	t := console.Target{
		Dial: func(ctx context.Context) (net.Conn, error) {
			return DialConsole(ctx, addr, cfg, string(kind), uuid)
		},
	}
	if kind == console.Serial {
		t.History = func(ctx context.Context) (io.ReadCloser, error) {
			return DialConsole(ctx, addr, cfg, consoleLog, uuid)
		}
	}
	return t
}
