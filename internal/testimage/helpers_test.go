package testimage

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cairn-os/cairn/internal/testutil"
	"github.com/cairn-os/cairn/supervisor/hostcmd"
)

// bootTimeout bounds one boot under TCG; boots take seconds, a loaded CI machine more.
const bootTimeout = 3 * time.Minute

// requireBuildTools skips a test when a program the build needs is missing.
func requireBuildTools(t testing.TB) {
	t.Helper()
	for _, p := range []string{"mkfs.vfat", "syslinux", "mcopy", "mtype", "qemu-img", "qemu-io", "dpkg-deb", "dpkg-query"} {
		testutil.RequireProgram(t, p)
	}
}

// testImage builds (or takes from the cache) the qcow2 and the raw image.
func testImage(t testing.TB) (qcow2, raw string) {
	t.Helper()
	requireBuildTools(t)
	repo, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if qcow2, err = Build(ctx, repo); err != nil {
		t.Fatal(err)
	}
	if raw, err = BuildRaw(ctx, repo); err != nil {
		t.Fatal(err)
	}
	return qcow2, raw
}

// copyFile copies the image src to a new file dst.
func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// vm is one qemu process booting a test disk.
type vm struct {
	serial  string // the console's output, logged by qemu
	console string // the console's socket, to type into
	qmp     string
	proc    *hostcmd.Process
	exited  chan error
	start   time.Time
}

// diskArgs returns qemu's options that attach path (raw or qcow2) on bus.
func diskArgs(bus, path, format string) []string {
	drive := "file=" + path + ",format=" + format
	switch bus {
	case "virtio":
		return []string{"-drive", drive + ",if=virtio"}
	case "scsi":
		return []string{"-device", "virtio-scsi-pci,id=scsi0",
			"-drive", drive + ",if=none,id=disk0", "-device", "scsi-hd,drive=disk0,bus=scsi0.0"}
	case "ide":
		return []string{"-drive", drive + ",if=ide"}
	}
	panic("unknown bus " + bus)
}

// bootVM starts qemu (TCG, machine pc) with the disk and extra options, its serial
// console in a file and QMP on a socket, and kills it in t.Cleanup if it still runs.
func bootVM(t testing.TB, bus, disk, format string, extra ...string) *vm {
	t.Helper()
	qemu := testutil.RequireProgram(t, "qemu-system-x86_64")
	// qemu's socket path must fit in sun_path: t.TempDir() can be long.
	dir, err := os.MkdirTemp("", "cairn-ti-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	v := &vm{serial: filepath.Join(dir, "serial.log"), console: filepath.Join(dir, "console.sock"),
		qmp: filepath.Join(dir, "qmp.sock"), exited: make(chan error, 1)}
	// The serial console is a socket to type into; qemu logs all its output to a file,
	// whether anyone is connected or not.
	args := []string{"-accel", "tcg", "-machine", "pc", "-m", "256", "-display", "none",
		"-chardev", "socket,id=console,path=" + v.console + ",server=on,wait=off,logfile=" + v.serial,
		"-serial", "chardev:console", "-monitor", "none", "-no-reboot",
		"-qmp", "unix:" + v.qmp + ",server=on,wait=off", "-nic", "none"}
	args = append(append(args, diskArgs(bus, disk, format)...), extra...)
	cmd := exec.Command(qemu, args...)
	out := &lockedTail{}
	cmd.Stdout, cmd.Stderr = out, out
	v.start = time.Now()
	if v.proc, err = hostcmd.Start(cmd); err != nil {
		t.Fatalf("start qemu: %v", err)
	}
	go func() {
		err := v.proc.Wait()
		if err != nil {
			err = fmt.Errorf("%w: %s", err, out.String())
		}
		v.exited <- err
	}()
	t.Cleanup(func() {
		select {
		case <-v.exited:
		default:
			cmd.Process.Kill()
			<-v.exited
		}
	})
	return v
}

// wait waits for the next serial line matching re after byte offset from.
func (v *vm) wait(t testing.TB, from int, re *regexp.Regexp) ([]string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	done := make(chan struct{})
	defer close(done)
	go func() {
		// A qemu that exits early ends the wait at once.
		select {
		case err := <-v.exited:
			v.exited <- err
			time.Sleep(500 * time.Millisecond) // the last serial output
			cancel()
		case <-done:
		}
	}()
	m, end, err := WaitForLine(ctx, v.serial, from, re)
	if err != nil {
		t.Fatal(err)
	}
	return m, end
}

// typeLine types line and Enter on the serial console.
func (v *vm) typeLine(t testing.TB, line string) {
	t.Helper()
	c, err := net.DialTimeout("unix", v.console, 10*time.Second)
	if err != nil {
		t.Fatalf("serial console: %v", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(line + "\r")); err != nil {
		t.Fatalf("serial console: %v", err)
	}
	// Stay connected a moment: qemu drops what the guest echoes once nobody listens,
	// but the log keeps it either way.
	time.Sleep(200 * time.Millisecond)
}

// powerDown presses the ACPI power button through QMP.
func (v *vm) powerDown(t testing.TB) {
	t.Helper()
	c, err := net.DialTimeout("unix", v.qmp, 10*time.Second)
	if err != nil {
		t.Fatalf("qmp: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	if _, err := r.ReadBytes('\n'); err != nil { // the greeting
		t.Fatalf("qmp greeting: %v", err)
	}
	for _, cmd := range []string{"qmp_capabilities", "system_powerdown"} {
		if err := json.NewEncoder(c).Encode(map[string]string{"execute": cmd}); err != nil {
			t.Fatalf("qmp %s: %v", cmd, err)
		}
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				t.Fatalf("qmp %s: %v", cmd, err)
			}
			var reply struct {
				Return json.RawMessage `json:"return"`
				Error  *struct{ Desc string }
			}
			if err := json.Unmarshal(line, &reply); err != nil {
				t.Fatalf("qmp %s: %v: %s", cmd, err, line)
			}
			if reply.Error != nil {
				t.Fatalf("qmp %s: %s", cmd, reply.Error.Desc)
			}
			if reply.Return != nil {
				break
			}
		}
	}
}

// waitExit waits for qemu to exit, and fails when it does not or fails.
func (v *vm) waitExit(t testing.TB) {
	t.Helper()
	select {
	case err := <-v.exited:
		v.exited <- err
		if err != nil {
			t.Fatalf("qemu: %v", err)
		}
	case <-time.After(bootTimeout):
		t.Fatalf("qemu still runs %s after the power button; serial log:\n%s", bootTimeout, readTail(v.serial))
	}
}

func readTail(path string) string {
	b, _ := os.ReadFile(path)
	return tail(b, 2000)
}

// lockedTail keeps the last few KiB a process wrote.
type lockedTail struct {
	mu  sync.Mutex
	buf []byte
}

func (l *lockedTail) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	if len(l.buf) > 4096 {
		l.buf = l.buf[len(l.buf)-4096:]
	}
	return len(p), nil
}

func (l *lockedTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.buf)
}

// bootLine is a parsed MarkerLine.
type bootLine struct {
	marker string
	boots  int
	host   string
}

func parseBootLine(t testing.TB, m []string) bootLine {
	t.Helper()
	n, err := strconv.Atoi(m[2])
	if err != nil {
		t.Fatalf("boot count %q: %v", m[2], err)
	}
	return bootLine{marker: m[1], boots: n, host: m[3]}
}
