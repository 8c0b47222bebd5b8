package vm

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
)

// BaselineReady is the line the baseline guest prints once its userspace runs; the
// time from qemu's start to this line is the benchmarks' boot baseline.
const BaselineReady = "cairn-baseline: userspace up"

// BaselinePrompt is the baseline guest's shell prompt on its console.
const BaselinePrompt = "baseline# "

// BaselineAppend is the kernel command line for the baseline image. Add
// "cairn.ip=10.0.0.2/24" to give eth0 (the first NIC) a static address,
// "cairn.dhcp=eth0" to ask DHCP instead, "cairn.httpd=PORT" to serve /www over plain
// HTTP (it holds api/v1/health), and "cairn.debug=1" for a shell on the second serial
// port with prompt DebugPrompt, like the admin's debug shell.
const BaselineAppend = "console=ttyS0,115200 panic=-1"

// baselineModules are the modules the baseline initramfs loads, with their
// dependencies: a virtio NIC, virtio disks and the virtio entropy source.
var baselineModules = []string{"virtio_pci", "virtio_net", "virtio_blk", "virtio_rng"}

// moduleDirs are the folders of the kernel package the baseline's modules and their
// dependencies come from.
var moduleDirs = []string{
	"kernel/drivers/virtio/", "kernel/drivers/net/", "kernel/net/core/",
	"kernel/drivers/char/hw_random/", "kernel/drivers/block/",
}

// baselineInit is the baseline image's /init: busybox applets, the virtio modules, the
// network as the kernel command line's cairn.* arguments ask, then a shell on the
// console, forever.
const baselineInit = `#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m.ko; done
ip link set lo up
addr= dhcp= httpd= debug= pxe=
for a in $(cat /proc/cmdline); do
	case "$a" in
	cairn.ip=*) addr="${a#cairn.ip=}" ;;
	cairn.dhcp=*) dhcp="${a#cairn.dhcp=}" ;;
	cairn.httpd=*) httpd="${a#cairn.httpd=}" ;;
	cairn.debug=1) debug=1 ;;
	cairn.pxe=1) pxe=1 ;;
	esac
done
waitlink() {
	i=0
	while [ ! -e /sys/class/net/$1 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
	ip link set $1 up
}
if [ -n "$addr" ]; then
	waitlink eth0
	ip addr add "$addr" dev eth0
fi
if [ -n "$dhcp" ]; then
	waitlink "$dhcp"
	udhcpc -q -n -t 10 -i "$dhcp" -s /etc/udhcpc.script
fi
if [ -n "$httpd" ]; then
	httpd -p "$httpd" -h /www
fi
if [ -n "$pxe" ]; then
	# A stand-in PXE server on eth0: DHCP hands out /www/boot.ipxe over HTTP.
	httpd -p 80 -h /www
	touch /tmp/udhcpd.leases
	udhcpd -S /etc/udhcpd.conf
fi
if [ -n "$debug" ]; then
	# Like the supervisor's debug shell: a root shell on the second serial port.
	PS1='` + DebugPrompt + `' setsid sh -c 'exec sh -i </dev/ttyS1 >/dev/ttyS1 2>&1' &
fi
echo "` + BaselineReady + ` after $(cut -d' ' -f1 /proc/uptime) s of kernel uptime"
export PS1='` + BaselinePrompt + `' HOME=/ TERM=vt100
while true; do setsid cttyhack sh; done
`

// udhcpdConf configures the PXE server image's DHCP server: its boot file is
// bootIPXE, over HTTP.
const udhcpdConf = `interface eth0
start 10.0.100.1
end 10.0.100.99
option subnet 255.255.0.0
option lease 3600
siaddr 10.0.0.1
boot_file http://10.0.0.1/boot.ipxe
lease_file /tmp/udhcpd.leases
`

// bootIPXE boots the baseline kernel with the address DHCP gave. Under UEFI, Debian's
// iPXE (2019) hands the kernel its initrd only as a file that the kernel's EFI stub
// loads by the name in "initrd=": without that argument the kernel boots with no
// initramfs. Under BIOS the argument is ignored.
const bootIPXE = `#!ipxe
kernel http://10.0.0.1/vmlinuz initrd=initrd ` + BaselineAppend + ` cairn.ip=${ip}/16
initrd --name initrd http://10.0.0.1/initrd
boot
`

