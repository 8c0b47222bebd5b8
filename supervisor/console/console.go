// Package console carries a server's consoles to the browser: the serial console
// (history from the guest's serial log, then the live socket) and the graphical one
// (RFB, which noVNC speaks inside websocket binary messages). The engine decides who
// may open a console and builds a Target; Bridge relays bytes between that target
// and an authenticated websocket.
//
// Every server (libvirt domain with uuid U) on a node has a serial socket
// <ConsoleDir>/U.serial, a VNC socket <ConsoleDir>/U.vnc and a serial log
// <LogDir>/U.serial.log. On the admin node they are local (LocalTarget); on a compute
// node the node agent's mutual-TLS proxy reaches them (agent.DialConsole).
package console

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
)

// Kind is a kind of console.
type Kind string

// The kinds of console.
const (
	// Serial is the guest's serial port: text in and out, with a log of the past.
	Serial Kind = "serial"
	// VNC is the guest's screen, keyboard and mouse over RFB.
	VNC Kind = "vnc"
)

// HistoryBytes is how much of a serial log a new viewer sees before the live output:
// the log's last 256 KiB.
const HistoryBytes = 256 << 10

// Target is how to reach one server's console; the engine builds it after checking
// who asks.
type Target struct {
	// Dial connects to the live console socket. The connection is the console: bytes
	// written are the guest's input, bytes read its output.
	Dial func(ctx context.Context) (net.Conn, error)
	// History returns what the guest printed before (the serial log's tail); nil for
	// VNC, which has none.
	History func(ctx context.Context) (io.ReadCloser, error)
}

// LocalTarget reaches the console of the server with uuid on this node: the socket in
// consoleDir and, for the serial console, the tail of the log in logDir. An invalid
// uuid or kind gives a Target whose calls fail without touching the filesystem.
func LocalTarget(consoleDir, logDir, uuid string, kind Kind) Target {
	t := Target{
		Dial: func(ctx context.Context) (net.Conn, error) {
			path, err := SocketPath(consoleDir, uuid, kind)
			if err != nil {
				return nil, err
			}
			var d net.Dialer
			c, err := d.DialContext(ctx, "unix", path)
			if err != nil {
				return nil, fmt.Errorf("dial %s console of server %s: %w (is the server running?)", kind, uuid, err)
			}
			return c, nil
		},
	}
	if kind == Serial {
		t.History = func(context.Context) (io.ReadCloser, error) {
			path, err := LogPath(logDir, uuid)
			if err != nil {
				return nil, err
			}
			return Tail(path, HistoryBytes)
		}
	}
	return t
}

// ErrInvalid is the error of a uuid or kind that names no console.
var ErrInvalid = errors.New("invalid console request")

// CheckUUID reports whether uuid is a server's uuid in libvirt's canonical form, 36
// characters of lowercase hex in groups 8-4-4-4-12. Only such a string is ever put
// into a path: anything else (a path, "../x", "") is refused.
func CheckUUID(uuid string) error {
	if len(uuid) != 36 {
		return fmt.Errorf("%w: %q is not a server uuid (8-4-4-4-12 lowercase hex digits)", ErrInvalid, uuid)
	}
	for i := range len(uuid) {
		c := uuid[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return fmt.Errorf("%w: %q is not a server uuid (8-4-4-4-12 lowercase hex digits)", ErrInvalid, uuid)
			}
		default:
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return fmt.Errorf("%w: %q is not a server uuid (8-4-4-4-12 lowercase hex digits)", ErrInvalid, uuid)
			}
		}
	}
	return nil
}

// SocketPath is the path of the kind console socket of the server uuid in dir
// (dir/uuid.serial, dir/uuid.vnc), after checking both.
func SocketPath(dir, uuid string, kind Kind) (string, error) {
	if kind != Serial && kind != VNC {
		return "", fmt.Errorf("%w: console kind %q (want serial or vnc)", ErrInvalid, kind)
	}
	if err := CheckUUID(uuid); err != nil {
		return "", err
	}
	return filepath.Join(dir, uuid+"."+string(kind)), nil
}

// LogPath is the path of the serial log of the server uuid in dir (dir/uuid.serial.log),
// after checking uuid.
func LogPath(dir, uuid string) (string, error) {
	if err := CheckUUID(uuid); err != nil {
		return "", err
	}
	return filepath.Join(dir, uuid+".serial.log"), nil
}

// Tail returns the last n bytes of the file at path, starting after the first line
// break when it had to cut, so that the first line shown is whole. A file that does
// not exist yet (a server that never printed) reads as empty.
func Tail(path string, n int64) (io.ReadCloser, error) {
	// O_NONBLOCK: opening a FIFO planted in the log's place must not hang the caller;
	// the mode check below refuses it.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, os.ErrNotExist) {
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	if err != nil {
		return nil, fmt.Errorf("open console log: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat console log: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("console log %s is not a regular file", path)
	}
	off := max(fi.Size()-n, 0)
	// The log grows while it is read: read at most n bytes from off.
	buf := make([]byte, fi.Size()-off)
	m, err := f.ReadAt(buf, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read console log: %w", err)
	}
	buf = buf[:m]
	if off > 0 {
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			buf = buf[i+1:]
		}
	}
	return io.NopCloser(bytes.NewReader(buf)), nil
}
