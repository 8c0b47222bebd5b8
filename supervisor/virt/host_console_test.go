package virt

import (
	"context"
	"io"
	"net"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/digitalocean/go-libvirt"
)

// TestHostConsoles checks what the web console relies on: the serial socket carries
// what the guest prints (SeaBIOS, with <bios useserial='yes'/>), the log file has it
// too for whoever connects later, and the VNC socket speaks RFB.
func TestHostConsoles(t *testing.T) {
	c := hostConn(t)
	ctx := context.Background()
	d := testDomain(t)
	define(t, c, d)

	// Start paused, so that nothing is printed before the console is connected.
	dom, err := c.lookup(ctx, d.UUID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.l.DomainCreateWithFlags(dom, uint32(libvirt.DomainStartPaused)); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{d.SerialSocket(), d.VNCSocket()} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Type() != os.ModeSocket {
			t.Fatalf("%s is %v, not a socket", p, fi.Mode())
		}
	}
	serial, err := net.Dial("unix", d.SerialSocket())
	if err != nil {
		t.Fatal(err)
	}
	defer serial.Close()
	if err := c.Resume(ctx, d.UUID); err != nil {
		t.Fatal(err)
	}
	got := readUntil(t, serial, "SeaBIOS")
	t.Logf("serial console: %q", got)

	// virtlogd writes the log as the output passes; wait for it to catch up.
	deadline := time.Now().Add(waitLimit)
	for {
		b, err := os.ReadFile(d.SerialLog())
		if err == nil && strings.Contains(string(b), "SeaBIOS") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serial log %s has no SeaBIOS line (err %v): %q", d.SerialLog(), err, b)
		}
		time.Sleep(100 * time.Millisecond)
	}

	vnc, err := net.Dial("unix", d.VNCSocket())
	if err != nil {
		t.Fatal(err)
	}
	defer vnc.Close()
	vnc.SetReadDeadline(time.Now().Add(waitLimit))
	greeting := make([]byte, 12)
	if _, err := io.ReadFull(vnc, greeting); err != nil {
		t.Fatal(err)
	}
	if string(greeting) != "RFB 003.008\n" {
		t.Fatalf("VNC greeting = %q, want RFB 003.008", greeting)
	}
}

// TestHostPrepareDirs checks the directories' owner and mode, and that it refuses a
// directory qemu could not reach.
func TestHostPrepareDirs(t *testing.T) {
	hostConn(t) // root
	qemu, err := user.Lookup(QemuUser)
	if err != nil {
		t.Skipf("needs the user %s (`make libvirtd` makes it): %v", QemuUser, err)
	}
	base := testDir(t)
	con, logs := base+"/run/console", base+"/log/console"
	if err := PrepareDirs(con, logs); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{con, logs} {
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o750 {
			t.Errorf("%s has mode %o, want 750", dir, fi.Mode().Perm())
		}
		if st := fi.Sys().(*syscall.Stat_t); strconv.Itoa(int(st.Uid)) != qemu.Uid {
			t.Errorf("%s is owned by uid %d, want %s's %s", dir, st.Uid, QemuUser, qemu.Uid)
		}
		if p, _ := os.Stat(base + "/run"); p.Mode().Perm()&0o001 == 0 {
			t.Errorf("parent %s/run is not reachable by qemu: %o", base, p.Mode().Perm())
		}
	}
	private := base + "/private"
	os.Mkdir(private, 0o700)
	if err := PrepareDirs(private+"/c", private+"/l"); err == nil || !strings.Contains(err.Error(), "chmod o+x") {
		t.Errorf("PrepareDirs under a private directory: %v, want an error saying to chmod o+x", err)
	}
}
