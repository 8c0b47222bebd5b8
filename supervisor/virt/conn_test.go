package virt

import (
	"context"
	"errors"
	mrand "math/rand/v2"
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

// TestHostEventsEndWhileBusy ends subscriptions while a domain's events pour in, the
// way the engine does when it stops watching a node: the connection must still answer
// and close. (go-libvirt before 2026-10 could hang here: an event arriving between the
// end of a subscription's queue and its deregistration blocked the connection's
// reader for good, and every later call on the connection, Close included, waited
// forever.)
func TestHostEventsEndWhileBusy(t *testing.T) {
	churn := hostConn(t)
	d := testDomain(t)
	define(t, churn, d)
	bg := context.Background()
	if err := churn.Start(bg, d.UUID); err != nil {
		t.Fatal(err)
	}
	// Another watcher stays subscribed throughout, as the engine does on a node.
	// Without one, libvirtd 9.0 here sometimes (about one test run in five) never
	// delivered an event to a subscription made just after the last one ended, under
	// this flow of events: a daemon quirk, not what this test is about.
	keep := events(t, hostConn(t))
	go func() {
		for range keep {
		}
	}()
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		// Pausing and resuming are quick: each gives one event.
		for {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if err := churn.Suspend(bg, d.UUID); err != nil {
				done <- err
				return
			}
			if err := churn.Resume(bg, d.UUID); err != nil {
				done <- err
				return
			}
		}
	}()
	defer func() {
		close(stop)
		if err := <-done; err != nil {
			t.Errorf("suspend/resume: %v", err)
		}
	}()

	// Each ending has a few per cent chance of falling between an event's arrival and
	// the deregistration; 100 made the old go-libvirt hang every time here.
	for i := range 100 {
		ctx, cancel := context.WithTimeout(bg, 30*time.Second)
		c, err := DialLocal(ctx, "")
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		ch, err := c.Events(ctx)
		if err != nil {
			cancel()
			t.Fatalf("subscription %d: %v", i, err)
		}
		if !gotEvent(ch, d.UUID) {
			cancel()
			t.Fatalf("subscription %d: no event of the domain within 30 s", i)
		}
		// End at a random point between two events, not right after one.
		time.Sleep(time.Duration(mrand.IntN(5000)) * time.Microsecond)
		cancel()
		for range ch {
		}
		lctx, lcancel := context.WithTimeout(bg, 30*time.Second)
		_, err = c.List(lctx)
		lcancel()
		if err != nil {
			t.Fatalf("subscription %d: the connection no longer answers after its end: %v", i, err)
		}
		if err := c.Close(); err != nil {
			t.Fatalf("subscription %d: %v", i, err)
		}
	}
}

// gotEvent reports whether an event of domain uuid arrives on ch before it closes.
func gotEvent(ch <-chan Event, uuid string) bool {
	for ev := range ch {
		if ev.UUID == uuid {
			return true
		}
	}
	return false
}
