package hosttests

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairn-os/cairn/internal/testimage"
	"github.com/cairn-os/cairn/supervisor/engine"
)

// cutReader gives n bytes of r, then fails as a dropped connection would.
type cutReader struct {
	r io.Reader
	n int64
}

func (c *cutReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, errors.New("connection dropped by the test")
	}
	if int64(len(p)) > c.n {
		p = p[:c.n]
	}
	n, err := c.r.Read(p)
	c.n -= int64(n)
	return n, err
}

// TestServers runs the life of servers on the host's libvirtd: upload a bootable
// image with an interrupted upload that resumes, mark it master, clone children,
// run two servers and read each guest's own output on its serial console, shut one
// down by ACPI and force the other off, restart the engine and see the autostart
// server come back, and delete everything.
func TestServers(t *testing.T) {
	l := newLab(t, "")
	img := testImage(t)
	fi, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}

	// An upload cut off a third of the way resumes from where the engine says.
	var base engine.Image
	l.must(201, "POST", "/images", engine.ImageRequest{Name: "busybox", Format: "qcow2", Size: fi.Size(), Upload: true}, &base)
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if status, _ := l.chunk(base.ID, 0, &cutReader{r: f, n: fi.Size() / 3}); status == 200 {
		t.Fatal("a cut-off upload chunk answered 200")
	}
	l.must(200, "GET", "/images/"+base.ID+"/upload", nil, &base)
	off := base.Upload.Offset
	if off <= 0 || off >= fi.Size() {
		t.Fatalf("after the cut the upload is at %d of %d", off, fi.Size())
	}
	if status, msg := l.chunk(base.ID, 0, strings.NewReader("xx")); status != 409 {
		t.Fatalf("a chunk at the wrong offset: %d %s, want 409", status, msg)
	}
	// The HTTP client closed the file with the cut request: open it again.
	f, err = os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if status, msg := l.chunk(base.ID, off, f); status != 200 {
		t.Fatalf("resumed upload: %d %s", status, msg)
	}
	l.must(200, "GET", "/images/"+base.ID, nil, &base)
	if base.State != engine.ImageReady || base.Format != "qcow2" {
		t.Fatalf("uploaded image: %+v", base)
	}
	if sha(t, base.Path) != sha(t, img) {
		t.Fatal("the uploaded file differs from the original")
	}

	// Master, and two servers on children of it.
	master := true
	l.must(200, "PATCH", "/images/"+base.ID, engine.ImageUpdate{Master: &master}, &base)
	mk := func(name string, autostart bool) engine.Server {
		var s engine.Server
		l.must(201, "POST", "/servers", engine.ServerRequest{
			Name: name, VCPUs: 1, MemoryMiB: 128, Autostart: autostart, Start: true, NICs: 1,
			Disks: []engine.ServerDiskRequest{{Image: base.ID, Clone: true}},
		}, &s)
		l.track(s)
		return s
	}
	a := mk("alpha", true)
	b := mk("beta", false)
	if a.State != engine.ServerRunning || b.State != engine.ServerRunning {
		t.Fatalf("servers after start: %s %s", a.State, b.State)
	}
	var child engine.Image
	l.must(200, "GET", "/images/"+a.Disks[0].Image, nil, &child)
	if child.Backing != base.ID || child.Format != "qcow2" {
		t.Fatalf("alpha's disk is not a child of the master: %+v", child)
	}
	// Each guest prints its own SMBIOS UUID: the console is that server's.
	for _, s := range []engine.Server{a, b} {
		out := l.serial(s.ID, regexp.MustCompile(`cairn-test: uuid=\S+[\s\S]*cairn-test: ready`), 3*time.Minute)
		m := testimage.UUIDLine.FindStringSubmatch(out)
		if m == nil || m[1] != s.UUID {
			t.Fatalf("server %s's console shows uuid %v, want %s", s.Name, m, s.UUID)
		}
	}
	if status, msg := l.do("DELETE", "/images/"+base.ID, nil, nil); status != 409 {
		t.Fatalf("delete a master with children: %d %s, want 409", status, msg)
	}
	l.twoViewers(a.ID)

	// Suspend and resume follow libvirt's events.
	l.must(200, "POST", "/servers/"+b.ID+"/suspend", nil, nil)
	l.waitState(b.ID, engine.ServerPaused, 30*time.Second)
	l.must(200, "POST", "/servers/"+b.ID+"/resume", nil, nil)
	l.waitState(b.ID, engine.ServerRunning, 30*time.Second)

	// Hot-plug a blank disk into the running guest and take it out again; an image
	// in use cannot be deleted meanwhile.
	var extra engine.Image
	l.must(201, "POST", "/images", engine.ImageRequest{Name: "extra", Format: "qcow2", Size: 64 << 20}, &extra)
	var withDisk engine.Server
	l.must(200, "POST", "/servers/"+b.ID+"/disks", engine.ServerDiskRequest{Image: extra.ID, Bus: "virtio"}, &withDisk)
	if len(withDisk.Disks) != 2 || withDisk.Disks[1].Image != extra.ID {
		t.Fatalf("after attaching, the server's disks are %+v", withDisk.Disks)
	}
	if out, _ := exec.Command("virsh", "-c", "qemu:///system", "domblklist", b.UUID).CombinedOutput(); !strings.Contains(string(out), extra.Path) {
		t.Fatalf("libvirt's live domain does not have the attached disk:\n%s", out)
	}
	if status, msg := l.do("DELETE", "/images/"+extra.ID, nil, nil); status != 409 {
		t.Fatalf("delete an attached image: %d %s, want 409", status, msg)
	}
	l.must(200, "DELETE", "/servers/"+b.ID+"/disks/1", nil, &withDisk)
	if len(withDisk.Disks) != 1 {
		t.Fatalf("after detaching, the server's disks are %+v", withDisk.Disks)
	}
	l.must(204, "DELETE", "/images/"+extra.ID, nil, nil)

	// Insert an ISO into the running guest's CD-ROM drive and eject it.
	if xorriso, err := exec.LookPath("xorriso"); err == nil {
		src := t.TempDir()
		os.WriteFile(src+"/hello.txt", []byte("hello"), 0o644)
		iso := t.TempDir() + "/tools.iso"
		if out, err := exec.Command(xorriso, "-as", "mkisofs", "-quiet", "-V", "TOOLS", "-o", iso, src).CombinedOutput(); err != nil {
			t.Fatalf("xorriso: %v: %s", err, out)
		}
		cd := l.upload(iso, "tools", "iso", 0)
		l.must(200, "PUT", "/servers/"+b.ID+"/cdrom", map[string]string{"image": cd.ID}, nil)
		if out, _ := exec.Command("virsh", "-c", "qemu:///system", "domblklist", b.UUID).CombinedOutput(); !strings.Contains(string(out), cd.Path) {
			t.Fatalf("the live CD-ROM does not hold the ISO:\n%s", out)
		}
		l.must(200, "DELETE", "/servers/"+b.ID+"/cdrom", nil, nil)
		if out, _ := exec.Command("virsh", "-c", "qemu:///system", "domblklist", b.UUID).CombinedOutput(); strings.Contains(string(out), cd.Path) {
			t.Fatalf("the ISO is still in the drive after eject:\n%s", out)
		}
		l.must(204, "DELETE", "/images/"+cd.ID, nil, nil)
	}

	// ACPI shutdown of alpha ends with the guest powered off; beta is forced off.
	var op engine.Operation
	l.must(202, "POST", "/servers/"+a.ID+"/shutdown", map[string]int{"timeout_seconds": 120}, &op)
	l.wait(op)
	l.waitState(a.ID, engine.ServerShutoff, 10*time.Second)
	var off1 engine.Server
	l.must(200, "POST", "/servers/"+b.ID+"/stop", nil, &off1)
	l.waitState(b.ID, engine.ServerShutoff, 30*time.Second)

	// Autostart: alpha runs, the engine stops, the node loses its domains (as a
	// reboot does), and the engine brings alpha back when it starts; beta stays off.
	l.must(200, "POST", "/servers/"+a.ID+"/start", nil, nil)
	l.waitState(a.ID, engine.ServerRunning, 30*time.Second)
	l.serial(a.ID, regexp.MustCompile(`boots=2 [\s\S]*cairn-test: ready`), 3*time.Minute)
	l.close()
	if out, err := exec.Command("virsh", "-c", "qemu:///system", "destroy", a.UUID).CombinedOutput(); err != nil {
		t.Fatalf("virsh destroy: %v: %s", err, out)
	}
	l.open()
	l.waitState(a.ID, engine.ServerRunning, 2*time.Minute)
	out := l.serial(a.ID, regexp.MustCompile(`boots=3 [\s\S]*cairn-test: ready`), 3*time.Minute)
	if m := testimage.MarkerLine.FindAllStringSubmatch(out, -1); len(m) == 0 {
		t.Fatalf("no marker line after the autostart:\n%s", out)
	} else if n, _ := strconv.Atoi(m[len(m)-1][2]); n != 3 {
		t.Fatalf("alpha's disk counts %d boots after the autostart, want 3", n)
	}
	var bs engine.Server
	l.must(200, "GET", "/servers/"+b.ID, nil, &bs)
	if bs.State != engine.ServerShutoff {
		t.Fatalf("beta (no autostart) is %s after the restart, want shutoff", bs.State)
	}

	// A running server cannot be deleted; once off, it goes with its disks.
	if status, msg := l.do("DELETE", "/servers/"+a.ID+"?disks=delete", nil, nil); status != 409 {
		t.Fatalf("delete a running server: %d %s, want 409", status, msg)
	}
	l.must(200, "POST", "/servers/"+a.ID+"/stop", nil, nil)
	l.waitState(a.ID, engine.ServerShutoff, 30*time.Second)
	for _, s := range []engine.Server{a, b} {
		l.must(200, "DELETE", "/servers/"+s.ID+"?disks=delete", nil, nil)
		for _, d := range s.Disks {
			if status, _ := l.do("GET", "/images/"+d.Image, nil, nil); status != 404 {
				t.Errorf("disk %s of deleted server %s is still there (%d)", d.Image, s.Name, status)
			}
		}
	}
	if out, err := exec.Command("virsh", "-c", "qemu:///system", "dominfo", a.UUID).CombinedOutput(); err == nil {
		t.Errorf("libvirt still knows deleted server alpha:\n%s", out)
	}
	master = false
	l.must(200, "PATCH", "/images/"+base.ID, engine.ImageUpdate{Master: &master}, nil)
	l.must(204, "DELETE", "/images/"+base.ID, nil, nil)
	if _, err := os.Stat(base.Path); !os.IsNotExist(err) {
		t.Errorf("the master's file is still there: %v", err)
	}
}
