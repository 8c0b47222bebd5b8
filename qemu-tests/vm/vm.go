// Package vm boots qemu guests for Cairn's end-to-end tests, `make run` and the
// benchmarks: the admin ISO under SeaBIOS or OVMF, diskless compute nodes that
// PXE-boot over a private LAN (a Hub on a unix socket), and a small Debian kernel +
// busybox baseline. Each guest keeps its serial console in a log file that tests wait
// on, takes commands over QMP, and never touches the host's network: guests reach the
// host only through qemu user networking with ports forwarded on 127.0.0.1.
package vm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Firmware is what the guest boots with.
type Firmware string

// The firmwares a guest can boot with.
const (
	BIOS Firmware = "bios" // SeaBIOS, qemu's default
	UEFI Firmware = "uefi" // OVMF from Debian's ovmf package
)

// OVMF's code and variable-store templates (Debian's ovmf package, 4 MiB builds).
var (
	OVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	OVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// BootDevice names a class of device in a guest's boot order.
type BootDevice string

// The devices a guest can boot from.
const (
	BootCDROM   BootDevice = "cdrom"
	BootUSB     BootDevice = "usb"
	BootNetwork BootDevice = "net"
	BootDisk    BootDevice = "disk"
)

// UserNet is qemu user networking (slirp): the guest gets an address by DHCP from
// qemu and reaches the host only through HostFwd rules.
type UserNet struct {
	// HostFwd are qemu hostfwd rules; the host side must be 127.0.0.1, e.g.
	// "tcp:127.0.0.1:8443-:443".
	HostFwd []string
	// Net is the guest-side network; empty means 192.168.76.0/24, chosen so that it
	// does not overlap Cairn's LAN (10.0.0.0/16) or its user networks (10.0.0.0/8).
	Net string
}

// NIC is one network card of a guest: either on qemu user networking or on a Hub.
type NIC struct {
	// MAC is the card's address, e.g. "52:54:00:00:01:01".
	MAC string
	// User puts the card on qemu user networking.
	User *UserNet
	// Hub is the unix socket of a Hub to plug the card into.
	Hub string
	// ROMFile replaces the card's option ROM when not nil. An empty string removes it,
	// so that OVMF uses its own PXE client instead of qemu's iPXE ROM.
	ROMFile *string
	// Model is the qemu device; empty means virtio-net-pci.
	Model string
}

// VM is one qemu guest. Fill in the fields, then Start it.
type VM struct {
	// Name names the guest in logs and in qemu's process title.
	Name string
	// Memory is the guest's RAM in MiB; CPUs its virtual CPUs.
	Memory int
	CPUs   int
	// Firmware is BIOS (the default) or UEFI.
	Firmware Firmware
	// Machine is the qemu machine type; empty means q35.
	Machine string
	// Accel is "kvm" or "tcg"; empty means Accel().
	Accel string
	// CDROM is an ISO image attached as a CD-ROM drive.
	CDROM string
	// USB is a raw image attached as a USB stick.
	USB string
	// Kernel, Initrd and Append boot a kernel directly instead of firmware boot.
	Kernel, Initrd, Append string
	// Disks are disk images attached as virtio disks, in order (vda, vdb, …): qcow2
	// when the name ends in .qcow2, raw otherwise.
	Disks []string
	// NICs are the guest's network cards. A guest without NICs has none.
	NICs []NIC
	// Boot is the boot order; the first NIC is the one that network boot uses.
	Boot []BootDevice
	// NoReboot makes a reboot inside the guest end qemu instead (-no-reboot).
	NoReboot bool
	// DebugSerial adds a second serial port (ttyS1 in the guest) on a unix socket,
	// for DebugShell.
	DebugSerial bool
	// Workdir holds the guest's logs, sockets and firmware variables. It is created.
	Workdir string
	// Extra are more qemu arguments, appended last.
	Extra []string
	// Logger receives the guest's life events; nil means none.
	Logger *slog.Logger

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{}
	waitErr  error
	sockDir  string
	console  *serialConn
	debug    *serialConn
	stderr   *os.File
	started  time.Time
	accelUse string
}

// TCGCPU is the CPU model of guests under TCG: qemu's default without AMD-V.
const TCGCPU = "qemu64,-svm"

// Paths of the files a guest keeps in its Workdir.
const (
	serialLog = "serial.log"
	debugLog  = "debug.log"
	qemuLog   = "qemu.log"
)

// maxSocketPath is the room in sockaddr_un for a socket's path.
const maxSocketPath = 108

// SerialPath returns the log of the guest's first serial port (the console).
func (v *VM) SerialPath() string { return filepath.Join(v.Workdir, serialLog) }

// DebugLogPath returns the log of the guest's second serial port, if it has one.
func (v *VM) DebugLogPath() string { return filepath.Join(v.Workdir, debugLog) }

// QEMULogPath returns the file with qemu's command line and its own messages.
func (v *VM) QEMULogPath() string { return filepath.Join(v.Workdir, qemuLog) }

// Logs returns the guest's log files that exist, for a failed test to point at.
func (v *VM) Logs() []string {
	var out []string
	m, _ := filepath.Glob(filepath.Join(v.Workdir, "*.log"))
	for _, p := range m {
		if fi, err := os.Stat(p); err == nil && fi.Size() > 0 {
			out = append(out, p)
		}
	}
	return out
}

func (v *VM) logger() *slog.Logger {
	if v.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return v.Logger.With("vm", v.Name)
}

func (v *VM) socket(name string) string { return filepath.Join(v.sockDir, name) }

// Args returns qemu's command line for the guest (without the program name). Start
// calls it; it is exported so that tests and people can see what would run.
func (v *VM) Args() ([]string, error) {
	if v.Workdir == "" {
		return nil, errors.New("vm: no Workdir")
	}
	if v.sockDir == "" {
		v.sockDir = v.Workdir
	}
	accel := v.Accel
	if accel == "" {
		accel = Accel()
	}
	machine := v.Machine
	if machine == "" {
		machine = "q35"
	}
	mem, cpus := v.Memory, v.CPUs
	if mem == 0 {
		mem = 512
	}
	if cpus == 0 {
		cpus = 1
	}
	a := []string{
		"-name", v.Name,
		"-nodefaults", "-no-user-config",
		"-accel", accel,
		// graphics=off makes SeaBIOS and iPXE write to the serial port.
		"-machine", machine + ",graphics=off",
		"-m", strconv.Itoa(mem), "-smp", strconv.Itoa(cpus),
		"-display", "none", "-device", "VGA",
		// Without an entropy source a TCG guest's DHCP code can wait minutes for
		// the kernel's random pool (see FIELD-NOTES).
		"-object", "rng-random,id=rng0,filename=/dev/urandom", "-device", "virtio-rng-pci,rng=rng0",
		"-chardev", "socket,id=ser0,path=" + v.socket("console.sock") + ",server=on,wait=off,logfile=" + v.SerialPath() + ",logappend=off",
		"-serial", "chardev:ser0",
		"-qmp", "unix:" + v.socket("qmp.sock") + ",server=on,wait=off",
	}
	if accel == KVM {
		a = append(a, "-cpu", "host")
	} else {
		// TCG's default CPU offers AMD-V (svm): a guest's kernel then loads
		// kvm_amd and its own guests run under KVM on TCG's emulation of it, which
		// works for minutes and then locks a CPU up (soft lockups in
		// kvm_irq_delivery_to_apic, the nested guest and heartbeats stop; see
		// the README's Tests). Without svm a Cairn node finds no usable /dev/kvm and runs
		// its servers under TCG, its fallback for such hosts.
		a = append(a, "-cpu", TCGCPU)
	}
	if v.DebugSerial {
		a = append(a,
			"-chardev", "socket,id=ser1,path="+v.socket("debug.sock")+",server=on,wait=off,logfile="+v.DebugLogPath()+",logappend=off",
			"-serial", "chardev:ser1")
	}
	if v.NoReboot {
		a = append(a, "-no-reboot")
	}
	switch v.Firmware {
	case BIOS, "":
	case UEFI:
		a = append(a,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+OVMFCode,
			"-drive", "if=pflash,format=raw,unit=1,file="+filepath.Join(v.Workdir, "OVMF_VARS.fd"))
	default:
		return nil, fmt.Errorf("vm %s: firmware %q is neither bios nor uefi", v.Name, v.Firmware)
	}

	bootIndex := map[BootDevice]int{}
	for i, d := range v.Boot {
		bootIndex[d] = i + 1
	}
	withBoot := func(dev string, d BootDevice) string {
		if n, ok := bootIndex[d]; ok {
			delete(bootIndex, d) // only the first device of a class
			return dev + ",bootindex=" + strconv.Itoa(n)
		}
		return dev
	}

	if v.Kernel != "" {
		a = append(a, "-kernel", v.Kernel)
		if v.Initrd != "" {
			a = append(a, "-initrd", v.Initrd)
		}
		if v.Append != "" {
			a = append(a, "-append", v.Append)
		}
	}
	if v.CDROM != "" {
		a = append(a,
			"-drive", "if=none,id=cd0,media=cdrom,readonly=on,format=raw,file="+v.CDROM,
			"-device", withBoot("ide-cd,drive=cd0", BootCDROM))
	}
	if v.USB != "" {
		a = append(a,
			"-device", "qemu-xhci,id=xhci",
			"-drive", "if=none,id=usb0,format=raw,file="+v.USB,
			"-device", withBoot("usb-storage,bus=xhci.0,drive=usb0", BootUSB))
	}
	for i, d := range v.Disks {
		format := "raw"
		if strings.HasSuffix(d, ".qcow2") {
			format = "qcow2"
		}
		id := "disk" + strconv.Itoa(i)
		a = append(a,
			"-drive", "if=none,id="+id+",format="+format+",discard=unmap,file="+d,
			"-device", withBoot("virtio-blk-pci,drive="+id, BootDisk))
	}
	for i, n := range v.NICs {
		id := "net" + strconv.Itoa(i)
		switch {
		case n.User != nil && n.Hub != "":
			return nil, fmt.Errorf("vm %s: nic %d is on both user networking and a hub", v.Name, i)
		case n.User != nil:
			nd := "user,id=" + id
			net := n.User.Net
			if net == "" {
				net = "192.168.76.0/24"
			}
			nd += ",net=" + net
			for _, f := range n.User.HostFwd {
				if !strings.Contains(f, ":127.0.0.1:") {
					return nil, fmt.Errorf("vm %s: hostfwd %q must listen on 127.0.0.1", v.Name, f)
				}
				nd += ",hostfwd=" + f
			}
			a = append(a, "-netdev", nd)
		case n.Hub != "":
			a = append(a, "-netdev", "stream,id="+id+",server=off,addr.type=unix,addr.path="+n.Hub)
		default:
			return nil, fmt.Errorf("vm %s: nic %d is on neither user networking nor a hub", v.Name, i)
		}
		model := n.Model
		if model == "" {
			model = "virtio-net-pci"
		}
		dev := model + ",netdev=" + id
		if n.MAC != "" {
			dev += ",mac=" + n.MAC
		}
		if n.ROMFile != nil {
			dev += ",romfile=" + *n.ROMFile
		}
		a = append(a, "-device", withBoot(dev, BootNetwork))
	}
	return append(a, v.Extra...), nil
}

// Start prepares the Workdir and starts qemu. The guest runs until it powers off or
// PowerDown or Kill stops it; ctx only bounds the preparation. A guest that was
// started before may be started again once it has stopped: its previous logs are
// kept as serial.1.log and so on.
func (v *VM) Start(ctx context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cmd != nil && !v.exited() {
		return fmt.Errorf("vm %s: already running", v.Name)
	}
	if err := os.MkdirAll(v.Workdir, 0o755); err != nil {
		return fmt.Errorf("vm %s: %w", v.Name, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Unix socket paths are limited to 108 bytes; a deep Workdir gets its sockets
	// in a short temporary folder instead.
	v.sockDir = v.Workdir
	if len(filepath.Join(v.Workdir, "console.sock")) >= maxSocketPath {
		d, err := os.MkdirTemp("", "cairn-vm-")
		if err != nil {
			return fmt.Errorf("vm %s: %w", v.Name, err)
		}
		v.sockDir = d
	}
	if v.Firmware == UEFI {
		vars := filepath.Join(v.Workdir, "OVMF_VARS.fd")
		if _, err := os.Stat(vars); errors.Is(err, os.ErrNotExist) {
			if err := copyFile(OVMFVars, vars); err != nil {
				return fmt.Errorf("vm %s: ovmf variables: %w", v.Name, err)
			}
		}
	}
	for _, n := range []string{serialLog, debugLog, qemuLog} {
		keepPrevious(filepath.Join(v.Workdir, n))
	}
	for _, s := range []string{"console.sock", "debug.sock", "qmp.sock"} {
		os.Remove(v.socket(s))
	}
	args, err := v.Args()
	if err != nil {
		return err
	}
	stderr, err := os.Create(v.QEMULogPath())
	if err != nil {
		return fmt.Errorf("vm %s: %w", v.Name, err)
	}
	fmt.Fprintf(stderr, "%s %s\n\n", QEMU, shellQuote(args))
	cmd := exec.Command(QEMU, args...)
	cmd.Stdout = stderr
	cmd.Stderr = stderr
	// Its own process group keeps a terminal's Ctrl-C away from qemu, so that the
	// harness can power the guest down cleanly; the parent-death signal ends qemu
	// if the harness itself dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		stderr.Close()
		return fmt.Errorf("vm %s: start qemu: %w", v.Name, err)
	}
	v.cmd, v.stderr, v.started = cmd, stderr, time.Now()
	v.accelUse = v.Accel
	if v.accelUse == "" {
		v.accelUse = Accel()
	}
	v.done = make(chan struct{})
	v.console, v.debug = nil, nil
	done, sockDir, workdir := v.done, v.sockDir, v.Workdir
	go func() {
		err := cmd.Wait()
		if sockDir != workdir {
			os.RemoveAll(sockDir)
		}
		v.mu.Lock()
		v.waitErr = err
		stderr.Close()
		for _, c := range []*serialConn{v.console, v.debug} {
			if c != nil {
				c.close()
			}
		}
		v.mu.Unlock()
		close(done)
	}()
	v.logger().Info("vm started", "pid", cmd.Process.Pid, "accel", v.accelUse, "workdir", v.Workdir)
	return nil
}

// exited reports whether qemu has ended; v.mu must be held.
func (v *VM) exited() bool {
	select {
	case <-v.done:
		return true
	default:
		return false
	}
}

// Running reports whether qemu is running.
func (v *VM) Running() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.cmd != nil && !v.exited()
}

// PID returns qemu's process ID, or 0 before Start.
func (v *VM) PID() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cmd == nil {
		return 0
	}
	return v.cmd.Process.Pid
}

