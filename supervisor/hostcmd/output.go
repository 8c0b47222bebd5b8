package hostcmd

// LineWriter calls Fn for each line written to it, lines ending in \n or \r (progress
// meters such as rsync's and qemu-img's rewrite their line with \r). It is a child's
// stdout for tools that report progress as they go.
type LineWriter struct {
	Fn  func(line string)
	buf []byte
}

func (w *LineWriter) Write(p []byte) (int, error) {
	for _, b := range p {
		if b == '\r' || b == '\n' {
			if len(w.buf) > 0 {
				w.Fn(string(w.buf))
				w.buf = w.buf[:0]
			}
			continue
		}
		if len(w.buf) < 4096 {
			w.buf = append(w.buf, b)
		}
	}
	return len(p), nil
}

// Tail keeps the last few KiB written to it: enough for an error message, however
// much a child prints.
type Tail struct{ b []byte }

func (t *Tail) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 8192 {
		t.b = append([]byte(nil), t.b[len(t.b)-4096:]...)
	}
	return len(p), nil
}

// String is what is kept.
func (t *Tail) String() string { return string(t.b) }

// LastLine is the last non-empty line kept, cut at 300 bytes.
func (t *Tail) LastLine() string { return lastLine(t.b) }