// udhcpcScript applies a DHCP lease for busybox udhcpc.
const udhcpcScript = `#!/bin/sh
case "$1" in
bound|renew)
	ip addr flush dev "$interface"
	ip addr add "$ip/$mask" dev "$interface"
	[ -n "$router" ] && ip route add default via "${router%% *}" dev "$interface"
	echo "dhcp: $interface $ip/$mask"
	;;
esac
exit 0
`

// CacheDir returns the folder for downloads and built images that outlive a test
// run: $CAIRN_CACHE, or ~/.cache/cairn.
func CacheDir() string {
	if d := os.Getenv("CAIRN_CACHE"); d != "" {
		return d
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".cache", "cairn")
	}
	return filepath.Join(os.TempDir(), "cairn-cache")
}

// BaselineImage returns a Debian kernel and a small busybox initramfs that boots to a
// shell on the serial console, building them in cacheDir/qemu-tests on first use:
// Debian's current linux-image-amd64 kernel package (apt-get download, no install),
// its virtio modules and busybox from busybox-static. Boot it with BaselineAppend; it
// prints BaselineReady when its userspace runs. It is the harness's proof that a
// guest boots and the benchmarks' baseline.
func BaselineImage(ctx context.Context, cacheDir string) (kernel, initrd string, err error) {
	dir := filepath.Join(cacheDir, "qemu-tests")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("baseline image: %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return "", "", fmt.Errorf("baseline image: %w", err)
	}
	defer unlock()

	kernels, _ := filepath.Glob(filepath.Join(dir, "vmlinuz-*"))
	sort.Strings(kernels)
	var version string
	if len(kernels) > 0 {
		kernel = kernels[len(kernels)-1]
		version = strings.TrimPrefix(filepath.Base(kernel), "vmlinuz-")
		if _, err := os.Stat(filepath.Join(dir, "modules-"+version)); err != nil {
			kernel = ""
		}
	}
	if kernel == "" {
		if kernel, version, err = fetchKernel(ctx, dir); err != nil {
			return "", "", fmt.Errorf("baseline image: %w", err)
		}
	}

	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return "", "", fmt.Errorf("baseline image: busybox: %w (install busybox-static)", err)
	}
	if !isStatic(busybox) {
		return "", "", errors.New("baseline image: /bin/busybox is linked dynamically; install busybox-static")
	}
	h := sha256.New()
	h.Write([]byte(baselineInit))
	h.Write([]byte(udhcpcScript + udhcpdConf + bootIPXE))
	h.Write(busybox)
	initrd = filepath.Join(dir, fmt.Sprintf("baseline-%s-%s.cpio", version, hex.EncodeToString(h.Sum(nil))[:12]))
	if _, err := os.Stat(initrd); err == nil {
		return kernel, initrd, nil
	}
	if err := buildBaselineInitrd(initrd, filepath.Join(dir, "modules-"+version), busybox, nil); err != nil {
		return "", "", fmt.Errorf("baseline image: %w", err)
	}
	return kernel, initrd, nil
}

// lockDir takes an exclusive lock on dir's .lock file, so that tests and benchmarks
// running at once do not build the same image twice.
func lockDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return func() { f.Close() }, nil
}

var dependsRe = regexp.MustCompile(`(?m)Depends:\s*(linux-image-\S+)`)