// Uptime returns how long ago qemu was started.
func (v *VM) Uptime() time.Duration {
	v.mu.Lock()
	defer v.mu.Unlock()
	return time.Since(v.started)
}

// Done returns a channel that is closed when qemu has ended.
func (v *VM) Done() <-chan struct{} {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.done == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return v.done
}

// Wait waits for qemu to end and returns its exit error, if any.
func (v *VM) Wait() error {
	<-v.Done()
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.waitErr
}

// Kill ends qemu at once with SIGKILL, as a power cut ends a machine, and waits for it.
func (v *VM) Kill() error {
	v.mu.Lock()
	cmd := v.cmd
	v.mu.Unlock()
	if cmd == nil {
		return nil
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("vm %s: kill: %w", v.Name, err)
	}
	<-v.Done()
	v.logger().Info("vm killed")
	return nil
}

// PowerDown presses the guest's power button (ACPI, QMP system_powerdown) and waits up
// to timeout for it to power off. A guest that does not is stopped with QMP quit, and
// one that ignores that too with SIGKILL; the error then says so.
func (v *VM) PowerDown(ctx context.Context, timeout time.Duration) error {
	if !v.Running() {
		return nil
	}
	log := v.logger()
	start := time.Now()
	if _, err := v.QMP(ctx, "system_powerdown", nil); err != nil {
		log.Warn("power button not pressed", "err", err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-v.Done():
		log.Info("vm powered off", "seconds", time.Since(start).Seconds())
		return nil
	case <-ctx.Done():
	case <-t.C:
	}
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	v.QMP(qctx, "quit", nil)
	select {
	case <-v.Done():
		log.Warn("vm did not power off; quit qemu", "waited_seconds", time.Since(start).Seconds())
		return fmt.Errorf("vm %s: no power-off within %s after the power button; stopped qemu", v.Name, timeout)
	case <-time.After(10 * time.Second):
	}
	v.Kill()
	return fmt.Errorf("vm %s: no power-off within %s and qemu ignored quit; killed it", v.Name, timeout)
}

// SerialSize returns how many bytes the console log holds now; pass it to
// WaitSerialFrom to wait only for what the guest prints afterwards.
func (v *VM) SerialSize() int64 {
	fi, err := os.Stat(v.SerialPath())
	if err != nil {
		return 0
	}
	return fi.Size()
}

// WaitSerial waits until the console log of this boot matches re and returns the match.
func (v *VM) WaitSerial(ctx context.Context, re *regexp.Regexp) (string, error) {
	return v.WaitSerialFrom(ctx, 0, re)
}

// WaitSerialFrom waits until the console log from byte offset matches re and
// returns the match. It fails early when qemu ends.
func (v *VM) WaitSerialFrom(ctx context.Context, offset int64, re *regexp.Regexp) (string, error) {
	done := v.Done()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var buf []byte
	for {
		b, err := readFrom(v.SerialPath(), offset+int64(len(buf)))
		if err == nil {
			buf = append(buf, b...)
			if m := re.Find(buf); m != nil {
				return string(m), nil
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("vm %s: waiting for /%s/ on the serial console: %w", v.Name, re, ctx.Err())
		case <-done:
			// One more read: the guest may have printed it just before it stopped.
			if b, err := readFrom(v.SerialPath(), offset+int64(len(buf))); err == nil {
				if m := re.Find(append(buf, b...)); m != nil {
					return string(m), nil
				}
			}
			return "", fmt.Errorf("vm %s: qemu ended (%v) before /%s/ showed on the serial console", v.Name, v.Wait(), re)
		case <-tick.C:
		}
	}
}

func readFrom(path string, off int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return nil, err
	}
	return io.ReadAll(f)
}

var ansiEscape = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]|\x1b[c()][0-9A-Za-z]?`)

// SerialTail returns the last n lines of the console log, without terminal escape
// sequences, for a failure message.
func (v *VM) SerialTail(n int) string {
	return tail(v.SerialPath(), n)
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	s := ansiEscape.ReplaceAllString(string(b), "")
	s = strings.ReplaceAll(s, "\r", "")
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// keepPrevious renames path to the first free name.N.ext so a restarted guest's
// earlier logs stay for the post-mortem.
func keepPrevious(path string) {
	if _, err := os.Stat(path); err != nil {
		return
	}
	ext := filepath.Ext(path)
	base := strings.TrimSuffix(path, ext)
	for i := 1; ; i++ {
		p := base + "." + strconv.Itoa(i) + ext
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			os.Rename(path, p)
			return
		}
	}
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

func shellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t'\"$\\;&|<>()*?") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}
