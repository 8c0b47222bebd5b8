package virt

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-os/cairn/internal/testutil"
	"github.com/cairn-os/cairn/supervisor/hostcmd"
)

// waitLimit bounds each wait for something the daemon or a guest does; it is a
// guard against hanging, not a timing assertion.
const waitLimit = 2 * time.Minute

// hostConn connects to the host's libvirtd, or skips the test saying why.
func hostConn(t *testing.T) *Conn {
	t.Helper()
	testutil.RequireRoot(t)
	c, err := net.DialTimeout("unix", DefaultSocket, 2*time.Second)
	if err != nil {
		t.Skipf("needs a running libvirtd at %s (`make libvirtd` starts it): %v", DefaultSocket, err)
	}
	c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := DialLocal(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := conn.Close(); err != nil {
			t.Error(err)
		}
	})
	return conn
}

// testDir makes a directory that qemu (user libvirt-qemu) can reach: t.TempDir's are
// private to root.
func testDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func newUUID(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// newMAC is a random address in qemu's range 52:54:00.
func newMAC(t *testing.T) string {
	t.Helper()
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", b[0], b[1], b[2])
}

// qemuImg creates an empty image of size at path.
func qemuImg(t *testing.T, format, path, size string) {
	t.Helper()
	testutil.RequireProgram(t, "qemu-img")
	if _, err := (hostcmd.Exec{}).Run(context.Background(), "qemu-img", "create", "-q", "-f", format, path, size); err != nil {
		t.Fatal(err)
	}
}

// testDomain describes a small TCG domain with one empty qcow2 disk (no OS), an
// empty CD-ROM drive and a user-mode NIC, in a directory of its own.
func testDomain(t *testing.T) Domain {
	t.Helper()
	dir := testDir(t)
	disk := filepath.Join(dir, "disk0.qcow2")
	qemuImg(t, "qcow2", disk, "16M")
	consoles, logs := filepath.Join(dir, "c"), filepath.Join(dir, "l")
	if err := PrepareDirs(consoles, logs); err != nil {
		t.Fatal(err)
	}
	return Domain{
		UUID:       newUUID(t),
		Name:       testutil.Name("cairn-virt-"),
		Type:       "qemu",
		VCPUs:      1,
		MemoryMiB:  64,
		Disks:      []Disk{{Path: disk, Format: "qcow2", Bus: BusVirtio, Serial: "img-test0"}},
		CDROM:      &CDROM{},
		NICs:       []NIC{{MAC: newMAC(t)}},
		Boot:       []string{"hd"},
		ConsoleDir: consoles,
		LogDir:     logs,
	}
}

// define defines d and removes it (forcing it off first) when the test ends.
func define(t *testing.T, c *Conn, d Domain) {
	t.Helper()
	ctx := context.Background()
	if err := c.Define(ctx, d); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Destroy(ctx, d.UUID); err != nil && !errors.Is(err, ErrNotFound) {
			t.Errorf("clean-up: %v", err)
		}
		if err := c.Undefine(ctx, d.UUID); err != nil {
			t.Errorf("clean-up: %v", err)
		}
	})
}

// events subscribes to the connection's events until the test ends.
func events(t *testing.T, c *Conn) <-chan Event {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := c.Events(ctx)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		for range ch {
		}
	})
	return ch
}

// waitEvent waits for the event of domain uuid with kind and reason (any reason when
// empty), skipping others.
func waitEvent(t *testing.T, ch <-chan Event, uuid, kind, reason string) Event {
	t.Helper()
	timeout := time.After(waitLimit)
	var seen []string
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("event stream closed while waiting for %s/%s; saw %v", kind, reason, seen)
			}
			if ev.UUID != uuid {
				continue
			}
			seen = append(seen, ev.Kind+"/"+ev.Reason)
			if ev.Kind == kind && (reason == "" || ev.Reason == reason) {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %s/%s event for %s; saw %v", kind, reason, uuid, seen)
		}
	}
}

func wantState(t *testing.T, c *Conn, uuid string, want State) {
	t.Helper()
	got, err := c.State(context.Background(), uuid)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("state of %s = %s, want %s", uuid, got, want)
	}
}

// readUntil reads lines from r until one contains want.
func readUntil(t *testing.T, conn net.Conn, want string) string {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(waitLimit))
	var got strings.Builder
	sc := bufio.NewScanner(conn)
	for sc.Scan() {
		got.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), want) {
			return got.String()
		}
	}
	t.Fatalf("%q not seen (%v); got:\n%s", want, sc.Err(), got.String())
	return ""
}
