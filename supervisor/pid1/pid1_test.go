package pid1

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"unicode/utf8"
)

func TestBanner(t *testing.T) {
	password := "Xk3v9QpL2mWz8RtY4nB6cD1fG7hJ5sAe"
	var b bytes.Buffer
	Banner(&b,
		"Cairn dev — administration node",
		"Web console:  https://10.0.0.1",
		"Login:        admin / "+password+"   (generated: write it down, it is shown only now)",
	)
	out := b.String()
	lines := strings.Split(strings.Trim(out, "\n"), "\n")
	width := utf8.RuneCountInString(lines[0])
	for i, l := range lines {
		if n := utf8.RuneCountInString(l); n != width {
			t.Errorf("line %d is %d wide, the frame %d: %q", i, n, width, l)
		}
		if n := utf8.RuneCountInString(l); n > 80 {
			t.Errorf("line %d is %d wide, more than a VGA screen: %q", i, n, l)
		}
	}
	if lines[0] != lines[len(lines)-1] || !strings.HasPrefix(lines[0], "+---") {
		t.Errorf("no frame: %q", out)
	}
	if !strings.Contains(out, "| Login:        admin / "+password) {
		t.Errorf("password broken up or label misaligned:\n%s", out)
	}
	// The wrapped rest of the login line continues under the text, not the label.
	var cont string
	for i, l := range lines {
		if strings.Contains(l, password) {
			cont = lines[i+1]
		}
	}
	if !strings.HasPrefix(cont, "|               ") || strings.TrimSpace(strings.Trim(cont, "|")) == "" {
		t.Errorf("continuation line %q is not aligned under the text", cont)
	}
	if !strings.Contains(out, "Cairn dev — administration node") {
		t.Errorf("first line lost: %q", out)
	}
}

func TestSignalAction(t *testing.T) {
	for sig, want := range map[syscall.Signal]Action{
		syscall.SIGTERM: Reboot, syscall.SIGINT: Reboot,
		syscall.SIGUSR1: Poweroff, syscall.SIGUSR2: Poweroff, syscall.SIGPWR: Poweroff,
	} {
		if got, ok := signalAction(sig); !ok || got != want {
			t.Errorf("%v → %v, %v; want %v", sig, got, ok, want)
		}
	}
	if _, ok := signalAction(syscall.SIGHUP); ok {
		t.Error("SIGHUP takes the machine down")
	}
	if Poweroff.String() != "poweroff" || Reboot.String() != "reboot" || Halt.String() != "halt" {
		t.Error("action names")
	}
}

func TestRecoverCatchesPanic(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	got := make(chan any, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer Recover(logger, "engine", func(p any) { got <- p })
		var m map[string]int
		m["boom"] = 1 // a nil map write: a runtime panic, as bugs cause
	}()
	<-done
	select {
	case p := <-got:
		if !strings.Contains(fmtAny(p), "nil map") {
			t.Errorf("panic value %v", p)
		}
	default:
		t.Fatal("onPanic not called")
	}
	if !strings.Contains(logs.String(), "part=engine") || !strings.Contains(logs.String(), "pid1_test.go") {
		t.Errorf("log lacks the part or the stack: %s", logs.String())
	}

	// Without a panic nothing happens.
	func() {
		defer Recover(logger, "quiet", func(any) { t.Error("onPanic without a panic") })
	}()
}

func fmtAny(v any) string {
	if e, ok := v.(error); ok {
		return e.Error()
	}
	return ""
}

func TestConsoleDevices(t *testing.T) {
	for _, c := range []struct {
		active string
		want   []string
	}{
		{"tty0 ttyS0\n", []string{"tty1"}},     // console=tty0 console=ttyS0: the screen needs us
		{"ttyS0 tty0\n", []string{"ttyS0"}},    // the other way round
		{"tty0\n", []string{"ttyS0"}},          // no console= at all
		{"", []string{"ttyS0", "tty1"}},        // unknown: try both
		{"ttyS1\n", []string{"ttyS0", "tty1"}}, // a second serial port as console
	} {
		if got := extraConsoles(consoleDevice(c.active)); !slices.Equal(got, c.want) {
			t.Errorf("active %q: %v, want %v", c.active, got, c.want)
		}
	}
}

func TestHasKey(t *testing.T) {
	// The ACPI power button of a qemu guest: only KEY_POWER (116 = word 1, bit 52).
	if !hasKey("10000000000000 0\n", keyPower) {
		t.Error("power button not recognised")
	}
	// Every key of the first 128 but KEY_POWER.
	if hasKey("0 ffefffffffffffff fffffffffffffffe\n", keyPower) {
		t.Error("keyboard without power key recognised")
	}
	if hasKey("", keyPower) || hasKey("0", keyPower) {
		t.Error("empty bitmap recognised")
	}
}

