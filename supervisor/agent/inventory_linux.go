package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/cairn-os/cairn/supervisor/engine"
)

// Paths of the kernel's interfaces, variables so that tests could point them elsewhere.
var (
	procMeminfo = "/proc/meminfo"
	procLoadavg = "/proc/loadavg"
	procUptime  = "/proc/uptime"
	sysCPUs     = "/sys/devices/system/cpu/online"
	sysBlock    = "/sys/class/block"
	sysNet      = "/sys/class/net"
	devKVM      = "/dev/kvm"
)

// Inventory describes this machine for a join request: CPUs, memory, whether KVM is
// usable, whole disks, network interfaces, the primary MAC and address (those of the
// first physical NIC with a MAC) and the hostname. It does not fill CSR or Version; the
// agent refines MAC and Address with InterfaceToward once it knows the admin.
func Inventory(ctx context.Context) (engine.JoinRequest, error) {
	var req engine.JoinRequest
	if err := ctx.Err(); err != nil {
		return req, err
	}
	req.CPUs = cpuCount()
	mem, err := readMeminfo()
	if err != nil {
		return req, err
	}
	req.MemoryBytes = mem["MemTotal"]
	req.KVM = kvmUsable()
	if req.Disks, err = disks(); err != nil {
		return req, err
	}
	if req.NICs, err = nics(); err != nil {
		return req, err
	}
	if nic, ok := primaryNIC(req.NICs); ok {
		req.MAC = nic.MAC
		req.Address = firstIPv4(nic.Addresses)
	}
	if req.Name, err = os.Hostname(); err != nil {
		return req, fmt.Errorf("inventory hostname: %w", err)
	}
	return req, nil
}

// Stats reads what a heartbeat reports: CPUs, total and available memory, the 1-minute
// load average and the uptime. Address is left for the caller.
func Stats() (engine.Heartbeat, error) {
	var hb engine.Heartbeat
	hb.CPUs = cpuCount()
	mem, err := readMeminfo()
	if err != nil {
		return hb, err
	}
	hb.MemoryBytes = mem["MemTotal"]
	hb.MemoryFreeBytes = mem["MemAvailable"]
	if hb.Load1, err = firstFloat(procLoadavg); err != nil {
		return hb, err
	}
	if hb.UptimeSeconds, err = firstFloat(procUptime); err != nil {
		return hb, err
	}
	return hb, nil
}

// InterfaceToward finds the local interface and address that carry the route to host
// (a name or an IP, as in the admin URL). No packet is sent: connecting a UDP socket
// only makes the kernel choose the route. The NIC's MAC is empty for loopback.
func InterfaceToward(ctx context.Context, host string) (engine.NIC, netip.Addr, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", net.JoinHostPort(host, "9"))
	if err != nil {
		return engine.NIC{}, netip.Addr{}, fmt.Errorf("route to %s: %w", host, err)
	}
	local := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	c.Close()
	ifs, err := net.Interfaces()
	if err != nil {
		return engine.NIC{}, local, fmt.Errorf("route to %s: list interfaces: %w", host, err)
	}
	for _, ifc := range ifs {
		nic := nicOf(ifc)
		for _, a := range nic.Addresses {
			if p, err := netip.ParsePrefix(a); err == nil && p.Addr() == local {
				return nic, local, nil
			}
		}
	}
	return engine.NIC{}, local, fmt.Errorf("route to %s: no interface holds source address %s", host, local)
}

func cpuCount() int {
	b, err := os.ReadFile(sysCPUs)
	if err != nil {
		return runtime.NumCPU()
	}
	n := 0
	for r := range strings.SplitSeq(strings.TrimSpace(string(b)), ",") {
		lo, hi, isRange := strings.Cut(r, "-")
		a, err1 := strconv.Atoi(lo)
		z := a
		var err2 error
		if isRange {
			z, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || z < a {
			return runtime.NumCPU()
		}
		n += z - a + 1
	}
	if n == 0 {
		return runtime.NumCPU()
	}
	return n
}

// readMeminfo returns /proc/meminfo's fields in bytes.
func readMeminfo() (map[string]uint64, error) {
	b, err := os.ReadFile(procMeminfo)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", procMeminfo, err)
	}
	m := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			continue
		}
		if len(f) > 1 && f[1] == "kB" {
			v *= 1024
		}
		m[k] = v
	}
	if m["MemTotal"] == 0 {
		return nil, fmt.Errorf("read %s: no MemTotal", procMeminfo)
	}
	return m, nil
}

