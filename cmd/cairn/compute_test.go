package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cairn-os/cairn/internal/testutil"
	"github.com/cairn-os/cairn/supervisor/apiclient"
	"github.com/cairn-os/cairn/supervisor/engine"
)

// loggedIn logs a CLI in to the engine at url.
func loggedIn(t *testing.T, e *engine.Engine, url string) *cli {
	t.Helper()
	c := &cli{t: t, config: filepath.Join(t.TempDir(), "config.json")}
	if code, out, errOut := c.run(adminPassword+"\n", "login", url, "--password-stdin", "--ca-fingerprint", e.CA().Fingerprint()); code != 0 {
		t.Fatalf("login: exit %d, %s%s", code, out, errOut)
	}
	return c
}

// ok runs the CLI and fails the test unless it exits 0; it returns stdout.
func (c *cli) ok(args ...string) string {
	c.t.Helper()
	code, out, errOut := c.run("", args...)
	if code != 0 {
		c.t.Fatalf("cairn %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// jsonOf runs the CLI with -o json and decodes stdout into v.
func (c *cli) jsonOf(v any, args ...string) {
	c.t.Helper()
	out := c.ok(append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		c.t.Fatalf("cairn %s -o json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// apiClient is an API client logged in like c.
func (c *cli) apiClient() *apiclient.Client {
	c.t.Helper()
	cfg, err := loadConfig(c.config)
	if err != nil {
		c.t.Fatal(err)
	}
	return apiclient.New(cfg.URL, []byte(cfg.CAPEM), apiclient.Bearer(cfg.Token))
}

func TestImagesThroughTheCLI(t *testing.T) {
	testutil.RequireProgram(t, "qemu-img")
	e, url := testEngine(t)
	c := loggedIn(t, e, url)

	var im engine.Image
	c.jsonOf(&im, "images", "create", "base", "--size", "64M")
	if im.State != engine.ImageReady || im.VirtualSize != 64<<20 || im.Format != "qcow2" || im.Pool != 0 {
		t.Fatalf("created image %+v", im)
	}
	out := c.ok("images", "list")
	if !strings.Contains(out, im.ID) || !strings.Contains(out, "base") || !strings.Contains(out, "64.0 MiB") {
		t.Fatalf("images list:\n%s", out)
	}
	if out := c.ok("images", "show", "base"); !strings.Contains(out, im.ID) || !strings.Contains(out, "master:") {
		t.Fatalf("images show by name:\n%s", out)
	}
	if code, _, errOut := c.run("", "images", "create", "x1"); code != exitUsage || !strings.Contains(errOut, `"size"`) {
		t.Fatalf("create without --size: exit %d, %s", code, errOut)
	}
	// A size with a bad suffix is the CLI's usage error, before any request.
	if code, _, errOut := c.run("", "images", "create", "x1", "--size", "10Q"); code != exitUsage || !strings.Contains(errOut, "512M or 10G") {
		t.Fatalf("bad size: exit %d, %s", code, errOut)
	}

	var master engine.Image
	c.jsonOf(&master, "images", "master", "base")
	if !master.Master {
		t.Fatalf("images master: %+v", master)
	}
	var child engine.Image
	c.jsonOf(&child, "images", "clone", "base", "--name", "child1")
	if child.Backing != im.ID || child.Name != "child1" || child.State != engine.ImageReady {
		t.Fatalf("linked clone %+v", child)
	}
	var info engine.ImageInfo
	c.jsonOf(&info, "images", "info", "child1")
	if len(info.Chain) != 2 || info.Chain[0].BackingFile == "" {
		t.Fatalf("child's chain %+v", info.Chain)
	}
	// A master with a child cannot be deleted: the API's message, a non-zero exit.
	if code, _, errOut := c.run("", "images", "delete", "base"); code == 0 || !strings.Contains(errOut, "child1") && !strings.Contains(errOut, child.ID) {
		t.Fatalf("delete a master with a child: exit %d, %s", code, errOut)
	}

	// A full copy is an operation: the CLI waits for it and prints how it ended.
	code, out, errOut := c.run("", "images", "clone", "child1", "--full", "--name", "copy1")
	if code != 0 || !strings.Contains(out, "succeeded") || !strings.Contains(out, "result:") {
		t.Fatalf("full copy: exit %d\n%s%s", code, out, errOut)
	}
	var copied engine.Image
	c.jsonOf(&copied, "images", "show", "copy1")
	if copied.State != engine.ImageReady || copied.Backing != "" && copied.Backing != im.ID {
		t.Fatalf("copy %+v", copied)
	}

	// A backup, waited for; then listed by image name; -o json of an operation.
	var op engine.Operation
	c.jsonOf(&op, "images", "backup", "copy1")
	if op.State != engine.OpSucceeded || op.Kind != "backup" || !strings.HasPrefix(op.Result, "b-") {
		t.Fatalf("backup operation %+v", op)
	}
	if out := c.ok("backups", "list", "--image", "copy1"); !strings.Contains(out, op.Result) {
		t.Fatalf("backups list --image:\n%s", out)
	}
	if out := c.ok("operations", "list"); !strings.Contains(out, op.ID) || !strings.Contains(out, "succeeded") {
		t.Fatalf("operations list:\n%s", out)
	}
	if out := c.ok("operations", "wait", op.ID); !strings.Contains(out, "succeeded") {
		t.Fatalf("operations wait of an ended operation:\n%s", out)
	}
	// --no-wait prints the operation's ID and nothing else on stdout.
	out = c.ok("backups", "restore", op.Result, "--as", "restored1", "--no-wait")
	opID := strings.TrimSpace(out)
	if !strings.HasPrefix(opID, "op-") {
		t.Fatalf("--no-wait printed %q", out)
	}
	if out := c.ok("operations", "wait", opID); !strings.Contains(out, "succeeded") {
		t.Fatalf("operations wait:\n%s", out)
	}
	if out := c.ok("images", "show", "restored1"); !strings.Contains(out, "ready") {
		t.Fatalf("restored image:\n%s", out)
	}
	// A failing operation exits non-zero with the engine's reason.
	if code, _, errOut := c.run("", "images", "convert", "copy1", "iso"); code == 0 || !strings.Contains(errOut, "ISO") {
		t.Fatalf("convert to iso: exit %d, %s", code, errOut)
	}

	for _, id := range []string{"child1", "copy1", "restored1"} {
		if out := c.ok("images", "delete", id); !strings.Contains(out, "Deleted image "+id) {
			t.Fatalf("delete %s: %s", id, out)
		}
	}
	if out := c.ok("backups", "delete", op.Result); !strings.Contains(out, "Deleted backup") {
		t.Fatalf("backups delete: %s", out)
	}
	c.ok("images", "unmaster", "base")
	c.ok("images", "delete", "base")
	var left struct{ Items []engine.Image }
	c.jsonOf(&left, "images", "list")
	if len(left.Items) != 0 {
		t.Fatalf("images left after deleting all: %+v", left.Items)
	}
	if code, _, _ := c.run("", "images", "show", "base"); code != exitNotFound {
		t.Fatalf("show a deleted image: exit %d, want %d", code, exitNotFound)
	}
}

func TestPoolsListShowsPool0WithUsage(t *testing.T) {
	testutil.RequireProgram(t, "qemu-img")
	e, url := testEngine(t)
	c := loggedIn(t, e, url)
	// Some bytes in pool 0 that belong to the admin.
	src := writeQcow2(t, 1<<20)
	c.ok("images", "upload", src, "--name", "data")

	out := c.ok("pools", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[1], "0 ") || !strings.Contains(lines[1], "pool0") || !strings.Contains(lines[1], "ready") {
		t.Fatalf("pools list:\n%s", out)
	}
	if !strings.Contains(lines[1], "admin ") || strings.Contains(lines[1], "admin 0 B") {
		t.Fatalf("pools list does not show the admin's bytes:\n%s", out)
	}
	var pools struct{ Items []engine.Pool }
	c.jsonOf(&pools, "pools", "list")
	p := pools.Items[0]
	if p.ID != 0 || p.TotalBytes == 0 || p.FreeBytes == 0 || p.TotalBytes < p.FreeBytes || len(p.ImageBytesByOwner) != 1 {
		t.Fatalf("pool 0: %+v", p)
	}
	if out := c.ok("pools", "show", "pool0"); !strings.Contains(out, "driver:") || !strings.Contains(out, "dir") {
		t.Fatalf("pools show by name:\n%s", out)
	}
	// A dir pool has no snapshots: the API says so.
	if code, _, errOut := c.run("", "pools", "snapshot", "0"); code == 0 || errOut == "" {
		t.Fatalf("snapshot a dir pool: exit %d", code)
	}
	// Formatting a device needs the device repeated; without it nothing is sent.
	code, _, errOut := c.run("", "pools", "create", "fast", "--driver", "btrfs", "--device", "/dev/nothere")
	if code != exitUsage || !strings.Contains(errOut, "everything on /dev/nothere is erased") || !strings.Contains(errOut, "--yes-format-device /dev/nothere") {
		t.Fatalf("pool on a device without confirmation: exit %d\n%s", code, errOut)
	}
	if code, _, errOut := c.run("", "pools", "rollback", "0", "snap1"); code != exitUsage || !strings.Contains(errOut, "--confirm pool0") {
		t.Fatalf("rollback without --confirm: exit %d\n%s", code, errOut)
	}
	dir := t.TempDir()
	var made engine.Pool
	c.jsonOf(&made, "pools", "create", "extra", "--driver", "dir", "--path", dir)
	if made.ID != 1 || made.State != engine.PoolReady {
		t.Fatalf("created pool %+v", made)
	}
	if out := c.ok("pools", "delete", "extra"); !strings.Contains(out, "Deleted pool 1") {
		t.Fatalf("pools delete: %s", out)
	}
}

func TestServersThroughTheCLI(t *testing.T) {
	testutil.RequireProgram(t, "qemu-img")
	e, url := testEngine(t)
	c := loggedIn(t, e, url)
	c.ok("images", "create", "disk1", "--size", "64M")

	// Bad input: the API's 4xx message and a non-zero exit.
	code, _, errOut := c.run("", "servers", "create", "web1", "--vcpus", "0", "--disk", "disk1")
	if code != exitError || !strings.Contains(errOut, "vcpus must be between 1 and 64") {
		t.Fatalf("create with 0 vcpus: exit %d, %s", code, errOut)
	}
	code, _, errOut = c.run("", "servers", "create", "web1", "--disk", "disk1:floppy")
	if code != exitError || !strings.Contains(errOut, `disk bus "floppy"`) {
		t.Fatalf("create with a bad bus: exit %d, %s", code, errOut)
	}
	code, _, errOut = c.run("", "servers", "create", "web1", "--disk", "nothere")
	if code == 0 || !strings.Contains(errOut, `"nothere"`) {
		t.Fatalf("create with a missing image: exit %d, %s", code, errOut)
	}
	if code, _, _ := c.run("", "servers", "create", "web1", "--memory", "1.5K"); code != exitUsage {
		t.Fatalf("memory that is not whole MiB: exit %d, want usage", code)
	}

	var s engine.Server
	c.jsonOf(&s, "servers", "create", "web1", "--vcpus", "2", "--memory", "512M", "--disk", "disk1:scsi", "--boot", "disk,network", "--autostart")
	if s.VCPUs != 2 || s.MemoryMiB != 512 || len(s.Disks) != 1 || s.Disks[0].Bus != "scsi" || !s.Autostart || len(s.Boot) != 2 {
		t.Fatalf("created server %+v", s)
	}
	if out := c.ok("servers", "list"); !strings.Contains(out, "web1") || !strings.Contains(out, "512.0 MiB") || !strings.Contains(out, "shutoff") {
		t.Fatalf("servers list:\n%s", out)
	}
	c.jsonOf(&s, "servers", "update", "web1", "--memory", "1G", "--autostart=false")
	if s.MemoryMiB != 1024 || s.Autostart {
		t.Fatalf("updated server %+v", s)
	}
	if code, _, _ := c.run("", "servers", "update", "web1"); code != exitUsage {
		t.Fatalf("update without flags: exit %d", code)
	}

	// This engine has no hypervisor: starting says so.
	code, _, errOut = c.run("", "servers", "start", "web1")
	if code != exitError || !strings.Contains(errOut, "this engine has no hypervisor connection") {
		t.Fatalf("start without a hypervisor: exit %d, %s", code, errOut)
	}
	// Shutting down a server that is off is refused by the engine.
	if code, _, errOut := c.run("", "servers", "shutdown", "web1"); code == 0 || !strings.Contains(errOut, "shutoff") {
		t.Fatalf("shutdown of a server that is off: exit %d, %s", code, errOut)
	}
	// The console of a server that never ran: the API's refusal of the websocket.
	if code, _, errOut := c.run("", "servers", "console", "web1"); code != exitError || !strings.Contains(errOut, "it has never run") {
		t.Fatalf("console of a server that never ran: exit %d, %s", code, errOut)
	}

	out := c.ok("servers", "delete", "web1")
	if !strings.Contains(out, "Deleted server web1") || !strings.Contains(out, "Kept its disk images: ") {
		t.Fatalf("servers delete:\n%s", out)
	}
	c.ok("images", "show", "disk1")
	c.ok("servers", "create", "web2", "--disk", "disk1")
	var del struct {
		Deleted string   `json:"deleted"`
		Kept    []string `json:"kept"`
	}
	c.jsonOf(&del, "servers", "delete", "web2", "--delete-disks")
	if del.Deleted == "" || len(del.Kept) != 0 {
		t.Fatalf("delete --delete-disks: %+v", del)
	}
	if code, _, _ := c.run("", "images", "show", "disk1"); code != exitNotFound {
		t.Fatalf("the disk is still there after --delete-disks: exit %d", code)
	}
}

func TestSettingsAndUsage(t *testing.T) {
	e, url := testEngine(t)
	c := loggedIn(t, e, url)
	var st engine.Settings
	c.jsonOf(&st, "settings", "set", "--placement", "pack", "--cpu-overcommit", "8", "--shutdown-timeout", "2m")
	if st.Placement != "pack" || st.CPUOvercommit != 8 || st.ShutdownTimeoutSeconds != 120 || st.MemoryOvercommit != 1 {
		t.Fatalf("settings after set: %+v", st)
	}
	if out := c.ok("settings", "show"); !strings.Contains(out, "pack") || !strings.Contains(out, "120s") {
		t.Fatalf("settings show:\n%s", out)
	}
	if code, _, errOut := c.run("", "settings", "set", "--placement", "random"); code != exitError || !strings.Contains(errOut, "placement must be disperse or pack") {
		t.Fatalf("bad placement: exit %d, %s", code, errOut)
	}
	var us engine.Usage
	c.jsonOf(&us, "usage")
	admin := mustUser(t, e)
	if us.User != admin.ID || us.Images != 0 {
		t.Fatalf("usage %+v", us)
	}
	if out := c.ok("usage"); !strings.Contains(out, "admin ("+admin.ID+")") {
		t.Fatalf("usage:\n%s", out)
	}
	c.jsonOf(&us, "usage", "admin")
	if us.User != admin.ID {
		t.Fatalf("usage admin %+v", us)
	}
}

// writeQcow2 makes a qcow2 file of about n bytes of random data.
func writeQcow2(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	raw := filepath.Join(dir, "src.raw")
	data := make([]byte, n)
	rand.Read(data)
	if err := os.WriteFile(raw, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "disk.qcow2")
	if b, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, out).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v\n%s", err, b)
	}
	return out
}

type qemuInfo struct {
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtual-size"`
}

func qemuImgInfo(t *testing.T, path string) qemuInfo {
	t.Helper()
	b, err := exec.Command("qemu-img", "info", "--output", "json", path).Output()
	if err != nil {
		t.Fatalf("qemu-img info %s: %v", path, err)
	}
	var qi qemuInfo
	if err := json.Unmarshal(b, &qi); err != nil {
		t.Fatal(err)
	}
	return qi
}

// cuttingProxy relays TCP connections to target; the first time a connection has
// carried more than cutAfter bytes towards the target, it cuts it, both ways.
type cuttingProxy struct {
	ln       net.Listener
	target   string
	cutAfter int64
	cuts     atomic.Int32
	armed    atomic.Bool
	wg       sync.WaitGroup

	mu    sync.Mutex
	conns []net.Conn
}

// track remembers a connection to close at the end.
func (p *cuttingProxy) track(c net.Conn) {
	p.mu.Lock()
	p.conns = append(p.conns, c)
	p.mu.Unlock()
}

func newCuttingProxy(t *testing.T, target string, cutAfter int64) *cuttingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cuttingProxy{ln: ln, target: target, cutAfter: cutAfter}
	p.armed.Store(true)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.relay(conn)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		// The clients keep idle connections open: close them so the relays end.
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *cuttingProxy) url() string { return "https://" + p.ln.Addr().String() }

func (p *cuttingProxy) relay(client net.Conn) {
	defer client.Close()
	p.track(client)
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer server.Close()
	p.track(server)
	done := make(chan struct{}, 2)
	go func() {
		io.Copy(client, server)
		done <- struct{}{}
	}()
	go func() {
		buf := make([]byte, 32<<10)
		var sent int64
		for {
			n, err := client.Read(buf)
			if n > 0 {
				if p.armed.Load() && sent+int64(n) > p.cutAfter && p.armed.CompareAndSwap(true, false) {
					// Pass on what fits under the limit, then drop the connection
					// in the middle of the request.
					server.Write(buf[:p.cutAfter-sent])
					p.cuts.Add(1)
					break
				}
				if _, err := server.Write(buf[:n]); err != nil {
					break
				}
				sent += int64(n)
			}
			if err != nil {
				break
			}
		}
		done <- struct{}{}
	}()
	<-done
}

func sameBytes(t *testing.T, a, b string) bool {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(x, y)
}

func TestUploadResumesAfterTheConnectionIsCut(t *testing.T) {
	testutil.RequireProgram(t, "qemu-img")
	e, url := testEngine(t)
	proxy := newCuttingProxy(t, strings.TrimPrefix(url, "https://"), 1536<<10)
	c := loggedIn(t, e, proxy.url())
	src := writeQcow2(t, 3<<20)

	code, out, errOut := c.run("", "images", "upload", src, "--chunk-size", "1M", "-o", "json")
	if code != 0 {
		t.Fatalf("upload: exit %d\n%s\n%s", code, out, errOut)
	}
	t.Logf("stderr of the upload:\n%s", errOut)
	if proxy.cuts.Load() != 1 {
		t.Fatalf("the proxy cut %d connections; the test did not interrupt the upload", proxy.cuts.Load())
	}
	if !strings.Contains(errOut, "Upload interrupted") || !strings.Contains(errOut, "resuming") {
		t.Fatalf("stderr does not tell of the interruption:\n%s", errOut)
	}
	var im engine.Image
	if err := json.Unmarshal([]byte(out), &im); err != nil {
		t.Fatalf("upload -o json: %v\n%s", err, out)
	}
	if im.State != engine.ImageReady || im.Name != "disk" || im.Format != "qcow2" {
		t.Fatalf("uploaded image %+v", im)
	}
	want, got := qemuImgInfo(t, src), qemuImgInfo(t, im.Path)
	if got != want {
		t.Fatalf("qemu-img info of the upload %+v, of the source %+v", got, want)
	}
	if !sameBytes(t, src, im.Path) {
		t.Fatal("the uploaded file differs from the source")
	}
}

func TestUploadResumeFlag(t *testing.T) {
	testutil.RequireProgram(t, "qemu-img")
	e, url := testEngine(t)
	c := loggedIn(t, e, url)
	src := writeQcow2(t, 2<<20)
	data, _ := os.ReadFile(src)
	ctx := context.Background()

	// An upload begun earlier, by a CLI that was killed after 700,001 bytes.
	api := c.apiClient()
	im, err := api.CreateImage(ctx, engine.ImageRequest{Name: "half", Format: "qcow2", Size: int64(len(data)), Upload: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.UploadChunk(ctx, im.ID, 0, bytes.NewReader(data), 700001); err != nil {
		t.Fatal(err)
	}
	if out := c.ok("images", "show", im.ID); !strings.Contains(out, "uploading") || !strings.Contains(out, "700001 of") {
		t.Fatalf("show of a half upload:\n%s", out)
	}
	// Another file than the one begun is refused by its size.
	other := writeQcow2(t, 1<<20)
	if code, _, errOut := c.run("", "images", "upload", "--resume", im.ID, other); code == 0 || !strings.Contains(errOut, "is it the same file?") {
		t.Fatalf("resume with another file: exit %d, %s", code, errOut)
	}
	code, out, errOut := c.run("", "images", "upload", "--resume", im.ID, src)
	if code != 0 || !strings.Contains(errOut, "Resuming the upload") {
		t.Fatalf("resume: exit %d\n%s%s", code, out, errOut)
	}
	var done engine.Image
	c.jsonOf(&done, "images", "show", "half")
	if done.State != engine.ImageReady || !sameBytes(t, src, done.Path) {
		t.Fatalf("resumed image %+v (same bytes: %v)", done, sameBytes(t, src, done.Path))
	}

	// A file that is not what its name says is refused after the last byte, with
	// the engine's reason, and nothing is left of it.
	bogus := filepath.Join(t.TempDir(), "bogus.qcow2")
	os.WriteFile(bogus, bytes.Repeat([]byte{0}, 1<<20), 0o644)
	code, _, errOut = c.run("", "images", "upload", bogus)
	if code != exitError || !strings.Contains(errOut, "declared qcow2 but is a raw image") {
		t.Fatalf("upload of a raw file named .qcow2: exit %d, %s", code, errOut)
	}
	if code, _, _ := c.run("", "images", "show", "bogus"); code != exitNotFound {
		t.Fatalf("the refused upload is still there: exit %d", code)
	}
	if code, _, errOut := c.run("", "images", "upload", filepath.Join(t.TempDir(), "x.bin")); code == 0 || !strings.Contains(errOut, "no such file") {
		t.Fatalf("upload of a missing file: exit %d, %s", code, errOut)
	}
	unknown := filepath.Join(t.TempDir(), "disk.bin")
	os.WriteFile(unknown, []byte("data"), 0o644)
	if code, _, errOut := c.run("", "images", "upload", unknown); code != exitUsage || !strings.Contains(errOut, "--format") {
		t.Fatalf("upload of a file of unknown format: exit %d, %s", code, errOut)
	}
}

func TestDownloadResumes(t *testing.T) {
	testutil.RequireProgram(t, "qemu-img")
	e, url := testEngine(t)
	c := loggedIn(t, e, url)
	src := writeQcow2(t, 2<<20)
	c.ok("images", "upload", src, "--name", "dl")

	dir := t.TempDir()
	whole := filepath.Join(dir, "whole.qcow2")
	if out := c.ok("images", "download", "dl", whole); !strings.Contains(out, "Downloaded image dl") {
		t.Fatalf("download:\n%s", out)
	}
	if !sameBytes(t, src, whole) {
		t.Fatal("the downloaded file differs from the uploaded one")
	}

	// A partial file, as an interrupted download leaves it, is completed.
	data, _ := os.ReadFile(src)
	part := filepath.Join(dir, "part.qcow2")
	os.WriteFile(part, data[:len(data)/3], 0o644)
	code, out, errOut := c.run("", "images", "download", "dl", part)
	if code != 0 || !strings.Contains(errOut, "from byte "+strconv.Itoa(len(data)/3)) {
		t.Fatalf("resumed download: exit %d\n%s%s", code, out, errOut)
	}
	if !sameBytes(t, src, part) {
		t.Fatal("the resumed download differs from the image")
	}
	// A complete file stays as it is.
	if code, _, errOut := c.run("", "images", "download", "dl", part); code != 0 || !sameBytes(t, src, part) {
		t.Fatalf("download onto a complete file: exit %d, %s", code, errOut)
	}
	// A larger file is not a part of the image: refused, and left alone.
	big := filepath.Join(dir, "big.qcow2")
	os.WriteFile(big, append(append([]byte{}, data...), 1, 2, 3), 0o644)
	if code, _, errOut := c.run("", "images", "download", "dl", big); code == 0 || !strings.Contains(errOut, "not a part of it") {
		t.Fatalf("download onto a larger file: exit %d, %s", code, errOut)
	}
	if fi, _ := os.Stat(big); fi.Size() != int64(len(data)+3) {
		t.Fatalf("the larger file was changed: %d bytes", fi.Size())
	}
	// Without FILE the image's name is used, in the current directory.
	wd, _ := os.Getwd()
	t.Cleanup(func() { os.Chdir(wd) })
	os.Chdir(dir)
	c.ok("images", "download", "dl")
	if !sameBytes(t, src, filepath.Join(dir, "dl.qcow2")) {
		t.Fatal("download without FILE did not write dl.qcow2")
	}
}
