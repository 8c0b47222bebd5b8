package vm

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-os/cairn/internal/testutil"
)

// TestTAPAnswersARP plugs a tap device in a namespace of the test's own into a hub
// and asks, as a guest on the hub would, who has the tap's address: the namespace's
// kernel must answer with the tap's MAC, which proves frames cross both ways.
func TestTAPAnswersARP(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireProgram(t, "ip")
	h, err := NewHub(filepath.Join(t.TempDir(), "hub.sock"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })

	ns := testutil.Name("cairn-")
	ipRun := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ipRun("netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	tapName := testutil.Name("ct")
	tap, err := AttachTAP(h.Path(), "/run/netns/"+ns, tapName, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tap.Close() })
	ipRun("-n", ns, "addr", "add", "10.9.0.1/24", "dev", tapName)
	ipRun("-n", ns, "link", "set", tapName, "up")
	out, err := exec.Command("ip", "-n", ns, "-o", "link", "show", tapName).Output()
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(out))
	var tapMAC net.HardwareAddr
	for i, s := range f {
		if s == "link/ether" && i+1 < len(f) {
			tapMAC, _ = net.ParseMAC(f[i+1])
		}
	}
	if tapMAC == nil {
		t.Fatalf("no MAC in %q", out)
	}

	c, err := net.Dial("unix", h.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	guestMAC, _ := net.ParseMAC("52:54:00:12:34:56")
	req := arpFrame(1, guestMAC, net.IPv4(10, 9, 0, 2), nil, net.IPv4(10, 9, 0, 1))
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], uint32(len(req)))
		if _, err := c.Write(append(hdr[:], req...)); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		for {
			if _, err := io.ReadFull(c, hdr[:]); err != nil {
				break // no answer yet: ask again
			}
			frame := make([]byte, binary.BigEndian.Uint32(hdr[:]))
			if _, err := io.ReadFull(c, frame); err != nil {
				t.Fatal(err)
			}
			// An ARP reply (opcode 2) to the guest, from the tap, for 10.9.0.1.
			if len(frame) >= 42 && bytes.Equal(frame[12:14], []byte{0x08, 0x06}) && frame[21] == 2 &&
				bytes.Equal(frame[0:6], guestMAC) && bytes.Equal(frame[28:32], []byte{10, 9, 0, 1}) {
				if got := net.HardwareAddr(frame[22:28]); got.String() != tapMAC.String() {
					t.Fatalf("ARP reply says 10.9.0.1 is at %s, the tap is %s", got, tapMAC)
				}
				return
			}
		}
	}
	t.Fatal("no ARP reply from the tap's namespace within 10 s")
}

// arpFrame builds an Ethernet ARP frame (op 1 request, broadcast; 2 reply).
func arpFrame(op byte, sha net.HardwareAddr, spa net.IP, tha net.HardwareAddr, tpa net.IP) []byte {
	if tha == nil {
		tha = make(net.HardwareAddr, 6)
	}
	f := append([]byte{}, broadcast...)
	f = append(f, sha...)
	f = append(f, 0x08, 0x06)
	f = append(f, 0, 1, 0x08, 0x00, 6, 4, 0, op)
	f = append(f, sha...)
	f = append(f, spa.To4()...)
	f = append(f, tha...)
	f = append(f, tpa.To4()...)
	return f
}