func firstFloat(path string) (float64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, fmt.Errorf("read %s: empty", path)
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	return v, nil
}

// kvmUsable reports whether /dev/kvm opens read-write and answers KVM_GET_API_VERSION
// with the stable API version 12.
func kvmUsable() bool {
	f, err := os.OpenFile(devKVM, os.O_RDWR, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	const kvmGetAPIVersion = 0xAE00
	v, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), kvmGetAPIVersion, 0)
	return errno == 0 && v == 12
}

// virtualBlock are the prefixes of block devices that are not disks of the machine.
var virtualBlock = []string{"loop", "ram", "zram", "sr", "fd", "nbd"}

// disks lists whole disks (no partitions, no loop/ram/zram/optical devices) with a size.
func disks() ([]engine.Disk, error) {
	ents, err := os.ReadDir(sysBlock)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list disks %s: %w", sysBlock, err)
	}
	var out []engine.Disk
	for _, e := range ents {
		name := e.Name()
		if slices.ContainsFunc(virtualBlock, func(p string) bool { return strings.HasPrefix(name, p) }) {
			continue
		}
		dir := filepath.Join(sysBlock, name)
		if _, err := os.Stat(filepath.Join(dir, "partition")); err == nil {
			continue
		}
		sectors, err := readUint(filepath.Join(dir, "size"))
		if err != nil || sectors == 0 {
			continue // an empty card reader or a device without media
		}
		model, _ := os.ReadFile(filepath.Join(dir, "device", "model"))
		out = append(out, engine.Disk{
			Name:      name,
			SizeBytes: sectors * 512, // /sys counts 512-byte sectors whatever the device's block size
			Model:     strings.TrimSpace(string(model)),
		})
	}
	return out, nil
}

func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

// nics lists the interfaces other than loopback, physical ones first (in kernel order).
func nics() ([]engine.NIC, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	var phys, virt []engine.NIC
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		if isPhysical(ifc.Name) {
			phys = append(phys, nicOf(ifc))
		} else {
			virt = append(virt, nicOf(ifc))
		}
	}
	return append(phys, virt...), nil
}

func nicOf(ifc net.Interface) engine.NIC {
	n := engine.NIC{Name: ifc.Name, MAC: ifc.HardwareAddr.String()}
	addrs, _ := ifc.Addrs()
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			n.Addresses = append(n.Addresses, p.String())
		}
	}
	return n
}

// isPhysical reports whether the interface is backed by a device (a NIC, not a bridge,
// veth, tap or the like).
func isPhysical(name string) bool {
	_, err := os.Stat(filepath.Join(sysNet, name, "device"))
	return err == nil
}

// primaryNIC is the first physical NIC with a MAC, else the first NIC with one.
func primaryNIC(ns []engine.NIC) (engine.NIC, bool) {
	for _, physical := range []bool{true, false} {
		for _, n := range ns {
			if n.MAC != "" && isPhysical(n.Name) == physical {
				return n, true
			}
		}
	}
	return engine.NIC{}, false
}

// firstIPv4 returns the first IPv4 address of a list of prefixes, else the first
// global IPv6 one, without the prefix length.
func firstIPv4(prefixes []string) string {
	var v6 string
	for _, s := range prefixes {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			continue
		}
		if p.Addr().Is4() {
			return p.Addr().String()
		}
		if v6 == "" && p.Addr().IsGlobalUnicast() {
			v6 = p.Addr().String()
		}
	}
	return v6
}
