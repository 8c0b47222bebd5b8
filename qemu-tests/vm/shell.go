package vm

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DebugPrompt is the prompt of the admin's debug shell on its second serial port.
// The supervisor starts that shell (busybox sh -i on /dev/ttyS1, PS1="cairn# ") when
// cairn.yaml says debug: true or the kernel has cairn.debug=1.
const DebugPrompt = "cairn# "

// serialConn is the harness's end of a guest serial port on a unix socket. It keeps
// reading, because a guest whose output nobody reads stalls once the socket's buffer
// is full; what it reads is also in the port's log file.
type serialConn struct {
	conn    net.Conn
	mu      sync.Mutex
	buf     []byte
	changed chan struct{}
	closed  bool
}

func dialSerial(ctx context.Context, path string) (*serialConn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	c := &serialConn{conn: conn, changed: make(chan struct{})}
	go c.read()
	return c, nil
}

func (c *serialConn) read() {
	b := make([]byte, 4096)
	for {
		n, err := c.conn.Read(b)
		c.mu.Lock()
		c.buf = append(c.buf, b[:n]...)
		if err != nil {
			c.closed = true
		}
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func (c *serialConn) close() { c.conn.Close() }

// size returns how many bytes have been read so far.
func (c *serialConn) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.buf)
}

// waitFor waits until what was read after offset contains s, and returns the text from
// offset to the start of s.
func (c *serialConn) waitFor(ctx context.Context, offset int, s string) (string, error) {
	for {
		c.mu.Lock()
		if i := bytes.Index(c.buf[offset:], []byte(s)); i >= 0 {
			out := string(c.buf[offset : offset+i])
			c.mu.Unlock()
			return out, nil
		}
		closed, changed := c.closed, c.changed
		c.mu.Unlock()
		if closed {
			return "", fmt.Errorf("serial port closed before %q showed", s)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-changed:
		}
	}
}

// run types cmd into a shell whose prompt is prompt and returns its output and exit
// status. It first presses Enter until a prompt shows, so it also works right after
// the shell started or while it still boots.
func (c *serialConn) run(ctx context.Context, prompt, cmd string) (string, int, error) {
	for {
		off := c.size()
		if _, err := c.conn.Write([]byte("\n")); err != nil {
			return "", 0, err
		}
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := c.waitFor(wctx, off, prompt)
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return "", 0, fmt.Errorf("no shell prompt %q: %w", prompt, ctx.Err())
		}
	}
	// A marker with the exit status ends the output; the prompt after it ends the reply.
	const marker = "__cairn_rc="
	off := c.size()
	if _, err := c.conn.Write([]byte(cmd + "; echo " + marker + "$?\n")); err != nil {
		return "", 0, err
	}
	// The terminal echoes the command line, which holds the marker too: wait for the
	// marker at the start of a line followed by digits.
	re := regexp.MustCompile(`(?m)^` + marker + `(\d+)\r?\n`)
	for {
		c.mu.Lock()
		got := c.buf[off:]
		m := re.FindSubmatchIndex(got)
		var text string
		var rc int
		if m != nil {
			text = string(got[:m[0]])
			rc, _ = strconv.Atoi(string(got[m[2]:m[3]]))
		}
		closed, changed := c.closed, c.changed
		c.mu.Unlock()
		if m != nil {
			text = strings.ReplaceAll(text, "\r", "")
			// Drop the echoed command line and the prompts before it.
			if i := strings.LastIndex(text, marker+"$?"); i >= 0 {
				if j := strings.IndexByte(text[i:], '\n'); j >= 0 {
					text = text[i+j+1:]
				}
			}
			return text, rc, nil
		}
		if closed {
			return "", 0, fmt.Errorf("serial port closed while running %q", cmd)
		}
		select {
		case <-ctx.Done():
			return "", 0, fmt.Errorf("running %q: %w", cmd, ctx.Err())
		case <-changed:
		}
	}
}

// serial returns the open connection to a serial port socket, dialling it on first use.
func (v *VM) serial(ctx context.Context, which **serialConn, sock string) (*serialConn, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cmd == nil || v.exited() {
		return nil, fmt.Errorf("vm %s: not running", v.Name)
	}
	if *which != nil && !(*which).isClosed() {
		return *which, nil
	}
	c, err := dialSerial(ctx, v.socket(sock))
	if err != nil {
		return nil, fmt.Errorf("vm %s: serial %s: %w", v.Name, sock, err)
	}
	*which = c
	return c, nil
}

func (c *serialConn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// Type sends text to the guest's console (first serial port) as if typed.
func (v *VM) Type(ctx context.Context, text string) error {
	c, err := v.serial(ctx, &v.console, "console.sock")
	if err != nil {
		return err
	}
	if _, err := c.conn.Write([]byte(text)); err != nil {
		return fmt.Errorf("vm %s: type on console: %w", v.Name, err)
	}
	return nil
}

// ConsoleRun runs cmd in a shell on the guest's console whose prompt is prompt, and
// returns the command's output. A non-zero exit status is an error that carries the
// output.
func (v *VM) ConsoleRun(ctx context.Context, prompt, cmd string) (string, error) {
	c, err := v.serial(ctx, &v.console, "console.sock")
	if err != nil {
		return "", err
	}
	out, rc, err := c.run(ctx, prompt, cmd)
	if err != nil {
		return out, fmt.Errorf("vm %s: console: %w", v.Name, err)
	}
	if rc != 0 {
		return out, fmt.Errorf("vm %s: console: %q exited %d: %s", v.Name, cmd, rc, strings.TrimSpace(out))
	}
	return out, nil
}

// DebugShell runs cmd in the admin's debug shell on the guest's second serial port
// (the VM needs DebugSerial) and returns its output. The shell is the supervisor's
// busybox sh with prompt DebugPrompt; this presses Enter until the prompt shows, types
// the command followed by `; echo __cairn_rc=$?`, and reads up to that marker. A
// non-zero exit status is an error that carries the output.
func (v *VM) DebugShell(ctx context.Context, cmd string) (string, error) {
	if !v.DebugSerial {
		return "", fmt.Errorf("vm %s: no debug serial port (set DebugSerial)", v.Name)
	}
	c, err := v.serial(ctx, &v.debug, "debug.sock")
	if err != nil {
		return "", err
	}
	out, rc, err := c.run(ctx, DebugPrompt, cmd)
	if err != nil {
		return out, fmt.Errorf("vm %s: debug shell: %w", v.Name, err)
	}
	if rc != 0 {
		return out, fmt.Errorf("vm %s: debug shell: %q exited %d: %s", v.Name, cmd, rc, strings.TrimSpace(out))
	}
	return out, nil
}
