package virt

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDialLocalMissingSocket(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sock := filepath.Join(t.TempDir(), "no-libvirt-sock")
	_, err := DialLocal(ctx, sock)
	if err == nil || !strings.Contains(err.Error(), sock) {
		t.Fatalf("DialLocal(%s) = %v, want an error naming the socket", sock, err)
	}
}

func TestUUIDBytes(t *testing.T) {
	const s = "5f1c2a3b-0d4e-4f60-8a7b-9c0d1e2f3a4b"
	u, err := parseUUID(s)
	if err != nil {
		t.Fatal(err)
	}
	if got := formatUUID(u); got != s {
		t.Errorf("formatUUID(parseUUID(%s)) = %s", s, got)
	}
	if _, err := parseUUID("5F1C2A3B-0D4E-4F60-8A7B-9C0D1E2F3A4B"); !errors.Is(err, ErrInvalid) {
		t.Errorf("upper-case UUID: %v, want ErrInvalid", err)
	}
}

// TestHostEventsEnd checks that the event channel closes when its context ends and
// when the connection is closed, so that the engine notices and reconnects.
func TestHostEventsEnd(t *testing.T) {
	hostConn(t)
	dial := func() *Conn {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := DialLocal(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	closed := func(ch <-chan Event) bool {
		timeout := time.After(waitLimit)
		for {
			select {
			case _, ok := <-ch:
				if !ok {
					return true
				}
			case <-timeout:
				return false
			}
		}
	}

	c := dial()
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := c.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if !closed(ch) {
		t.Error("event channel still open after its context ended")
	}
	// The connection is still usable, and a new subscription works.
	if _, err := c.List(context.Background()); err != nil {
		t.Fatalf("List after ending a subscription: %v", err)
	}

	c2 := dial()
	ch, err = c2.Events(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c2.Close()
	if !closed(ch) {
		t.Error("event channel still open after the connection closed")
	}
}
