package service

import (
	"bytes"
	"errors"
	"io"
	"sync"
)

// logSize is how much output is kept per service.
const logSize = 256 << 10

// maxLine is the longest partial line held back from subscribers; longer output
// without a newline is passed on in pieces of this size.
const maxLine = 4096

// logBuffer keeps the last logSize bytes of a service's output in a ring and passes
// complete lines to subscribers and to onLine.
type logBuffer struct {
	mu      sync.Mutex
	buf     []byte // the ring, len == size once allocated
	size    int
	w       int  // next write position in buf
	full    bool // buf has wrapped at least once
	partial []byte
	subs    map[chan []byte]struct{}
	onLine  func(line []byte) // called without mu held; nil for none
}

func newLogBuffer(size int) *logBuffer {
	return &logBuffer{size: size, subs: map[chan []byte]struct{}{}}
}

// Write appends p to the ring and hands complete lines on. It never fails and never
// blocks on a slow subscriber.
func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	b.appendRing(p)
	lines := b.splitLines(p)
	for _, l := range lines {
		for ch := range b.subs {
			select {
			case ch <- l:
			default: // the subscriber is behind: it loses this line
			}
		}
	}
	onLine := b.onLine
	b.mu.Unlock()
	if onLine != nil {
		for _, l := range lines {
			onLine(l)
		}
	}
	return len(p), nil
}

// ReadFrom copies r into the buffer until EOF or an error (a closed pipe).
func (b *logBuffer) ReadFrom(r io.Reader) (int64, error) {
	var n int64
	chunk := make([]byte, 32<<10)
	for {
		k, err := r.Read(chunk)
		if k > 0 {
			_, _ = b.Write(chunk[:k])
			n += int64(k)
		}
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// Note writes a line of the supervisor's own (a start or an exit) into the output,
// on a line of its own even when the program's last line had no newline.
func (b *logBuffer) Note(s string) {
	b.mu.Lock()
	needNL := len(b.partial) > 0
	b.mu.Unlock()
	if needNL {
		s = "\n" + s
	}
	_, _ = b.Write([]byte(s + "\n"))
}

func (b *logBuffer) appendRing(p []byte) {
	if b.buf == nil {
		b.buf = make([]byte, b.size)
	}
	if len(p) >= b.size {
		copy(b.buf, p[len(p)-b.size:])
		b.w, b.full = 0, true
		return
	}
	n := copy(b.buf[b.w:], p)
	if n < len(p) {
		copy(b.buf, p[n:])
		b.full = true
	}
	b.w = (b.w + len(p)) % b.size
	if b.w == 0 && len(p) > 0 {
		b.full = true
	}
}

// splitLines returns the lines that p completes, each a fresh slice ending in '\n'
// (or a maxLine piece of an overlong line).
func (b *logBuffer) splitLines(p []byte) [][]byte {
	var out [][]byte
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			b.partial = append(b.partial, p...)
			for len(b.partial) >= maxLine {
				out = append(out, bytes.Clone(b.partial[:maxLine]))
				b.partial = append(b.partial[:0], b.partial[maxLine:]...)
			}
			return out
		}
		line := make([]byte, 0, len(b.partial)+i+1)
		line = append(append(line, b.partial...), p[:i+1]...)
		out = append(out, line)
		b.partial = b.partial[:0]
		p = p[i+1:]
	}
	return out
}

// Last returns a copy of the last max bytes (everything kept when max <= 0).
func (b *logBuffer) Last(max int) []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	var all []byte
	if b.full {
		all = append(append(make([]byte, 0, b.size), b.buf[b.w:]...), b.buf[:b.w]...)
	} else {
		all = append([]byte(nil), b.buf[:b.w]...)
	}
	if max > 0 && len(all) > max {
		all = all[len(all)-max:]
	}
	return all
}

// Subscribe returns a channel of lines written from now on and a function that ends
// the subscription and closes the channel.
func (b *logBuffer) Subscribe() (<-chan []byte, func()) {
	ch := make(chan []byte, 256)
	b.mu.Lock()
	b.subs[ch] = struct{}{}
	b.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			b.mu.Lock()
			delete(b.subs, ch)
			b.mu.Unlock()
			close(ch)
		})
	}
}
