package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// Timing and sizes of a bridge.
const (
	// dialTimeout bounds reaching the console socket (through a node agent, a TCP
	// connect and a TLS handshake).
	dialTimeout = 30 * time.Second
	// historyTimeout bounds sending the serial log's tail.
	historyTimeout = 30 * time.Second
	// writeTimeout bounds one message to the browser: a browser that reads nothing
	// for that long is taken as gone.
	writeTimeout = time.Minute
	// chunkSize is the largest message sent to the browser.
	chunkSize = 32 << 10
)

// pingInterval and pingTimeout: a browser that has gone away without closing (a
// laptop lid shut) is noticed within a minute and its guest socket freed. Variables
// so that a test need not wait that long.
var (
	pingInterval = 25 * time.Second
	pingTimeout  = 20 * time.Second
)

// Subprotocol is the websocket subprotocol the bridge agrees to when the browser
// offers it; noVNC asks for it. Messages are binary either way.
const Subprotocol = "binary"

// Reasons in close frames; the console pages show them.
const (
	reasonGuestClosed = "the server closed its console (it stopped or restarted)"
	reasonUnreachable = "the server's %s console is not reachable: is the server running?"
	reasonShutdown    = "the console service is shutting down"
	reasonTooSlow     = "this page fell too far behind the console's output; reload it"
)

// readLimit is the largest message a browser may send: keystrokes and pastes for the
// serial console, RFB client messages (a clipboard at most) for VNC.
func readLimit(kind Kind) int64 {
	if kind == VNC {
		return 4 << 20
	}
	return 256 << 10
}

// Bridge upgrades r to a websocket and relays bytes between it and t until either
// side closes. For the serial console the browser first gets the history, then the
// live output; VNC is RFB both ways. Every message to the browser is binary; what the
// browser sends, binary or text, goes to the console as it is.
//
// Callers authenticate and authorize before calling Bridge and answer a refusal
// themselves (401/403) without upgrading. Bridge checks the Origin header against
// the Host: a page of another site cannot open a console with the viewer's cookie,
// it gets 403. When the console cannot be reached, the websocket closes with status
// 1013 (try again later) and a reason the page shows.
func Bridge(w http.ResponseWriter, r *http.Request, t Target, kind Kind, logger *slog.Logger) {
	if logger == nil {
		logger = slog.Default()
	}
	log := logger.With("component", "console", "kind", string(kind), "remote", r.RemoteAddr)
	if (kind != Serial && kind != VNC) || t.Dial == nil {
		log.Error("console bridge has no target", "path", r.URL.Path)
		http.Error(w, "This console cannot be opened; the engine's log says why.", http.StatusInternalServerError)
		return
	}
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{Subprotocol}})
	if err != nil {
		// Accept has answered: 403 for another origin, 426 for a request that is not
		// a websocket handshake.
		log.Warn("console websocket refused", "path", r.URL.Path, "origin", r.Header.Get("Origin"), "err", err)
		return
	}
	defer ws.CloseNow()
	ws.SetReadLimit(readLimit(kind))

	ctx := r.Context()
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	guest, err := t.Dial(dctx)
	cancel()
	if err != nil {
		log.Warn("console unreachable", "err", err)
		ws.Close(websocket.StatusTryAgainLater, fmt.Sprintf(reasonUnreachable, kind))
		return
	}
	defer guest.Close()
	log.Info("console opened")

	if t.History != nil {
		if err := sendHistory(ctx, ws, t.History, log); err != nil {
			log.Info("console closed", "by", "browser", "err", err)
			return
		}
	}
	relay(ctx, ws, guest, log)
}