// fetchKernel downloads the kernel package linux-image-amd64 points at and unpacks its
// vmlinuz and the modules in moduleDirs into dir.
func fetchKernel(ctx context.Context, dir string) (kernel, version string, err error) {
	out, err := exec.CommandContext(ctx, "apt-cache", "depends", "linux-image-amd64").CombinedOutput()
	if err != nil {
		return "", "", fmt.Errorf("apt-cache depends linux-image-amd64: %w: %s", err, strings.TrimSpace(string(out)))
	}
	m := dependsRe.FindSubmatch(out)
	if m == nil {
		return "", "", fmt.Errorf("apt-cache depends linux-image-amd64 names no kernel package (run apt-get update): %s", strings.TrimSpace(string(out)))
	}
	pkg := string(m[1])
	tmp, err := os.MkdirTemp(dir, "download-")
	if err != nil {
		return "", "", err
	}
	defer os.RemoveAll(tmp)
	// apt-get download as root warns that its _apt user cannot write here; harmless.
	cmd := exec.CommandContext(ctx, "apt-get", "download", "-q", pkg)
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("apt-get download %s: %w: %s", pkg, err, strings.TrimSpace(string(out)))
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return "", "", fmt.Errorf("apt-get download %s: found %d .deb files", pkg, len(debs))
	}
	return unpackKernel(ctx, debs[0], dir)
}

// unpackKernel reads the kernel package's file tree through dpkg-deb and keeps
// vmlinuz-VERSION and modules-VERSION/*.ko.
func unpackKernel(ctx context.Context, deb, dir string) (kernel, version string, err error) {
	cmd := exec.CommandContext(ctx, "dpkg-deb", "--fsys-tarfile", deb)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", "", err
	}
	if err := cmd.Start(); err != nil {
		return "", "", fmt.Errorf("dpkg-deb: %w", err)
	}
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	var vmlinuz []byte
	mods := map[string][]byte{}
	tr := tar.NewReader(stdout)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", "", fmt.Errorf("read %s: %w", deb, err)
		}
		name := strings.TrimPrefix(h.Name, ".")
		switch {
		case strings.HasPrefix(name, "/boot/vmlinuz-") && h.Typeflag == tar.TypeReg:
			version = strings.TrimPrefix(name, "/boot/vmlinuz-")
			if vmlinuz, err = io.ReadAll(tr); err != nil {
				return "", "", err
			}
		case strings.HasSuffix(name, ".ko") && h.Typeflag == tar.TypeReg:
			for _, d := range moduleDirs {
				if i := strings.Index(name, "/"+d); i >= 0 && !strings.Contains(name[i+1+len(d):], "/") {
					b, err := io.ReadAll(tr)
					if err != nil {
						return "", "", err
					}
					mods[path.Base(name)] = b
				}
			}
		}
	}
	if err := cmd.Wait(); err != nil {
		return "", "", fmt.Errorf("dpkg-deb --fsys-tarfile %s: %w: %s", deb, err, strings.TrimSpace(stderr.String()))
	}
	if vmlinuz == nil {
		return "", "", fmt.Errorf("%s holds no /boot/vmlinuz-*", deb)
	}
	modDir := filepath.Join(dir, "modules-"+version)
	tmpDir := modDir + ".tmp"
	os.RemoveAll(tmpDir)
	if err := os.MkdirAll(tmpDir, 0o755); err != nil {
		return "", "", err
	}
	for n, b := range mods {
		if err := os.WriteFile(filepath.Join(tmpDir, n), b, 0o644); err != nil {
			return "", "", err
		}
	}
	os.RemoveAll(modDir)
	if err := os.Rename(tmpDir, modDir); err != nil {
		return "", "", err
	}
	kernel = filepath.Join(dir, "vmlinuz-"+version)
	if err := os.WriteFile(kernel+".tmp", vmlinuz, 0o644); err != nil {
		return "", "", err
	}
	return kernel, version, os.Rename(kernel+".tmp", kernel)
}

