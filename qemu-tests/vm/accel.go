package vm

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"sync"
	"time"
)

// Accelerators qemu can run a guest with.
const (
	KVM = "kvm"
	TCG = "tcg"
)

// QEMU is the qemu binary the harness runs. Debian's path matters: qemu loads its
// accelerator modules relative to its own binary.
const QEMU = "qemu-system-x86_64"

var (
	accelOnce   sync.Once
	accelChosen string
	accelReason string
)

// Accel returns the accelerator to boot guests with: "kvm" only when /dev/kvm opens
// and a probe guest gets into protected mode under it within 5 seconds, "tcg"
// otherwise. On a host that nests KVM inside another hypervisor, /dev/kvm opens and
// SeaBIOS even runs, yet a guest hangs at its first switch to protected mode; so the
// probe boots iPXE's Linux-kernel image (Debian's ipxe package), which prints its
// banner only after that switch. CAIRN_ACCEL=kvm or CAIRN_ACCEL=tcg skips the probe.
// The answer is computed once per process.
func Accel() string {
	a, _ := AccelReason()
	return a
}

// ProbeKernel is the image the KVM probe boots.
var ProbeKernel = "/usr/lib/ipxe/ipxe.lkrn"

func AccelReason() (accel, reason string) {
	accelOnce.Do(func() { accelChosen, accelReason = chooseAccel() })
	return accelChosen, accelReason
}

func chooseAccel() (string, string) {
	switch v := os.Getenv("CAIRN_ACCEL"); v {
	case KVM, TCG:
		return v, "CAIRN_ACCEL=" + v
	case "":
	default:
		return TCG, "CAIRN_ACCEL=" + v + " is neither kvm nor tcg; using tcg"
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return TCG, "/dev/kvm does not open (" + err.Error() + ")"
	}
	f.Close()
	if ok, why := probeKVM(5 * time.Second); !ok {
		return TCG, "/dev/kvm opens but a probe guest " + why
	}
	return KVM, "/dev/kvm opens and a probe guest ran under it"
}

// probeKVM boots ProbeKernel under KVM and waits for its banner on the serial port.
// A nested KVM that hangs prints nothing after SeaBIOS; one that works prints the
// banner within a fraction of a second.
func probeKVM(timeout time.Duration) (bool, string) {
	if _, err := os.Stat(ProbeKernel); err != nil {
		return false, "could not be tried: " + err.Error() + " (install ipxe, or set CAIRN_ACCEL=kvm)"
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, QEMU,
		"-accel", KVM, "-cpu", "host", "-machine", "pc,graphics=off", "-nodefaults",
		"-display", "none", "-m", "64", "-serial", "stdio", "-no-reboot", "-kernel", ProbeKernel)
	cmd.WaitDelay = time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		return false, "did not start: " + err.Error()
	}
	if err := cmd.Start(); err != nil {
		return false, "did not start: " + err.Error()
	}
	found := make(chan bool, 1)
	go func() {
		var seen []byte
		buf := make([]byte, 4096)
		for {
			n, err := out.Read(buf)
			seen = append(seen, buf[:n]...)
			if bytes.Contains(seen, []byte("iPXE")) {
				found <- true
				return
			}
			if err != nil {
				found <- false
				return
			}
		}
	}()
	var ok bool
	select {
	case ok = <-found:
	case <-ctx.Done():
	}
	cancel()
	cmd.Wait()
	if ok {
		return true, ""
	}
	return false, "printed nothing within " + timeout.String() + " (nested KVM that hangs)"
}
