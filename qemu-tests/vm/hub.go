package vm

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
)

// maxFrame bounds one frame on the wire. qemu sends at most 4 KiB of headroom plus a
// 64 KiB packet; anything longer means the stream is out of step.
const maxFrame = 4096 + 65536

// portQueue is how many frames wait for a slow guest before the hub drops new ones,
// as a switch does when an output queue is full.
const portQueue = 512

// Hub is a private Ethernet segment for qemu guests: a learning switch that relays
// frames between every qemu connected to its unix socket with
// `-netdev stream,server=off,addr.type=unix,addr.path=PATH`. qemu's stream protocol
// sends each frame as a 4-byte big-endian length followed by the frame. Frames to a
// known MAC go to that guest's port only; broadcasts, multicasts and unknown
// destinations go to every other port. It needs no root and touches no host network.
type Hub struct {
	path   string
	ln     *net.UnixListener
	logger *slog.Logger

	mu    sync.Mutex
	ports map[*hubPort]struct{}
	macs  map[[6]byte]*hubPort
	wg    sync.WaitGroup
	done  bool
}

type hubPort struct {
	conn net.Conn
	out  chan []byte
	name string
}

// NewHub listens on the unix socket path (replacing a stale socket file there) and
// relays frames until Close.
func NewHub(path string, logger *slog.Logger) (*Hub, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if len(path) >= maxSocketPath {
		return nil, fmt.Errorf("hub socket %s: path longer than %d bytes", path, maxSocketPath-1)
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		os.Remove(path)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("hub listen %s: %w", path, err)
	}
	h := &Hub{
		path:   path,
		ln:     ln,
		logger: logger.With("component", "hub", "socket", path),
		ports:  map[*hubPort]struct{}{},
		macs:   map[[6]byte]*hubPort{},
	}
	h.wg.Add(1)
	go h.accept()
	return h, nil
}

// Path returns the unix socket guests connect to.
func (h *Hub) Path() string { return h.path }

// Ports returns how many guests are connected.
func (h *Hub) Ports() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ports)
}

// Close stops relaying, disconnects every guest and removes the socket file.
func (h *Hub) Close() error {
	h.mu.Lock()
	if h.done {
		h.mu.Unlock()
		return nil
	}
	h.done = true
	err := h.ln.Close()
	for p := range h.ports {
		p.conn.Close()
	}
	h.mu.Unlock()
	h.wg.Wait()
	os.Remove(h.path)
	return err
}

func (h *Hub) accept() {
	defer h.wg.Done()
	for n := 1; ; n++ {
		c, err := h.ln.Accept()
		if err != nil {
			return
		}
		p := &hubPort{conn: c, out: make(chan []byte, portQueue), name: fmt.Sprintf("port%d", n)}
		h.mu.Lock()
		if h.done {
			h.mu.Unlock()
			c.Close()
			return
		}
		h.ports[p] = struct{}{}
		h.mu.Unlock()
		h.logger.Debug("guest connected", "port", p.name)
		h.wg.Add(2)
		go h.read(p)
		go h.write(p)
	}
}

// read takes frames from one guest, learns its source MAC and passes each frame on.
func (h *Hub) read(p *hubPort) {
	defer h.wg.Done()
	defer h.drop(p)
	r := bufio.NewReaderSize(p.conn, 64<<10)
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n > maxFrame {
			h.logger.Warn("frame too long, disconnecting guest", "port", p.name, "bytes", n)
			return
		}
		frame := make([]byte, n)
		if _, err := io.ReadFull(r, frame); err != nil {
			return
		}
		if n < 14 {
			continue // shorter than an Ethernet header: nothing to switch on
		}
		h.forward(p, frame)
	}
}

func (h *Hub) forward(from *hubPort, frame []byte) {
	var dst, src [6]byte
	copy(dst[:], frame[0:6])
	copy(src[:], frame[6:12])
	h.mu.Lock()
	defer h.mu.Unlock()
	if src[0]&1 == 0 {
		h.macs[src] = from
	}
	if dst[0]&1 == 0 {
		if to, ok := h.macs[dst]; ok {
			if to != from {
				enqueue(to, frame)
			}
			return
		}
	}
	for p := range h.ports {
		if p != from {
			enqueue(p, frame)
		}
	}
}

func enqueue(p *hubPort, frame []byte) {
	select {
	case p.out <- frame:
	default: // the guest does not keep up: drop, as a full switch queue does
	}
}

func (h *Hub) write(p *hubPort) {
	defer h.wg.Done()
	w := bufio.NewWriterSize(p.conn, 64<<10)
	var hdr [4]byte
	for frame := range p.out {
		binary.BigEndian.PutUint32(hdr[:], uint32(len(frame)))
		w.Write(hdr[:])
		w.Write(frame)
		// Flush when the queue is empty so that a burst goes out in one write and a
		// single frame is not held back.
		if len(p.out) == 0 {
			if err := w.Flush(); err != nil {
				p.conn.Close()
				for range p.out {
				}
				return
			}
		}
	}
	w.Flush()
}

// drop forgets a disconnected guest and its MACs.
func (h *Hub) drop(p *hubPort) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.ports[p]; !ok {
		return
	}
	delete(h.ports, p)
	for mac, q := range h.macs {
		if q == p {
			delete(h.macs, mac)
		}
	}
	p.conn.Close()
	close(p.out)
	h.logger.Debug("guest disconnected", "port", p.name)
}
