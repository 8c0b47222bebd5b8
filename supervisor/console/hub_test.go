package console

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// noMoreConns fails the test when the guest socket gets another connection within a
// short while.
func (g *guest) noMoreConns(t *testing.T) {
	t.Helper()
	select {
	case <-g.conns:
		t.Fatal("a second connection reached the guest's console socket; the viewers should share one")
	case <-time.After(300 * time.Millisecond):
	}
}

// sharedConsole serves a fake guest's serial console through Bridge, shared by a Hub
// as the supervisor shares it.
func sharedConsole(t *testing.T) (*guest, *httptest.Server, chan struct{}) {
	t.Helper()
	dir := t.TempDir()
	g := newGuest(t, filepath.Join(dir, testUUID+".serial"))
	var hub Hub
	srv, returned := bridgeServer(t, hub.Share("n-1/"+testUUID, LocalTarget(dir, dir, testUUID, Serial)), Serial)
	return g, srv, returned
}

// Two browser tabs on one serial console share the guest's single connection: both
// see its output, both type into it; the first to leave does not end the other, and
// the last to leave closes the connection, so that the next viewer dials afresh.
func TestHubTwoViewersShareTheSerialConsole(t *testing.T) {
	g, srv, returned := sharedConsole(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	a, _, err := dial(ctx, srv, "")
	if err != nil {
		t.Fatalf("dial a: %v", err)
	}
	defer a.CloseNow()
	gc := g.accept(t)
	b, _, err := dial(ctx, srv, "")
	if err != nil {
		t.Fatalf("dial b: %v", err)
	}
	defer b.CloseNow()
	// Both type into the guest (which also shows that b has joined).
	if err := b.Write(ctx, websocket.MessageBinary, []byte("ls\r")); err != nil {
		t.Fatal(err)
	}
	if in := readGuest(t, gc, 3); string(in) != "ls\r" {
		t.Fatalf("guest got %q from tab b", in)
	}
	if err := a.Write(ctx, websocket.MessageBinary, []byte("root\r")); err != nil {
		t.Fatal(err)
	}
	if in := readGuest(t, gc, 5); string(in) != "root\r" {
		t.Fatalf("guest got %q from tab a", in)
	}
	g.noMoreConns(t)

	gc.Write([]byte("debian login: "))
	readUntil(t, ctx, a, "debian login: ")
	readUntil(t, ctx, b, "debian login: ")

	// Tab a closes; b goes on with the same connection.
	a.Close(websocket.StatusNormalClosure, "tab closed")
	waitReturned(t, returned)
	gc.Write([]byte("still here\r\n"))
	readUntil(t, ctx, b, "still here")

	// The last tab closes: the guest's connection ends.
	b.Close(websocket.StatusNormalClosure, "tab closed")
	waitReturned(t, returned)
	gc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := gc.Read(make([]byte, 16)); !errors.Is(err, io.EOF) {
		t.Fatalf("guest read after the last viewer left: %d, %v; want EOF", n, err)
	}
	c, _, err := dial(ctx, srv, "")
	if err != nil {
		t.Fatalf("dial again: %v", err)
	}
	defer c.CloseNow()
	g.accept(t)
}

// When the guest closes its console (the server stops), every viewer is told so.
func TestHubGuestClosingEndsEveryViewer(t *testing.T) {
	g, srv, returned := sharedConsole(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, _, err := dial(ctx, srv, "")
	if err != nil {
		t.Fatal(err)
	}
	defer a.CloseNow()
	gc := g.accept(t)
	b, _, err := dial(ctx, srv, "")
	if err != nil {
		t.Fatal(err)
	}
	defer b.CloseNow()
	// b's keystroke reaching the guest shows that b has joined.
	if err := b.Write(ctx, websocket.MessageBinary, []byte("poweroff\r")); err != nil {
		t.Fatal(err)
	}
	readGuest(t, gc, 9)
	gc.Write([]byte("Power down.\r\n"))
	readUntil(t, ctx, a, "Power down.")
	readUntil(t, ctx, b, "Power down.")
	gc.Close()
	for name, c := range map[string]*websocket.Conn{"a": a, "b": b} {
		_, _, err := c.Read(ctx)
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.StatusNormalClosure || !strings.Contains(ce.Reason, "closed its console") {
			t.Errorf("tab %s after the guest closed: %v; want a normal close saying the console closed", name, err)
		}
	}
	waitReturned(t, returned)
	waitReturned(t, returned)
}

// A viewer that stops reading is dropped once it is viewerQueue chunks behind, with
// what was queued for it still readable; the viewer that reads misses nothing.
func TestHubDropsAViewerThatStopsReading(t *testing.T) {
	dir := t.TempDir()
	g := newGuest(t, filepath.Join(dir, testUUID+".serial"))
	var hub Hub
	tg := hub.Share("n-1/"+testUUID, LocalTarget(dir, dir, testUUID, Serial))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fast, err := tg.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	gc := g.accept(t)
	slow, err := tg.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()

	// One chunk per write: the next write only once the fast viewer has the last.
	line := bytes.Repeat([]byte("x"), 1000)
	buf := make([]byte, len(line))
	for i := range viewerQueue + 1 {
		if _, err := gc.Write(line); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(fast, buf); err != nil {
			t.Fatalf("fast viewer, chunk %d: %v", i, err)
		}
	}
	got, err := io.ReadAll(slow)
	if !errors.Is(err, errTooSlow) || len(got) != viewerQueue*len(line) {
		t.Fatalf("slow viewer read %d bytes then %v; want the %d queued, then errTooSlow", len(got), err, viewerQueue*len(line))
	}
	if _, err := gc.Write([]byte("after")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(fast, buf[:5]); err != nil || string(buf[:5]) != "after" {
		t.Fatalf("fast viewer after the slow one was dropped: %q %v", buf[:5], err)
	}
}
