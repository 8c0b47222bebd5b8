package boot

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-os/cairn/internal/testutil"
)

// logWriter sends the server's log lines to the test log.
type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// hostLAN is a namespace on a veth pair whose host end is a fresh 10.97.x.1/24.
type hostLAN struct {
	ns       *testutil.Netns
	serverIP string
	prefix   string // "10.97.x."
}

// lanSeq numbers the /24s of the tests in this process, from a random start so that
// two test processes rarely meet.
var lanSeq atomic.Int32

func init() { lanSeq.Store(int32(rand.IntN(240))) }

// freePrefix returns "10.97.x." for an x no interface of the host uses yet.
func freePrefix(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for range 240 {
		prefix := fmt.Sprintf("10.97.%d.", 10+int(lanSeq.Add(1))%240)
		used := false
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && strings.HasPrefix(n.IP.String(), prefix) {
				used = true
			}
		}
		if !used {
			return prefix
		}
	}
	t.Fatal("no free 10.97.x.0/24 on this host")
	return ""
}

func newHostLAN(t *testing.T, nsAddr bool) *hostLAN {
	t.Helper()
	prefix := freePrefix(t)
	nsCIDR := ""
	if nsAddr {
		nsCIDR = prefix + "2/24"
	}
	ns := testutil.NewNetns(t, prefix+"1/24", nsCIDR)
	return &hostLAN{ns: ns, serverIP: prefix + "1", prefix: prefix}
}

// startServer runs s until the test ends and waits until its sockets are open.
func startServer(t *testing.T, s *Server) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("Run did not return 15 s after its context ended")
		}
	})
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("server not ready after 10 s")
	}
}