func TestReadPowerKey(t *testing.T) {
	event := func(typ, code uint16, value int32) []byte {
		ev := make([]byte, inputEventSize)
		tail := ev[len(ev)-8:]
		binary.NativeEndian.PutUint16(tail[0:], typ)
		binary.NativeEndian.PutUint16(tail[2:], code)
		binary.NativeEndian.PutUint32(tail[4:], uint32(value))
		return ev
	}
	var in []byte
	in = append(in, event(evKey, keyPower, 1)...) // press
	in = append(in, event(0, 0, 0)...)            // EV_SYN
	in = append(in, event(evKey, keyPower, 0)...) // release
	in = append(in, event(evKey, 30, 1)...)       // KEY_A
	in = append(in, event(evKey, keyPower, 1)...) // press again
	presses := 0
	readPowerKey(bytes.NewReader(in), func() { presses++ })
	if presses != 2 {
		t.Errorf("presses = %d, want 2", presses)
	}
}

func TestParseMountinfo(t *testing.T) {
	in := `22 27 0:21 / /proc rw,relatime - proc proc rw
36 35 98:0 /mnt1 /mnt/with\040space rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue
garbage
`
	got, err := parseMountinfo(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []mountEntry{
		{target: "/proc", fstype: "proc", source: "proc"},
		{target: "/mnt/with space", fstype: "ext3", source: "/dev/root"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestModulesDepTolerant(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "lib/modules/6.1.0-test")
	if err := os.MkdirAll(filepath.Join(dir, "kernel"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The lines FIELD-NOTES warns of: a trailing space after the colon (u-root's
	// kmodule then looks for the directory itself as a module), double spaces, CRLF,
	// a blank line.
	write("modules.dep", "kernel/virtio_net.ko.xz: kernel/net_failover.ko.xz kernel/failover.ko.xz\n"+
		"kernel/net_failover.ko.xz:  kernel/failover.ko.xz \n"+
		"kernel/failover.ko.xz: \n"+
		"\n"+
		"kernel/virtio-blk.ko:\r\n"+
		"kernel/loop.ko:\n"+
		"kernel/usbcore.ko: kernel/usb-common.ko\n"+
		"kernel/uas.ko: kernel/usb-storage.ko\n")
	write("modules.builtin", "kernel/drivers/block/loop.ko\nkernel/drivers/usb/common/usb-common.ko\n")
	procModules := filepath.Join(t.TempDir(), "modules")
	if err := os.WriteFile(procModules, []byte("failover 16384 1 net_failover, Live 0x0000000000000000\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	var loaded []string
	insmod := func(path, params string) error {
		loaded = append(loaded, strings.TrimPrefix(path, dir+"/")+"["+params+"]")
		return nil
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	errs := loadModules(logger, dir, procModules,
		[]string{"virtio_net", "virtio_blk", "loop", "usbcore", "kvm_intel nested=1", "uas"}, insmod)

	want := []string{
		"kernel/net_failover.ko.xz[]", "kernel/virtio_net.ko.xz[]", // failover is loaded already
		"kernel/virtio-blk.ko[]", // loop is built in
		"kernel/usbcore.ko[]",    // usb-common is built in
	}
	if !slices.Equal(loaded, want) {
		t.Errorf("loaded %q, want %q", loaded, want)
	}
	// kvm_intel is not in the tree, uas needs usb-storage, which is not either: two
	// errors, and everything else still loaded.
	if len(errs) != 2 || !strings.Contains(errs[0].Error(), "kvm_intel") ||
		!strings.Contains(errs[1].Error(), "uas needs usb_storage") {
		t.Errorf("errors: %v", errs)
	}

	// A second pass loads nothing again.
	loaded = nil
	ix := newModuleIndex(dir)
	f, _ := os.Open(filepath.Join(dir, "modules.dep"))
	defer f.Close()
	if err := ix.parseModulesDep(f); err != nil {
		t.Fatal(err)
	}
	_ = ix.load("virtio_net", insmod)
	_ = ix.load("virtio-net", insmod)
	if len(loaded) != 3 {
		t.Errorf("loaded %q, want virtio_net and its two dependencies once", loaded)
	}
}

func TestModulesDepMissing(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	errs := loadModules(logger, t.TempDir(), "/nonexistent", []string{"btrfs"}, func(string, string) error {
		t.Error("insmod called without modules.dep")
		return nil
	})
	if len(errs) != 2 {
		t.Errorf("errors: %v", errs)
	}
}

func TestModName(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/drivers/net/virtio_net.ko.xz": "virtio_net",
		"virtio-net":                          "virtio_net",
		"kernel/fs/btrfs/btrfs.ko.zst":        "btrfs",
		"usb-storage.ko":                      "usb_storage",
		" kvm ":                               "kvm",
	} {
		if got := modName(in); got != want {
			t.Errorf("modName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNotPID1IsHarmless(t *testing.T) {
	if IsPID1() {
		t.Skip("running as PID 1")
	}
	// Shutdown only stops the services when this is not PID 1: no kill(-1), no
	// unmounting, no reboot of the host running the tests.
	stopped := false
	Shutdown(t.Context(), Poweroff, func(ctx context.Context) {
		_, ok := ctx.Deadline()
		stopped = ok
	})
	if !stopped {
		t.Error("services not stopped with a deadline")
	}
}