// buildBaselineInitrd writes the baseline initramfs: busybox, /init, the modules in
// baselineModules with their dependencies, and the order to load them in.
func buildBaselineInitrd(out, modDir string, busybox []byte, extra map[string]cpioEntry) error {
	order, err := moduleOrder(modDir, baselineModules)
	if err != nil {
		return err
	}
	files := map[string]cpioEntry{
		"bin":               {mode: cpioDir | 0o755},
		"bin/busybox":       {mode: cpioFile | 0o755, data: busybox},
		"bin/sh":            {mode: cpioSymlink | 0o777, data: []byte("busybox")},
		"dev":               {mode: cpioDir | 0o755},
		"dev/console":       {mode: cpioCharDev | 0o600, rdev: [2]uint32{5, 1}},
		"etc":               {mode: cpioDir | 0o755},
		"init":              {mode: cpioFile | 0o755, data: []byte(baselineInit)},
		"lib":               {mode: cpioDir | 0o755},
		"lib/modules":       {mode: cpioDir | 0o755},
		"proc":              {mode: cpioDir | 0o755},
		"root":              {mode: cpioDir | 0o700},
		"sys":               {mode: cpioDir | 0o755},
		"tmp":               {mode: cpioDir | 0o1777},
		"etc/hostname":      {mode: cpioFile | 0o644, data: []byte("baseline\n")},
		"etc/udhcpc.script": {mode: cpioFile | 0o755, data: []byte(udhcpcScript)},
		"www":               {mode: cpioDir | 0o755},
		"www/api":           {mode: cpioDir | 0o755},
		"www/api/v1":        {mode: cpioDir | 0o755},
		"www/api/v1/health": {mode: cpioFile | 0o644, data: []byte("{\"status\":\"ok\",\"baseline\":true}\n")},
	}
	var names []string
	for _, m := range order {
		b, err := os.ReadFile(filepath.Join(modDir, m.file))
		if err != nil {
			return err
		}
		files["lib/modules/"+m.name+".ko"] = cpioEntry{mode: cpioFile | 0o644, data: b}
		names = append(names, m.name)
	}
	files["lib/modules/order"] = cpioEntry{mode: cpioFile | 0o644, data: []byte(strings.Join(names, "\n") + "\n")}
	for n, e := range extra {
		files[n] = e
	}
	var buf bytes.Buffer
	if err := writeCPIO(&buf, files); err != nil {
		return err
	}
	if err := os.WriteFile(out+".tmp", buf.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Rename(out+".tmp", out)
}

type module struct{ name, file string }

// moduleOrder resolves the wanted modules' dependencies from each module's .modinfo
// "depends=" entry (the package carries no modules.dep: depmod makes it at install)
// and returns them in an order insmod can load them in.
func moduleOrder(modDir string, want []string) ([]module, error) {
	entries, err := os.ReadDir(modDir)
	if err != nil {
		return nil, err
	}
	files := map[string]string{} // module name → file
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".ko") {
			files[modName(strings.TrimSuffix(e.Name(), ".ko"))] = e.Name()
		}
	}
	var order []module
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(string) error
	visit = func(n string) error {
		switch state[n] {
		case 1:
			return fmt.Errorf("module %s depends on itself", n)
		case 2:
			return nil
		}
		state[n] = 1
		f, ok := files[n]
		if !ok {
			return fmt.Errorf("module %s is not in %s (built into the kernel, or in a folder the harness does not unpack)", n, modDir)
		}
		deps, err := moduleDepends(filepath.Join(modDir, f))
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d); err != nil {
				return fmt.Errorf("%s: %w", n, err)
			}
		}
		state[n] = 2
		order = append(order, module{name: n, file: f})
		return nil
	}
	for _, n := range want {
		if err := visit(modName(n)); err != nil {
			return nil, err
		}
	}
	return order, nil
}

func modName(s string) string { return strings.ReplaceAll(s, "-", "_") }

func moduleDepends(file string) ([]string, error) {
	f, err := elf.Open(file)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", file, err)
	}
	defer f.Close()
	s := f.Section(".modinfo")
	if s == nil {
		return nil, fmt.Errorf("module %s: no .modinfo section", file)
	}
	b, err := s.Data()
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", file, err)
	}
	for _, kv := range bytes.Split(b, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			var deps []string
			for _, d := range strings.Split(string(v), ",") {
				if d != "" {
					deps = append(deps, modName(d))
				}
			}
			return deps, nil
		}
	}
	return nil, nil
}

