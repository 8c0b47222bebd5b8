package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cairn-os/cairn/qemu-tests/lab"
	"github.com/cairn-os/cairn/qemu-tests/vm"
)

// The PXE baseline's LAN, the same as Cairn's (docs/architecture.md).
const (
	pxeServerCIDR  = "10.0.0.1/16"
	pxeServerAddr  = "10.0.0.1"
	pxeServerIPv6  = "fd00:ca1e::1/64"
	pxeRangeStart  = "10.0.100.1"
	pxeRangeEnd    = "10.0.100.99"
	pxeNetmask     = "255.255.0.0"
	pxeScriptName  = "boot.ipxe"
	pxeKernelName  = "vmlinuz"
	dnsmasqProgram = "dnsmasq"
)

// dnsmasqConf returns the PXE baseline's dnsmasq configuration: DHCP and TFTP on the
// tap device only, no DNS. qemu's NIC ROMs are iPXE and send user class "iPXE"
// (option 77), which gets them the iPXE script; nothing else is offered a boot file.
// With ra, dnsmasq also answers IPv6 router solicitations (iPXE otherwise waits about
// 16 s for them) and tells iPXE not to wait for proxyDHCP offers (option 175.176),
// which is what Cairn's PXE server does too.
func dnsmasqConf(tap, tftpRoot, leases, logFile string, ra bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# The benchmark's PXE baseline: dnsmasq as DHCP + TFTP server for iPXE.
port=0
interface=%s
bind-interfaces
dhcp-authoritative
dhcp-range=%s,%s,%s,1h
dhcp-leasefile=%s
dhcp-userclass=set:ipxe,iPXE
dhcp-boot=tag:ipxe,%s
enable-tftp
tftp-root=%s
user=root
log-dhcp
log-facility=%s
`, tap, pxeRangeStart, pxeRangeEnd, pxeNetmask, leases, pxeScriptName, tftpRoot, logFile)
	if ra {
		fmt.Fprintf(&b, `enable-ra
dhcp-range=::,constructor:%s,ra-only
dhcp-option-force=tag:ipxe,175,b0:01:01
`, tap)
	}
	return b.String()
}

// pxeScript returns the iPXE script that boots the compute node's kernel and
// initramfs over TFTP with the console arguments Cairn gives a compute node and
// nothing of Cairn's own, so that the supervisor starts and prints its first line.
// initrd= names the initramfs for the EFI stub (ignored under BIOS), as Cairn's does.
func pxeScript(initramfs string) string {
	return fmt.Sprintf(`#!ipxe
kernel tftp://%[1]s/%[2]s initrd=%[3]s console=tty0 console=ttyS0,115200
initrd tftp://%[1]s/%[3]s
boot
`, pxeServerAddr, pxeKernelName, initramfs)
}

// pxeServer is the dnsmasq PXE baseline: a network namespace with a tap device
// plugged into its own hub, dnsmasq serving DHCP and TFTP on the tap.
type pxeServer struct {
	hub     *vm.Hub
	netns   string
	tap     *vm.TAP
	dnsmasq *exec.Cmd
	dir     string
	undo    []func()
}

// startPXEServer prepares dir (TFTP root, dnsmasq's configuration and log), a hub in a
// short temporary folder, a network namespace with a tap on the hub, and starts
// dnsmasq in it. Close undoes all of it.
func startPXEServer(ctx context.Context, logger *slog.Logger, dir, computeDir string, ra bool) (_ *pxeServer, err error) {
	p := &pxeServer{dir: dir}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	kernel, initramfs, err := computeImage(computeDir)
	if err != nil {
		return nil, err
	}
	tftp := filepath.Join(dir, "tftp")
	if err := os.MkdirAll(tftp, 0o755); err != nil {
		return nil, fmt.Errorf("pxe baseline: %w", err)
	}
	for src, dst := range map[string]string{kernel: pxeKernelName, initramfs: filepath.Base(initramfs)} {
		if err := copyFile(src, filepath.Join(tftp, dst)); err != nil {
			return nil, fmt.Errorf("pxe baseline: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(tftp, pxeScriptName), []byte(pxeScript(filepath.Base(initramfs))), 0o644); err != nil {
		return nil, fmt.Errorf("pxe baseline: %w", err)
	}

	sock, err := os.MkdirTemp("", "cairn-bench-")
	if err != nil {
		return nil, fmt.Errorf("pxe baseline: %w", err)
	}
	p.undo = append(p.undo, func() { os.RemoveAll(sock) })
	if p.hub, err = vm.NewHub(filepath.Join(sock, "lan.sock"), logger); err != nil {
		return nil, fmt.Errorf("pxe baseline: %w", err)
	}
	p.undo = append(p.undo, func() { p.hub.Close() })

	suffix := randomHex(4)
	p.netns = "cairn-bench-" + suffix
	if err := ip(ctx, "netns", "add", p.netns); err != nil {
		return nil, fmt.Errorf("pxe baseline: %w", err)
	}
	p.undo = append(p.undo, func() { ip(context.Background(), "netns", "del", p.netns) })
	tapName := "cbtap" + suffix
	if p.tap, err = vm.AttachTAP(p.hub.Path(), "/run/netns/"+p.netns, tapName, logger); err != nil {
		return nil, fmt.Errorf("pxe baseline: %w", err)
	}
	p.undo = append(p.undo, func() { p.tap.Close() })
	for _, args := range [][]string{
		{"-n", p.netns, "link", "set", "lo", "up"},
		{"-n", p.netns, "addr", "add", pxeServerCIDR, "dev", tapName},
		{"-n", p.netns, "-6", "addr", "add", pxeServerIPv6, "dev", tapName, "nodad"},
		{"-n", p.netns, "link", "set", tapName, "up"},
	} {
		if err := ip(ctx, args...); err != nil {
			return nil, fmt.Errorf("pxe baseline: %w", err)
		}
	}

	logFile := filepath.Join(dir, "dnsmasq.log")
	conf := filepath.Join(dir, "dnsmasq.conf")
	os.Remove(logFile)
	if err := os.WriteFile(conf, []byte(dnsmasqConf(tapName, tftp, filepath.Join(dir, "dnsmasq.leases"), logFile, ra)), 0o644); err != nil {
		return nil, fmt.Errorf("pxe baseline: %w", err)
	}
	stderr, err := os.Create(filepath.Join(dir, "dnsmasq.stderr"))
	if err != nil {
		return nil, fmt.Errorf("pxe baseline: %w", err)
	}
	defer stderr.Close()
	// --keep-in-foreground so that the process to stop is this one; an empty
	// --pid-file writes none.
	p.dnsmasq = exec.Command("ip", "netns", "exec", p.netns, dnsmasqProgram,
		"--keep-in-foreground", "--conf-file="+conf, "--pid-file")
	p.dnsmasq.Stdout, p.dnsmasq.Stderr = stderr, stderr
	p.dnsmasq.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := p.dnsmasq.Start(); err != nil {
		return nil, fmt.Errorf("pxe baseline: start dnsmasq: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- p.dnsmasq.Wait() }()
	p.undo = append(p.undo, func() {
		p.dnsmasq.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			p.dnsmasq.Process.Kill()
			<-exited
		}
	})
	// dnsmasq logs its DHCP and TFTP set-up once its sockets are bound.
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(logFile)
		if strings.Contains(string(b), "TFTP root is") {
			break
		}
		select {
		case err := <-exited:
			out, _ := os.ReadFile(stderr.Name())
			return nil, fmt.Errorf("pxe baseline: dnsmasq ended (%v): %s %s", err, strings.TrimSpace(string(out)), strings.TrimSpace(string(b)))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("pxe baseline: dnsmasq did not report its TFTP root within 10 s; see %s", logFile)
		}
	}
	logger.Info("dnsmasq serving", "netns", p.netns, "tap", tapName, "conf", conf)
	return p, nil
}

// Close stops dnsmasq and removes the tap, the namespace and the hub, in reverse order.
func (p *pxeServer) Close() {
	for i := len(p.undo) - 1; i >= 0; i-- {
		p.undo[i]()
	}
	p.undo = nil
}

// bootPXEBaseline network-boots a diskless guest of the compute node's size from the
// dnsmasq server and times power-on → the supervisor's first line on its console.
func bootPXEBaseline(ctx context.Context, r *runner, dir, computeDir string) (Sample, error) {
	if err := ensureDnsmasq(ctx, r.logger); err != nil {
		return Sample{}, err
	}
	p, err := startPXEServer(ctx, r.logger, filepath.Join(dir, "pxe-server"), computeDir, r.o.ra)
	if err != nil {
		return Sample{}, err
	}
	defer p.Close()
	v := &vm.VM{
		Name: "baseline-pxe", Memory: lab.ComputeMemoryMiB, CPUs: lab.ComputeCPUs,
		NICs:    []vm.NIC{{MAC: lab.ComputeMAC(0), Hub: p.hub.Path()}},
		Boot:    []vm.BootDevice{vm.BootNetwork},
		Workdir: filepath.Join(dir, "baseline-pxe"), Logger: r.logger,
	}
	s, err := r.timeBoot(ctx, v, supervisorFirst)
	v.Kill()
	if err != nil {
		b, _ := os.ReadFile(filepath.Join(p.dir, "dnsmasq.log"))
		return s, fmt.Errorf("%w\n--- dnsmasq.log ---\n%s", err, tailLines(string(b), 20))
	}
	return s, nil
}

// ensureDnsmasq installs Debian's dnsmasq-base when dnsmasq is not there.
func ensureDnsmasq(ctx context.Context, logger *slog.Logger) error {
	if _, err := exec.LookPath(dnsmasqProgram); err == nil {
		return nil
	}
	if _, err := os.Stat("/usr/sbin/" + dnsmasqProgram); err == nil {
		return nil
	}
	logger.Info("installing dnsmasq-base")
	cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "-q", "--no-install-recommends", "dnsmasq-base")
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get install dnsmasq-base: %w: %s", err, tailLines(string(out), 5))
	}
	return nil
}

func ip(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

var errNotRoot = errors.New("bench needs root: it makes a network namespace and a tap device for the dnsmasq baseline (run it with sudo, or `make bench` as root)")
