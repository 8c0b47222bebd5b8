package console

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestCheckUUID(t *testing.T) {
	for _, ok := range []string{"2f1e6c1a-9b8e-4c1d-8f6a-0123456789ab", "00000000-0000-0000-0000-000000000000"} {
		if err := CheckUUID(ok); err != nil {
			t.Errorf("CheckUUID(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{
		"", "../x", "..", "/etc/passwd", "2f1e6c1a-9b8e-4c1d-8f6a-0123456789a",
		"2F1E6C1A-9B8E-4C1D-8F6A-0123456789AB", "2f1e6c1a-9b8e-4c1d-8f6a-0123456789ab\n",
		"2f1e6c1a/9b8e-4c1d-8f6a-0123456789ab", "../../../../../../../../../etc/passwd",
		"2f1e6c1a-9b8e-4c1d-8f6a-0123456789a/", "2f1e6c1a-9b8e-4c1d-8f6a-0123456789ag",
	} {
		if err := CheckUUID(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("CheckUUID(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestPaths(t *testing.T) {
	const u = "2f1e6c1a-9b8e-4c1d-8f6a-0123456789ab"
	if p, err := SocketPath("/run/c", u, VNC); err != nil || p != "/run/c/"+u+".vnc" {
		t.Errorf("SocketPath vnc = %q, %v", p, err)
	}
	if p, err := SocketPath("/run/c", u, Serial); err != nil || p != "/run/c/"+u+".serial" {
		t.Errorf("SocketPath serial = %q, %v", p, err)
	}
	if p, err := LogPath("/var/log/c", u); err != nil || p != "/var/log/c/"+u+".serial.log" {
		t.Errorf("LogPath = %q, %v", p, err)
	}
	if _, err := SocketPath("/run/c", u, "log"); !errors.Is(err, ErrInvalid) {
		t.Errorf("SocketPath of kind log: %v, want ErrInvalid", err)
	}
	if _, err := LogPath("/var/log/c", "../x"); !errors.Is(err, ErrInvalid) {
		t.Errorf("LogPath ../x: %v, want ErrInvalid", err)
	}
}

// readAll reads a Tail; an error reads as "error: …".
func readAll(rc io.ReadCloser, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return "error: " + err.Error()
	}
	return string(b)
}

func TestTail(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.serial.log")
	if got := readAll(Tail(path, 100)); got != "" {
		t.Errorf("tail of a missing log = %q, want empty", got)
	}
	if err := os.WriteFile(path, []byte("first line\nsecond line\nthird\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := readAll(Tail(path, 100)); got != "first line\nsecond line\nthird\n" {
		t.Errorf("tail of a short log = %q", got)
	}
	// The last 15 bytes start inside "second line": the cut line is dropped.
	if got := readAll(Tail(path, 15)); got != "third\n" {
		t.Errorf("tail 15 = %q, want the whole lines only", got)
	}
	fifo := filepath.Join(dir, "fifo.serial.log")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Tail(fifo, 100); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("tail of a FIFO: %v, want refused (and no hang)", err)
	}
}

func TestLocalTargetRefusesBadUUIDWithoutTouchingFiles(t *testing.T) {
	dir := t.TempDir()
	// A socket and a log named like the escape: they must not be reached.
	if err := os.WriteFile(filepath.Join(dir, "x.serial.log"), []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	tg := LocalTarget(filepath.Join(dir, "sub"), filepath.Join(dir, "sub"), "../x", Serial)
	if c, err := tg.Dial(context.Background()); !errors.Is(err, ErrInvalid) {
		if c != nil {
			c.Close()
		}
		t.Errorf("Dial with uuid ../x: %v, want ErrInvalid", err)
	}
	if rc, err := tg.History(context.Background()); !errors.Is(err, ErrInvalid) {
		if rc != nil {
			rc.Close()
		}
		t.Errorf("History with uuid ../x: %v, want ErrInvalid", err)
	}
	if LocalTarget(dir, dir, "2f1e6c1a-9b8e-4c1d-8f6a-0123456789ab", VNC).History != nil {
		t.Error("a VNC target has a history")
	}
}