// isStatic reports whether an ELF executable has no program interpreter.
func isStatic(b []byte) bool {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return false
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

// BaselineISO writes to out a hybrid BIOS + UEFI ISO (grub-mkrescue, as the admin
// ISO is made) that boots the baseline kernel and initramfs with BaselineAppend and
// extraAppend, with grub on the serial console. It stands in for the admin ISO where
// the harness itself is tested, and is the benchmarks' ISO-boot baseline.
func BaselineISO(ctx context.Context, cacheDir, out, extraAppend string) error {
	kernel, initrd, err := BaselineImage(ctx, cacheDir)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "cairn-baseline-iso-")
	if err != nil {
		return fmt.Errorf("baseline iso: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := os.MkdirAll(filepath.Join(dir, "boot", "grub"), 0o755); err != nil {
		return fmt.Errorf("baseline iso: %w", err)
	}
	for src, dst := range map[string]string{kernel: "vmlinuz", initrd: "initrd"} {
		if err := copyFile(src, filepath.Join(dir, "boot", dst)); err != nil {
			return fmt.Errorf("baseline iso: %w", err)
		}
	}
	cfg := "set timeout=0\n" +
		"serial --unit=0 --speed=115200\n" +
		"terminal_input serial console\n" +
		"terminal_output serial console\n" +
		"menuentry baseline {\n" +
		"\tlinux /boot/vmlinuz " + BaselineAppend + " " + extraAppend + "\n" +
		"\tinitrd /boot/initrd\n" +
		"}\n"
	if err := os.WriteFile(filepath.Join(dir, "boot", "grub", "grub.cfg"), []byte(cfg), 0o644); err != nil {
		return fmt.Errorf("baseline iso: %w", err)
	}
	if err := run(ctx, "grub-mkrescue", "-o", out, dir); err != nil {
		return fmt.Errorf("baseline iso: %w", err)
	}
	return nil
}

// BaselinePXEServer returns a kernel and initramfs for a stand-in PXE server on a Hub,
// built in cacheDir/qemu-tests on first use: the baseline image plus a DHCP server
// (busybox udhcpd, pool 10.0.100.1–99 in 10.0.0.0/16) and an HTTP server that hand a
// network-booting guest an iPXE script, the baseline kernel and its initramfs. Boot it
// with BaselineAppend + " cairn.ip=10.0.0.1/16 cairn.pxe=1", its first NIC on the hub;
// a guest that then network-boots from the hub prints BaselineReady. It proves the
// LAN and PXE plumbing before the admin ISO exists, and is the benchmarks' PXE baseline.
func BaselinePXEServer(ctx context.Context, cacheDir string) (kernel, initrd string, err error) {
	kernel, clientInitrd, err := BaselineImage(ctx, cacheDir)
	if err != nil {
		return "", "", err
	}
	out := strings.TrimSuffix(clientInitrd, ".cpio") + "-pxe.cpio"
	if _, err := os.Stat(out); err == nil {
		return kernel, out, nil
	}
	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return "", "", fmt.Errorf("pxe server image: %w", err)
	}
	k, err := os.ReadFile(kernel)
	if err != nil {
		return "", "", fmt.Errorf("pxe server image: %w", err)
	}
	i, err := os.ReadFile(clientInitrd)
	if err != nil {
		return "", "", fmt.Errorf("pxe server image: %w", err)
	}
	version := strings.TrimPrefix(filepath.Base(kernel), "vmlinuz-")
	extra := map[string]cpioEntry{
		"etc/udhcpd.conf": {mode: cpioFile | 0o644, data: []byte(udhcpdConf)},
		"www/boot.ipxe":   {mode: cpioFile | 0o644, data: []byte(bootIPXE)},
		"www/vmlinuz":     {mode: cpioFile | 0o644, data: k},
		"www/initrd":      {mode: cpioFile | 0o644, data: i},
	}
	unlock, err := lockDir(filepath.Dir(kernel))
	if err != nil {
		return "", "", fmt.Errorf("pxe server image: %w", err)
	}
	defer unlock()
	if err := buildBaselineInitrd(out, filepath.Join(filepath.Dir(kernel), "modules-"+version), busybox, extra); err != nil {
		return "", "", fmt.Errorf("pxe server image: %w", err)
	}
	return kernel, out, nil
}