// sendHistory sends the history as binary messages. A history that cannot be read is
// logged and skipped: the live console is still worth having. It returns an error
// only when the browser is gone.
func sendHistory(ctx context.Context, ws *websocket.Conn, history func(context.Context) (io.ReadCloser, error), log *slog.Logger) error {
	hctx, cancel := context.WithTimeout(ctx, historyTimeout)
	defer cancel()
	rc, err := history(hctx)
	if err != nil {
		log.Warn("console history unavailable", "err", err)
		return nil
	}
	// A history read over the network ends with hctx too.
	stop := context.AfterFunc(hctx, func() { rc.Close() })
	defer stop()
	defer rc.Close()
	buf := make([]byte, chunkSize)
	for {
		n, err := io.ReadFull(rc, buf)
		if n > 0 {
			if werr := write(ctx, ws, buf[:n]); werr != nil {
				return werr
			}
		}
		switch {
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return nil
		case err != nil:
			log.Warn("console history cut short", "err", err)
			return nil
		}
	}
}

// side is who ended a relay.
type side string

const (
	byGuest     side = "guest"
	byBrowser   side = "browser"
	byKeepalive side = "keepalive"
)

// ending is why one direction of a relay stopped.
type ending struct {
	by  side
	err error
}

// relay copies both ways and pings the browser until one of them stops, then closes
// both ends and waits for its goroutines.
func relay(ctx context.Context, ws *websocket.Conn, guest net.Conn, log *slog.Logger) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ends := make(chan ending, 3)
	var wg sync.WaitGroup
	run := func(fn func() ending) {
		wg.Go(func() {
			e := ending{by: byGuest, err: errors.New("panic")}
			defer func() {
				if p := recover(); p != nil {
					log.Error("console relay panic", "panic", fmt.Sprint(p))
				}
				ends <- e
			}()
			e = fn()
		})
	}
	run(func() ending { return toBrowser(ctx, ws, guest) })
	run(func() ending { return toGuest(ctx, ws, guest) })
	run(func() ending { return keepalive(ctx, ws) })

	e := <-ends
	switch {
	case e.by == byGuest && errors.Is(e.err, errTooSlow):
		ws.Close(websocket.StatusTryAgainLater, reasonTooSlow)
	case e.by == byGuest:
		// The close handshake runs while toGuest still reads: it gets the browser's
		// answer to our close frame and returns.
		ws.Close(websocket.StatusNormalClosure, reasonGuestClosed)
	case ctx.Err() != nil:
		ws.Close(websocket.StatusGoingAway, reasonShutdown)
	}
	guest.Close()
	ws.CloseNow()
	cancel()
	wg.Wait()
	log.Info("console closed", "by", string(e.by), "status", int(websocket.CloseStatus(e.err)), "err", e.err)
}

// toBrowser sends what the guest writes to the browser.
func toBrowser(ctx context.Context, ws *websocket.Conn, guest net.Conn) ending {
	buf := make([]byte, chunkSize)
	for {
		n, err := guest.Read(buf)
		if n > 0 {
			if werr := write(ctx, ws, buf[:n]); werr != nil {
				return ending{byBrowser, werr}
			}
		}
		if err != nil {
			return ending{byGuest, err}
		}
	}
}

// toGuest writes what the browser sends to the guest.
func toGuest(ctx context.Context, ws *websocket.Conn, guest net.Conn) ending {
	for {
		_, data, err := ws.Read(ctx)
		if err != nil {
			return ending{byBrowser, err}
		}
		if _, err := guest.Write(data); err != nil {
			return ending{byGuest, err}
		}
	}
}

// keepalive pings the browser until ctx ends or a pong does not come back in time.
func keepalive(ctx context.Context, ws *websocket.Conn) ending {
	t := time.NewTicker(pingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ending{byBrowser, ctx.Err()}
		case <-t.C:
			pctx, cancel := context.WithTimeout(ctx, pingTimeout)
			err := ws.Ping(pctx)
			cancel()
			if err != nil {
				return ending{byKeepalive, err}
			}
		}
	}
}

// write sends p as one binary message.
func write(ctx context.Context, ws *websocket.Conn, p []byte) error {
	wctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	return ws.Write(wctx, websocket.MessageBinary, p)
}
