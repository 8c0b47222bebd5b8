package console

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// A guest's serial port is a socket that qemu serves to one client at a time: a
// second browser tab would connect and hear nothing until the first left. A Hub lets
// every viewer of one serial console share a single connection to it: what the guest
// prints goes to each of them, what any of them types goes to the guest.

// viewerQueue is how many chunks of output a viewer may fall behind before it is
// dropped. A serial line carries about 11 KiB/s, and a chunk is up to chunkSize, so a
// viewer this far behind has stopped reading (its websocket write also times out).
const viewerQueue = 64

// errTooSlow ends a viewer that fell viewerQueue chunks behind the others.
var errTooSlow = errors.New("this viewer fell too far behind the console's output")

// Hub shares live serial consoles among their viewers. The zero value is ready to use.
type Hub struct {
	mu    sync.Mutex
	lines map[string]*line
}

// Share returns t with its Dial going through the hub: every Dial under the same key
// (a console: the node and the server's uuid) while one is open shares one
// connection made with t.Dial. History stays each viewer's own. VNC needs no hub:
// qemu serves each VNC client its own session.
func (h *Hub) Share(key string, t Target) Target {
	dial := t.Dial
	t.Dial = func(ctx context.Context) (net.Conn, error) { return h.attach(ctx, key, dial) }
	return t
}

// line is one shared console connection and its viewers.
type line struct {
	ready   chan struct{} // closed once the dial ended, with conn or err set
	conn    net.Conn
	err     error
	wmu     sync.Mutex // one viewer's write at a time
	viewers map[*viewer]struct{}
	ended   bool // the guest side ended; no viewer may join
}

// attach makes v a viewer of the console key, dialing it when no one views it.
func (h *Hub) attach(ctx context.Context, key string, dial func(context.Context) (net.Conn, error)) (net.Conn, error) {
	h.mu.Lock()
	if h.lines == nil {
		h.lines = map[string]*line{}
	}
	l := h.lines[key]
	first := l == nil
	if first {
		l = &line{ready: make(chan struct{}), viewers: map[*viewer]struct{}{}}
		h.lines[key] = l
	}
	h.mu.Unlock()

	if first {
		l.conn, l.err = dial(ctx)
		if l.err != nil {
			h.mu.Lock()
			delete(h.lines, key)
			h.mu.Unlock()
		}
		close(l.ready)
		if l.err == nil {
			go h.pump(key, l)
		}
	} else {
		select {
		case <-l.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if l.err != nil {
		return nil, l.err
	}
	v := &viewer{h: h, key: key, l: l, out: make(chan []byte, viewerQueue), done: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	if l.ended {
		// The guest closed its console between the dial and now: so does this viewer.
		v.closeLocked(io.EOF)
		return v, nil
	}
	l.viewers[v] = struct{}{}
	return v, nil
}

// pump reads the guest's output and hands each chunk to every viewer until the guest
// side ends; then the viewers read EOF (or the read error).
func (h *Hub) pump(key string, l *line) {
	buf := make([]byte, chunkSize)
	for {
		n, err := l.conn.Read(buf)
		if n > 0 {
			var last net.Conn
			h.mu.Lock()
			for v := range l.viewers {
				select {
				case v.out <- append([]byte(nil), buf[:n]...):
				default:
					if c := v.closeLocked(errTooSlow); c != nil {
						last = c
					}
				}
			}
			h.mu.Unlock()
			if last != nil {
				// The only viewer was the slow one: the next Read ends pump.
				last.Close()
			}
		}
		if err != nil {
			h.mu.Lock()
			l.ended = true
			if h.lines[key] == l {
				delete(h.lines, key)
			}
			for v := range l.viewers {
				v.closeLocked(err)
			}
			h.mu.Unlock()
			l.conn.Close()
			return
		}
	}
}

// viewer is one viewer's end of a shared console: a net.Conn to the bridge.
type viewer struct {
	h    *Hub
	key  string
	l    *line
	out  chan []byte
	rest []byte // what the last Read did not take

	done chan struct{} // closed when the viewer is closed or dropped
	err  error         // why, set before done is closed
}

// closeLocked ends the viewer with err (Read returns it once the queue is drained)
// and detaches it. When it was the last viewer it returns the guest connection, for
// the caller to close once it has let go of h.mu (closing a TLS connection writes).
// h.mu is held.
func (v *viewer) closeLocked(err error) (last net.Conn) {
	select {
	case <-v.done:
		return nil
	default:
	}
	v.err = err
	close(v.done)
	delete(v.l.viewers, v)
	if len(v.l.viewers) > 0 || v.l.ended {
		return nil
	}
	v.l.ended = true
	if v.h.lines[v.key] == v.l {
		delete(v.h.lines, v.key)
	}
	// Closing it unblocks pump, which then finds no one to tell.
	return v.l.conn
}

func (v *viewer) Read(p []byte) (int, error) {
	if len(v.rest) == 0 {
		select {
		case v.rest = <-v.out:
		case <-v.done:
			// Output queued before the end is still delivered.
			select {
			case v.rest = <-v.out:
			default:
				return 0, v.err
			}
		}
	}
	n := copy(p, v.rest)
	v.rest = v.rest[n:]
	return n, nil
}

func (v *viewer) Write(p []byte) (int, error) {
	select {
	case <-v.done:
		return 0, net.ErrClosed
	default:
	}
	v.l.wmu.Lock()
	defer v.l.wmu.Unlock()
	return v.l.conn.Write(p)
}

func (v *viewer) Close() error {
	v.h.mu.Lock()
	last := v.closeLocked(net.ErrClosed)
	v.h.mu.Unlock()
	if last != nil {
		last.Close()
	}
	return nil
}

func (v *viewer) LocalAddr() net.Addr  { return v.l.conn.LocalAddr() }
func (v *viewer) RemoteAddr() net.Addr { return v.l.conn.RemoteAddr() }

// Deadlines are not supported: the bridge ends a viewer by closing it.
func (v *viewer) SetDeadline(time.Time) error      { return os.ErrNoDeadline }
func (v *viewer) SetReadDeadline(time.Time) error  { return os.ErrNoDeadline }
func (v *viewer) SetWriteDeadline(time.Time) error { return os.ErrNoDeadline }
