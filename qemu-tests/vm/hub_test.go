package vm

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// fakeGuest speaks qemu's stream protocol on a hub socket, as a guest's NIC does.
type fakeGuest struct {
	t    *testing.T
	conn net.Conn
	mac  []byte
}

func dialHub(t *testing.T, h *Hub, mac string) *fakeGuest {
	t.Helper()
	c, err := net.Dial("unix", h.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	m, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeGuest{t: t, conn: c, mac: m}
}

func (g *fakeGuest) send(dst []byte, payload string) {
	g.t.Helper()
	frame := append(append(append([]byte{}, dst...), g.mac...), 0x88, 0xb5) // local experimental ethertype
	frame = append(frame, payload...)
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(frame)))
	if _, err := g.conn.Write(append(hdr[:], frame...)); err != nil {
		g.t.Fatal(err)
	}
}

// recv returns the payload of the next frame, or "" when none arrives within wait.
func (g *fakeGuest) recv(wait time.Duration) string {
	g.t.Helper()
	g.conn.SetReadDeadline(time.Now().Add(wait))
	var hdr [4]byte
	if _, err := io.ReadFull(g.conn, hdr[:]); err != nil {
		return ""
	}
	frame := make([]byte, binary.BigEndian.Uint32(hdr[:]))
	if _, err := io.ReadFull(g.conn, frame); err != nil {
		g.t.Fatalf("short frame: %v", err)
	}
	return string(frame[14:])
}

var broadcast = []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

func waitPorts(t *testing.T, h *Hub, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); h.Ports() != n; {
		if time.Now().After(deadline) {
			t.Fatalf("hub has %d ports, want %d", h.Ports(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestHubRelaysBetweenTwoGuests(t *testing.T) {
	h, err := NewHub(filepath.Join(t.TempDir(), "hub.sock"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	a := dialHub(t, h, "52:54:00:00:00:0a")
	b := dialHub(t, h, "52:54:00:00:00:0b")
	waitPorts(t, h, 2)

	a.send(broadcast, "who has b")
	if got := b.recv(2 * time.Second); got != "who has b" {
		t.Fatalf("b got %q, want the broadcast from a", got)
	}
	if got := a.recv(100 * time.Millisecond); got != "" {
		t.Fatalf("a got its own broadcast back: %q", got)
	}
	b.send(a.mac, "b is here")
	if got := a.recv(2 * time.Second); got != "b is here" {
		t.Fatalf("a got %q, want b's reply", got)
	}
	// A large frame (jumbo-sized, as virtio-net sends with offloads) arrives whole.
	big := string(bytes.Repeat([]byte("x"), 60000))
	a.send(b.mac, big)
	if got := b.recv(2 * time.Second); got != big {
		t.Fatalf("b got %d bytes, want %d", len(got), len(big))
	}
}

func TestHubLearnsWhereMACsAre(t *testing.T) {
	h, err := NewHub(filepath.Join(t.TempDir(), "hub.sock"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	a := dialHub(t, h, "52:54:00:00:00:0a")
	b := dialHub(t, h, "52:54:00:00:00:0b")
	c := dialHub(t, h, "52:54:00:00:00:0c")
	waitPorts(t, h, 3)

	// Unknown destination: flooded to every other port.
	a.send(b.mac, "first")
	if got := b.recv(2 * time.Second); got != "first" {
		t.Fatalf("b got %q", got)
	}
	if got := c.recv(2 * time.Second); got != "first" {
		t.Fatalf("c got %q, want the flooded frame", got)
	}
	// Once b has sent, the hub knows its port: a's next frame to b skips c.
	b.send(a.mac, "reply")
	if got := a.recv(2 * time.Second); got != "reply" {
		t.Fatalf("a got %q", got)
	}
	if got := c.recv(200 * time.Millisecond); got != "" {
		t.Fatalf("c got a's learnt unicast reply %q", got)
	}
	a.send(b.mac, "second")
	if got := b.recv(2 * time.Second); got != "second" {
		t.Fatalf("b got %q", got)
	}
	if got := c.recv(200 * time.Millisecond); got != "" {
		t.Fatalf("c got unicast %q meant for b", got)
	}

	// When b leaves, its MAC is forgotten and frames to it are flooded again.
	b.conn.Close()
	waitPorts(t, h, 2)
	a.send(b.mac, "third")
	if got := c.recv(2 * time.Second); got != "third" {
		t.Fatalf("c got %q, want the frame flooded after b left", got)
	}
}

func TestHubCloseRemovesSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hub.sock")
	h, err := NewHub(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	g := dialHub(t, h, "52:54:00:00:00:0a")
	waitPorts(t, h, 1)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := net.Dial("unix", path); err == nil {
		t.Fatal("hub socket still accepts connections after Close")
	}
	if got := g.recv(time.Second); got != "" {
		t.Fatalf("guest got %q after Close", got)
	}
}
