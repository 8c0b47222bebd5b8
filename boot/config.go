package boot

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"
)

// Mode says how the boot services take part in DHCP on the LAN.
type Mode string

const (
	// ModeDHCP runs a full DHCP server: the LAN is ours, every client gets an address
	// from the pool, and PXE and iPXE clients also get a boot file.
	ModeDHCP Mode = "dhcp"
	// ModeProxy runs a proxyDHCP server: the LAN already has a DHCP server that hands
	// out addresses, and we only answer PXE clients with boot information.
	ModeProxy Mode = "proxy"
	// ModeOff runs no DHCP at all: the LAN's DHCP server must point PXE clients at
	// us itself. TFTP, HTTP and the IPv6 router advertisement answers still run.
	ModeOff Mode = "off"
)

// DefaultLeaseTime is the lease time used when Config.LeaseTime is zero.
const DefaultLeaseTime = time.Hour

// Config is what the boot services need to know about the LAN and the files they serve.
type Config struct {
	// Interface is the LAN interface to serve DHCP and router advertisements on. It is
	// required unless Mode is ModeOff.
	Interface string
	// ServerIP is the admin node's IPv4 address on the LAN, e.g. 10.0.0.1. Clients
	// fetch TFTP and HTTP files from it.
	ServerIP net.IP
	// Netmask is the LAN's netmask, e.g. /16. Required in ModeDHCP.
	Netmask net.IPMask
	// Mode selects full DHCP, proxyDHCP or no DHCP.
	Mode Mode
	// PoolStart and PoolEnd bound the addresses handed out in ModeDHCP (inclusive).
	PoolStart, PoolEnd net.IP
	// Router is the default gateway given to DHCP clients; nil for none.
	Router net.IP
	// DNS are the name servers given to DHCP clients; empty for none.
	DNS []net.IP
	// LeaseTime is the DHCP lease time; zero means DefaultLeaseTime.
	LeaseTime time.Duration
	// HTTPAddr is the listen address of the boot HTTP server, e.g. "10.0.0.1:80".
	// Port 0 picks a free port (tests); the URLs given to clients then carry it.
	HTTPAddr string
	// TFTPRoot is the directory with Debian's iPXE binaries (undionly.kpxe, ipxe.efi,
	// snponly.efi). TFTP serves only the files directly in it.
	TFTPRoot string
	// Kernel and Initramfs are the compute image's files, served over HTTP as
	// /compute/vmlinuz and /compute/initramfs.
	Kernel, Initramfs string
	// LeaseFile, if set, is a JSON file that keeps the leases across restarts.
	LeaseFile string
	// Logger receives the boot decisions; nil discards them.
	Logger *slog.Logger
}

// The iPXE binaries the DHCP server names as boot files, served from Config.TFTPRoot.
const (
	FileBIOS = "undionly.kpxe"
	FileUEFI = "ipxe.efi"
)

// validate checks cfg and fills in defaults. Errors say which field is wrong and what
// a valid value looks like.
func (cfg *Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("boot config: "+format, args...))
	}

	switch cfg.Mode {
	case ModeDHCP, ModeProxy, ModeOff:
	case "":
		bad("mode is empty: use %q, %q or %q", ModeDHCP, ModeProxy, ModeOff)
	default:
		bad("mode %q is unknown: use %q, %q or %q", cfg.Mode, ModeDHCP, ModeProxy, ModeOff)
	}
	if cfg.Interface == "" && cfg.Mode != ModeOff {
		bad("interface is empty: name the LAN interface to serve DHCP on")
	}
	if cfg.ServerIP.To4() == nil {
		bad("server ip %q is not an IPv4 address", ipString(cfg.ServerIP))
	} else {
		cfg.ServerIP = cfg.ServerIP.To4()
	}

	if cfg.Mode == ModeDHCP {
		errs = append(errs, cfg.validatePool()...)
	}

	switch {
	case cfg.LeaseTime == 0:
		cfg.LeaseTime = DefaultLeaseTime
	case cfg.LeaseTime < time.Minute:
		bad("lease time %s is too short: use at least 1m", cfg.LeaseTime)
	case cfg.LeaseTime > 365*24*time.Hour:
		bad("lease time %s is too long: use at most a year", cfg.LeaseTime)
	}

	if _, port, err := net.SplitHostPort(cfg.HTTPAddr); err != nil {
		bad("http address %q: %v (want host:port, e.g. 10.0.0.1:80)", cfg.HTTPAddr, err)
	} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		bad("http address %q: port %q is not a number from 0 to 65535", cfg.HTTPAddr, port)
	}

	if cfg.TFTPRoot == "" {
		bad("tftp root is empty: name the directory with undionly.kpxe and ipxe.efi")
	} else if fi, err := os.Stat(cfg.TFTPRoot); err != nil {
		bad("tftp root: %v", err)
	} else if !fi.IsDir() {
		bad("tftp root %s is not a directory", cfg.TFTPRoot)
	}
	for _, f := range []struct{ name, path string }{{"kernel", cfg.Kernel}, {"initramfs", cfg.Initramfs}} {
		if f.path == "" {
			bad("%s is empty: name the compute image's %s file", f.name, f.name)
		} else if fi, err := os.Stat(f.path); err != nil {
			bad("%s: %v", f.name, err)
		} else if !fi.Mode().IsRegular() {
			bad("%s %s is not a regular file", f.name, f.path)
		}
	}
	return errors.Join(errs...)
}

// validatePool checks the DHCP settings of ModeDHCP against the LAN's subnet.
func (cfg *Config) validatePool() []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("boot config: "+format, args...))
	}
	ones, bits := cfg.Netmask.Size()
	if bits != 32 || ones == 0 || ones > 30 {
		bad("netmask %q is not an IPv4 netmask from /1 to /30", cfg.Netmask.String())
		return errs
	}
	if cfg.ServerIP.To4() == nil {
		return errs
	}
	lan := &net.IPNet{IP: cfg.ServerIP.Mask(cfg.Netmask), Mask: cfg.Netmask}
	network, broadcast := ipUint(lan.IP), ipUint(lan.IP)|^ipUint(net.IP(cfg.Netmask))
	inLAN := func(name string, ip net.IP) bool {
		switch {
		case ip.To4() == nil:
			bad("%s %q is not an IPv4 address", name, ipString(ip))
		case !lan.Contains(ip):
			bad("%s %s is outside the LAN %s", name, ip, lan)
		case ipUint(ip) == network || ipUint(ip) == broadcast:
			bad("%s %s is the network or broadcast address of %s", name, ip, lan)
		default:
			return true
		}
		return false
	}
	okStart, okEnd := inLAN("pool start", cfg.PoolStart), inLAN("pool end", cfg.PoolEnd)
	if okStart && okEnd && ipUint(cfg.PoolStart) > ipUint(cfg.PoolEnd) {
		bad("pool start %s is after pool end %s", cfg.PoolStart, cfg.PoolEnd)
	}
	if okStart && okEnd && ipUint(cfg.PoolStart) == ipUint(cfg.PoolEnd) && cfg.PoolStart.Equal(cfg.ServerIP) {
		bad("pool %s holds only the server's own address", cfg.PoolStart)
	}
	if cfg.Router != nil {
		inLAN("router", cfg.Router)
	}
	for _, d := range cfg.DNS {
		if d.To4() == nil {
			bad("dns server %q is not an IPv4 address", ipString(d))
		}
	}
	return errs
}

func ipString(ip net.IP) string {
	if ip == nil {
		return ""
	}
	return ip.String()
}
