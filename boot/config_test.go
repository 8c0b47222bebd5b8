package boot

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testFiles makes a TFTP root with iPXE binaries and a kernel and initramfs, filled
// with distinct random-looking bytes, and returns their paths.
func testFiles(t testing.TB) (tftpRoot, kernel, initramfs string) {
	t.Helper()
	dir := t.TempDir()
	tftpRoot = filepath.Join(dir, "ipxe")
	if err := os.Mkdir(tftpRoot, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(path string, size int, seed byte) {
		b := make([]byte, size)
		x := uint32(seed) + 1
		for i := range b {
			x = x*1664525 + 1013904223
			b[i] = byte(x >> 24)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(tftpRoot, FileBIOS), 300_001, 1)
	write(filepath.Join(tftpRoot, FileUEFI), 100_000, 2)
	kernel = filepath.Join(dir, "vmlinuz")
	initramfs = filepath.Join(dir, "initramfs")
	write(kernel, 200_017, 3)
	write(initramfs, 100_005, 4)
	write(filepath.Join(dir, "secret"), 10, 5)
	return tftpRoot, kernel, initramfs
}

func validConfig(t testing.TB) Config {
	root, k, i := testFiles(t)
	return Config{
		Interface: "lan0",
		ServerIP:  net.ParseIP("10.0.0.1"),
		Netmask:   net.CIDRMask(16, 32),
		Mode:      ModeDHCP,
		PoolStart: net.ParseIP("10.0.100.1"),
		PoolEnd:   net.ParseIP("10.0.199.254"),
		HTTPAddr:  "10.0.0.1:80",
		TFTPRoot:  root,
		Kernel:    k,
		Initramfs: i,
	}
}

// planFunc is a Planner made of a function.
type planFunc func(ctx context.Context, mac net.HardwareAddr) (Plan, error)

func (f planFunc) Plan(ctx context.Context, mac net.HardwareAddr) (Plan, error) { return f(ctx, mac) }

var computePlanner = planFunc(func(ctx context.Context, mac net.HardwareAddr) (Plan, error) {
	if mac[5] == 0xff {
		return Plan{Action: ActionLocal}, nil
	}
	return Plan{Action: ActionCompute, KernelArgs: computeArgs}, nil
})

func TestNewValidConfig(t *testing.T) {
	cfg := validConfig(t)
	s, err := New(cfg, computePlanner)
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.LeaseTime != DefaultLeaseTime {
		t.Errorf("lease time default: got %s", s.cfg.LeaseTime)
	}
	if got := s.BaseURL(); got != "http://10.0.0.1" {
		t.Errorf("base url with port 80: got %q", got)
	}
	cfg.HTTPAddr = ":8080"
	cfg.Mode = ModeOff
	cfg.Interface = ""
	cfg.Netmask = nil
	s, err = New(cfg, computePlanner)
	if err != nil {
		t.Fatalf("mode off without interface and netmask: %v", err)
	}
	if got := s.BaseURL(); got != "http://10.0.0.1:8080" {
		t.Errorf("base url with port 8080: got %q", got)
	}
	if s.Leases() != nil {
		t.Errorf("mode off has leases")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"no mode", func(c *Config) { c.Mode = "" }, `mode is empty: use "dhcp", "proxy" or "off"`},
		{"bad mode", func(c *Config) { c.Mode = "full" }, `mode "full" is unknown`},
		{"no interface", func(c *Config) { c.Interface = "" }, "interface is empty"},
		{"no server ip", func(c *Config) { c.ServerIP = nil }, `server ip "" is not an IPv4 address`},
		{"ipv6 server ip", func(c *Config) { c.ServerIP = net.ParseIP("fd00::1") }, `server ip "fd00::1" is not an IPv4`},
		{"no netmask", func(c *Config) { c.Netmask = nil }, "netmask"},
		{"pool outside lan", func(c *Config) { c.PoolStart = net.ParseIP("10.1.0.1") }, "pool start 10.1.0.1 is outside the LAN 10.0.0.0/16"},
		{"pool reversed", func(c *Config) { c.PoolStart, c.PoolEnd = c.PoolEnd, c.PoolStart }, "pool start 10.0.199.254 is after pool end 10.0.100.1"},
		{"pool broadcast", func(c *Config) { c.PoolEnd = net.ParseIP("10.0.255.255") }, "pool end 10.0.255.255 is the network or broadcast address"},
		{"pool missing", func(c *Config) { c.PoolEnd = nil }, `pool end "" is not an IPv4 address`},
		{"router outside", func(c *Config) { c.Router = net.ParseIP("192.168.1.1") }, "router 192.168.1.1 is outside the LAN"},
		{"dns ipv6", func(c *Config) { c.DNS = []net.IP{net.ParseIP("::1")} }, `dns server "::1" is not an IPv4`},
		{"lease too short", func(c *Config) { c.LeaseTime = time.Second }, "lease time 1s is too short"},
		{"no http addr", func(c *Config) { c.HTTPAddr = "" }, `http address ""`},
		{"http addr port", func(c *Config) { c.HTTPAddr = "10.0.0.1:http" }, `port "http" is not a number`},
		{"no tftp root", func(c *Config) { c.TFTPRoot = "" }, "tftp root is empty"},
		{"tftp root missing", func(c *Config) { c.TFTPRoot = "/nonexistent/ipxe" }, "tftp root: stat /nonexistent/ipxe"},
		{"tftp root a file", func(c *Config) { c.TFTPRoot = c.Kernel }, "is not a directory"},
		{"no kernel", func(c *Config) { c.Kernel = "" }, "kernel is empty"},
		{"initramfs missing", func(c *Config) { c.Initramfs = "/nonexistent/initrd" }, "initramfs: stat /nonexistent/initrd"},
		{"initramfs a dir", func(c *Config) { c.Initramfs = c.TFTPRoot }, "is not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := validConfig(t)
			tc.change(&cfg)
			_, err := New(cfg, computePlanner)
			if err == nil {
				t.Fatal("config accepted")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "boot config: ") {
				t.Errorf("error %q: want it to say %q", err, tc.want)
			}
		})
	}

	if _, err := New(validConfig(t), nil); err == nil || !strings.Contains(err.Error(), "planner is nil") {
		t.Errorf("nil planner: got %v", err)
	}
	// All errors at once, not one per try.
	cfg := validConfig(t)
	cfg.Mode, cfg.HTTPAddr, cfg.Kernel = "x", "", ""
	_, err := New(cfg, computePlanner)
	if err == nil || strings.Count(err.Error(), "boot config:") != 3 {
		t.Errorf("three mistakes: got %v", err)
	}
}

func TestNewMovesCorruptLeaseFileAside(t *testing.T) {
	cfg := validConfig(t)
	cfg.LeaseFile = filepath.Join(t.TempDir(), "leases.json")
	if err := os.WriteFile(cfg.LeaseFile, []byte("[{"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, computePlanner)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Leases()) != 0 {
		t.Errorf("leases from a corrupt file: %v", s.Leases())
	}
	if _, err := os.Stat(cfg.LeaseFile + ".bad"); err != nil {
		t.Errorf("corrupt lease file not moved aside: %v", err)
	}
}