func hostConfig(t *testing.T, lan *hostLAN, mode Mode) Config {
	root, k, i := testFiles(t)
	return Config{
		Interface: lan.ns.HostIf,
		ServerIP:  net.ParseIP(lan.serverIP),
		Netmask:   net.CIDRMask(24, 32),
		Mode:      mode,
		PoolStart: net.ParseIP(lan.prefix + "100"),
		PoolEnd:   net.ParseIP(lan.prefix + "109"),
		HTTPAddr:  lan.serverIP + ":0",
		TFTPRoot:  root,
		Kernel:    k,
		Initramfs: i,
		LeaseFile: filepath.Join(t.TempDir(), "leases.json"),
		Logger:    slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// run runs a program inside the namespace and returns its combined output.
func (l *hostLAN) run(t *testing.T, env []string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := l.ns.Command(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// helper runs this test binary inside the namespace as a client (see TestMain).
func (l *hostLAN) helper(t *testing.T, scenario string, env ...string) helperResult {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := l.ns.Command(ctx, exe)
	cmd.Env = append(os.Environ(), append([]string{helperEnv + "=" + scenario, "CAIRN_HELPER_IFACE=" + l.ns.NsIf}, env...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper %s: %v\n%s", scenario, err, stderr.String())
	}
	var res helperResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("helper %s output %q: %v", scenario, out, err)
	}
	return res
}

func (l *hostLAN) nsMAC(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("ip", "-n", l.ns.Name, "-j", "link", "show", "dev", l.ns.NsIf).Output()
	if err != nil {
		t.Fatal(err)
	}
	var links []struct{ Address string }
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		t.Fatalf("ip link output %q: %v", out, err)
	}
	return links[0].Address
}

func inPool(ip, prefix string) bool {
	for i := 100; i <= 109; i++ {
		if ip == fmt.Sprintf("%s%d", prefix, i) {
			return true
		}
	}
	return false
}

// TestHostFullDHCP serves a namespace in ModeDHCP and boots it with real clients:
// busybox udhcpc, the tftp-hpa client, curl, and nclient4 for iPXE's options.
func TestHostFullDHCP(t *testing.T) {
	testutil.RequireRoot(t)
	busybox := testutil.RequireProgram(t, "busybox")
	testutil.RequireProgram(t, "tftp")
	testutil.RequireProgram(t, "curl")
	t.Parallel()
	lan := newHostLAN(t, false)
	cfg := hostConfig(t, lan, ModeDHCP)
	s, err := New(cfg, computePlanner)
	if err != nil {
		t.Fatal(err)
	}
	startServer(t, s)
	base := s.BaseURL()
	if !strings.HasPrefix(base, "http://"+lan.serverIP+":") {
		t.Fatalf("base url %q", base)
	}

	dir := t.TempDir()
	record := filepath.Join(dir, "udhcpc.log")
	script := filepath.Join(dir, "udhcpc.sh")
	os.WriteFile(script, []byte(`#!/bin/sh
echo "$1 ip=$ip mask=$mask siaddr=$siaddr boot_file=$boot_file serverid=$serverid" >> `+record+`
if [ "$1" = bound ]; then ip addr replace "$ip/$mask" dev "$interface"; fi
exit 0
`), 0o755)
	udhcpc := func(t *testing.T, extra ...string) map[string]string {
		t.Helper()
		os.Remove(record)
		args := append([]string{"udhcpc", "-i", lan.ns.NsIf, "-f", "-q", "-n", "-t", "3", "-T", "2", "-s", script,
			"-x", "hostname:cairn-test"}, extra...)
		if out, err := lan.run(t, nil, busybox, args...); err != nil {
			t.Fatalf("udhcpc: %v\n%s", err, out)
		}
		b, _ := os.ReadFile(record)
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 0 && f[0] == "bound" {
				got := map[string]string{}
				for _, kv := range f[1:] {
					k, v, _ := strings.Cut(kv, "=")
					got[k] = v
				}
				return got
			}
		}
		t.Fatalf("udhcpc never bound:\n%s", b)
		return nil
	}

	t.Run("udhcpc gets a stable address and no boot file", func(t *testing.T) {
		first := udhcpc(t)
		if !inPool(first["ip"], lan.prefix) || first["mask"] != "24" || first["serverid"] != lan.serverIP {
			t.Fatalf("first lease %v", first)
		}
		if first["boot_file"] != "" {
			t.Errorf("ordinary client got boot file %q", first["boot_file"])
		}
		second := udhcpc(t)
		if second["ip"] != first["ip"] {
			t.Errorf("second lease %s, first %s: same MAC, same address expected", second["ip"], first["ip"])
		}
		mac := lan.nsMAC(t)
		var found bool
		for _, l := range s.Leases() {
			if l.MAC.String() == mac {
				found = l.IP.String() == first["ip"] && l.Hostname == "cairn-test" && l.Expiry.After(time.Now())
			}
		}
		if !found {
			t.Errorf("Leases() has no running lease %s → %s (cairn-test): %+v", mac, first["ip"], s.Leases())
		}
		b, err := os.ReadFile(cfg.LeaseFile)
		if err != nil || !strings.Contains(string(b), mac) || !strings.Contains(string(b), first["ip"]) {
			t.Errorf("lease file %s: %v\n%s", cfg.LeaseFile, err, b)
		}
	})

	t.Run("udhcpc as bios pxe gets undionly.kpxe over tftp", func(t *testing.T) {
		got := udhcpc(t, "-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000")
		if got["boot_file"] != FileBIOS || got["siaddr"] != lan.serverIP {
			t.Errorf("bios pxe: %v", got)
		}
	})

	t.Run("ipxe gets the http script and no proxydhcp wait", func(t *testing.T) {
		res := lan.helper(t, "dhcp", "CAIRN_HELPER_STEP=lease", "CAIRN_HELPER_MAC=52:54:00:12:34:56",
			"CAIRN_HELPER_VENDOR=PXEClient:Arch:00007:UNDI:003016", "CAIRN_HELPER_USERCLASS=iPXE", "CAIRN_HELPER_ARCH=7")
		if res.Err != "" || len(res.Replies) != 2 {
			t.Fatalf("ipxe lease: %+v", res)
		}
		for _, r := range res.Replies {
			if r.File != base+"/boot.ipxe" || r.Opt67 != base+"/boot.ipxe" || !bytes.Equal(r.Opt175, []byte{176, 1, 1}) || !inPool(r.YourIP, lan.prefix) {
				t.Errorf("ipxe %s: %+v", r.Type, r)
			}
		}
		if res.Replies[1].Type != "ACK" {
			t.Errorf("second reply %s, want ACK", res.Replies[1].Type)
		}
	})

	t.Run("uefi pxe gets ipxe.efi over tftp", func(t *testing.T) {
		for _, arch := range []string{"7", "9"} {
			res := lan.helper(t, "dhcp", "CAIRN_HELPER_STEP=offer", "CAIRN_HELPER_MAC=52:54:00:00:00:0"+arch,
				"CAIRN_HELPER_VENDOR=PXEClient:Arch:0000"+arch+":UNDI:003016", "CAIRN_HELPER_ARCH="+arch)
			if res.Err != "" || len(res.Replies) != 1 {
				t.Fatalf("arch %s: %+v", arch, res)
			}
			r := res.Replies[0]
			if r.File != FileUEFI || r.ServerIP != lan.serverIP || r.Opt66 != lan.serverIP || len(r.Opt175) != 0 {
				t.Errorf("arch %s: %+v", arch, r)
			}
		}
	})

	t.Run("request for a foreign address gets nak", func(t *testing.T) {
		res := lan.helper(t, "dhcp", "CAIRN_HELPER_STEP=reboot", "CAIRN_HELPER_MAC=52:54:00:00:00:99",
			"CAIRN_HELPER_REQIP=192.168.77.7")
		if res.Err != "" || len(res.Replies) != 1 || res.Replies[0].Type != "NAK" {
			t.Errorf("foreign address: %+v", res)
		}
	})

	t.Run("tftp fetches the ipxe binaries byte-identical", func(t *testing.T) {
		for _, f := range []string{FileBIOS, FileUEFI} {
			local := filepath.Join(dir, "got-"+f)
			out, err := lan.run(t, nil, "tftp", "-m", "binary", lan.serverIP, "-c", "get", f, local)
			got, rerr := os.ReadFile(local)
			want, _ := os.ReadFile(filepath.Join(cfg.TFTPRoot, f))
			if err != nil || rerr != nil || !bytes.Equal(got, want) {
				t.Errorf("tftp get %s: %v %v: %d bytes, want %d\n%s", f, err, rerr, len(got), len(want), out)
			}
		}
	})

	t.Run("tftp refuses traversal", func(t *testing.T) {
		for i, name := range []string{"../etc/passwd", "/etc/passwd", "../secret", "../../../../etc/passwd", "missing.efi"} {
			local := filepath.Join(dir, fmt.Sprintf("refused-%d", i))
			out, _ := lan.run(t, nil, "tftp", "-m", "binary", lan.serverIP, "-c", "get", name, local)
			if !strings.Contains(out, "Error code") {
				t.Errorf("tftp get %s: no TFTP error: %q", name, out)
			}
			if b, err := os.ReadFile(local); err == nil && len(b) > 0 {
				t.Errorf("tftp get %s: received %d bytes", name, len(b))
			}
		}
	})

	t.Run("curl gets scripts and files", func(t *testing.T) {
		curl := func(args ...string) string {
			t.Helper()
			out, err := lan.run(t, nil, "curl", append([]string{"-sS", "--max-time", "10"}, args...)...)
			if err != nil {
				t.Fatalf("curl %v: %v\n%s", args, err, out)
			}
			return out
		}
		if got := curl(base + "/boot.ipxe"); got != chainScript(base) {
			t.Errorf("/boot.ipxe:\n%s", got)
		}
		want, _ := nodeScript(base, testMAC, Plan{Action: ActionCompute, KernelArgs: computeArgs})
		got := curl(base + "/nodes/52-54-00-12-34-56.ipxe")
		if got != want || !strings.Contains(got, "cairn.token=jt_4f9a-Zk_81.x") {
			t.Errorf("node script:\n%s", got)
		}
		kernel, _ := os.ReadFile(cfg.Kernel)
		local := filepath.Join(dir, "vmlinuz")
		curl("-o", local, base+"/compute/vmlinuz")
		if b, _ := os.ReadFile(local); !bytes.Equal(b, kernel) {
			t.Errorf("kernel over http: %d bytes, want %d identical", len(b), len(kernel))
		}
		curl("-o", local, "-r", "1000-1999", base+"/compute/vmlinuz")
		if b, _ := os.ReadFile(local); !bytes.Equal(b, kernel[1000:2000]) {
			t.Errorf("kernel range: %d bytes", len(b))
		}
		for path, code := range map[string]string{
			"/compute/../../etc/passwd":         "400",
			"/compute/%2e%2e/%2e%2e/etc/passwd": "400",
			"/nodes/../../etc/passwd":           "400",
			"/etc/passwd":                       "404",
		} {
			if got := curl("--path-as-is", "-o", "/dev/null", "-w", "%{http_code}", base+path); got != code {
				t.Errorf("GET %s: %s, want %s", path, got, code)
			}
		}
	})

	t.Run("router solicitation gets a router advertisement", func(t *testing.T) {
		res := lan.helper(t, "rs")
		if res.Err != "" || res.RA == nil {
			t.Fatalf("no advertisement: %+v", res)
		}
		if res.RA.HopLimit != 255 || res.RA.Lifetime != 0 || !strings.HasPrefix(res.RA.From, "fe80::") {
			t.Errorf("advertisement %+v: want hop limit 255, lifetime 0, from a link-local address", res.RA)
		}
	})
}

// TestHostProxyDHCP serves a namespace whose addresses come from elsewhere: only PXE
// clients hear from us, and never get an address.
func TestHostProxyDHCP(t *testing.T) {
	testutil.RequireRoot(t)
	t.Parallel()
	lan := newHostLAN(t, true)
	cfg := hostConfig(t, lan, ModeProxy)
	cfg.Netmask, cfg.PoolStart, cfg.PoolEnd = nil, nil, nil
	s, err := New(cfg, computePlanner)
	if err != nil {
		t.Fatal(err)
	}
	startServer(t, s)
	base := s.BaseURL()

	t.Run("ordinary client gets no answer", func(t *testing.T) {
		res := lan.helper(t, "dhcp", "CAIRN_HELPER_STEP=offer", "CAIRN_HELPER_MAC=52:54:00:00:01:01", "CAIRN_HELPER_TIMEOUT_MS=300")
		if res.Err == "" || len(res.Replies) != 0 {
			t.Errorf("ordinary client answered: %+v", res)
		}
	})

	t.Run("bios pxe gets a proxy offer without address", func(t *testing.T) {
		res := lan.helper(t, "dhcp", "CAIRN_HELPER_STEP=offer", "CAIRN_HELPER_MAC=52:54:00:00:01:02",
			"CAIRN_HELPER_VENDOR=PXEClient:Arch:00000:UNDI:002001", "CAIRN_HELPER_ARCH=0")
		if res.Err != "" || len(res.Replies) != 1 {
			t.Fatalf("%+v", res)
		}
		r := res.Replies[0]
		if r.YourIP != "0.0.0.0" || r.File != FileBIOS || r.ServerIP != lan.serverIP || r.Opt60 != "PXEClient" || r.ServerID != lan.serverIP {
			t.Errorf("proxy offer %+v", r)
		}
	})

	t.Run("ipxe gets a proxy offer with the script", func(t *testing.T) {
		res := lan.helper(t, "dhcp", "CAIRN_HELPER_STEP=offer", "CAIRN_HELPER_MAC=52:54:00:12:34:56",
			"CAIRN_HELPER_VENDOR=PXEClient:Arch:00000:UNDI:002001", "CAIRN_HELPER_USERCLASS=iPXE", "CAIRN_HELPER_ARCH=0")
		if res.Err != "" || len(res.Replies) != 1 || res.Replies[0].File != base+"/boot.ipxe" || res.Replies[0].YourIP != "0.0.0.0" {
			t.Errorf("%+v", res)
		}
	})

	t.Run("pxe request on port 4011 gets an ack", func(t *testing.T) {
		res := lan.helper(t, "pxe4011", "CAIRN_HELPER_MAC=52:54:00:00:01:03", "CAIRN_HELPER_SERVER="+lan.serverIP,
			"CAIRN_HELPER_CIADDR="+lan.prefix+"2", "CAIRN_HELPER_VENDOR=PXEClient:Arch:00007:UNDI:003016", "CAIRN_HELPER_ARCH=7")
		if res.Err != "" || len(res.Replies) != 1 {
			t.Fatalf("%+v", res)
		}
		if r := res.Replies[0]; r.Type != "ACK" || r.File != FileUEFI || r.YourIP != "0.0.0.0" {
			t.Errorf("4011 ack %+v", r)
		}
	})

	if ls := s.Leases(); len(ls) != 0 {
		t.Errorf("proxy mode leased %+v", ls)
	}
}

// TestHostRunReportsMissingInterface checks that Run fails at once, naming the
// interface, when the LAN interface does not exist.
func TestHostRunReportsMissingInterface(t *testing.T) {
	testutil.RequireRoot(t)
	t.Parallel()
	lan := newHostLAN(t, false)
	cfg := hostConfig(t, lan, ModeDHCP)
	cfg.Interface = testutil.Name("nosuch")
	s, err := New(cfg, computePlanner)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = s.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), cfg.Interface) || ctx.Err() != nil {
		t.Errorf("Run with a missing interface: %v", err)
	}
}
