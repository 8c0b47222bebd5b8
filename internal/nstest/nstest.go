// Package nstest builds small networks of namespaces for tests that need real traffic:
// namespaces joined by veth pairs, an HTTP server that answers with the client's
// address, and clients (ping, HTTP, DHCP) that run inside a namespace. Everything it
// makes is removed in t.Cleanup; nothing touches the test's own namespace.
package nstest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairn-os/cairn/internal/testutil"
	"github.com/vishvananda/netns"
)

// IP runs ip(8) with args and fails the test when it fails.
func IP(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// New makes a namespace with loopback up and returns its name.
func New(t testing.TB, prefix string) string {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireProgram(t, "ip")
	name := testutil.Name(prefix)
	IP(t, "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	IP(t, "-n", name, "link", "set", "lo", "up")
	return name
}

// Veth joins nsA and nsB with a veth pair made inside nsA, with optional addresses.
func Veth(t testing.TB, nsA, ifA, cidrA, nsB, ifB, cidrB string) {
	t.Helper()
	IP(t, "-n", nsA, "link", "add", ifA, "type", "veth", "peer", "name", ifB, "netns", nsB)
	if cidrA != "" {
		IP(t, "-n", nsA, "addr", "add", cidrA, "dev", ifA)
	}
	if cidrB != "" {
		IP(t, "-n", nsB, "addr", "add", cidrB, "dev", ifB)
	}
	IP(t, "-n", nsA, "link", "set", ifA, "up")
	IP(t, "-n", nsB, "link", "set", ifB, "up")
}

// Handle opens namespace name; the caller closes it.
func Handle(t testing.TB, name string) netns.NsHandle {
	t.Helper()
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("open namespace %s: %v", name, err)
	}
	return h
}

// In runs f on a thread inside namespace h.
func In(h netns.NsHandle, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is thrown away afterwards (no UnlockOSThread): it may be left
		// in the other namespace if switching back fails.
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(h); err != nil {
			errc <- err
			return
		}
		err = f()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// Serve answers HTTP on addr inside namespace ns with tag followed by the client's
// address, until the test ends.
func Serve(t testing.TB, ns, addr, tag string) {
	t.Helper()
	h := Handle(t, ns)
	defer h.Close()
	var ln net.Listener
	if err := In(h, func() (err error) { ln, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatalf("listen %s in %s: %v", addr, ns, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		fmt.Fprint(w, tag+host)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// Get fetches url from inside namespace ns, from source address src when given, and
// returns the body or the error.
func Get(ns, src, url string) (string, error) {
	h, err := netns.GetFromName(ns)
	if err != nil {
		return "", err
	}
	defer h.Close()
	d := &net.Dialer{Timeout: 2 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (conn net.Conn, err error) {
			err = In(h, func() error { conn, err = d.DialContext(ctx, network, addr); return err })
			return conn, err
		},
	}}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// Ping reports whether namespace ns reaches addr. A failure is retried a few times
// (ARP, FDB learning), so only a path that never works reports false.
func Ping(ns, addr string) bool {
	for range 3 {
		if exec.Command("ip", "netns", "exec", ns, "busybox", "ping", "-c", "1", "-W", "1", addr).Run() == nil {
			return true
		}
	}
	return false
}

// ErrNoLease is wrapped by the error of a DHCP client that gave up without a lease.
var ErrNoLease = errors.New("no DHCP lease")

// dhcpScript is udhcpc's script: it puts the lease on the interface with the router
// as default route and the MTU, and writes what the server sent to $CAIRN_LEASE, one
// name=value a line.
const dhcpScript = `#!/bin/sh
case "$1" in
deconfig) ip -4 addr flush dev "$interface"; ip link set "$interface" up ;;
bound|renew)
	ip -4 addr flush dev "$interface"
	ip addr add "$ip/$mask" dev "$interface"
	[ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
	[ -n "$router" ] && ip route replace default via "$router" dev "$interface"
	printf 'ip=%s\nmask=%s\nsubnet=%s\nrouter=%s\ndns=%s\nhostname=%s\nlease=%s\nmtu=%s\nstaticroutes=%s\n' \
		"$ip" "$mask" "$subnet" "$router" "$dns" "$hostname" "$lease" "$mtu" "$staticroutes" >"$CAIRN_LEASE"
	;;
esac
exit 0
`

// DHCPClient is a run of busybox udhcpc. The zero value sends up to 8 discovers 2 s
// apart and asks for udhcpc's default options.
type DHCPClient struct {
	// Tries is how many discovers are sent before giving up; 8 when 0.
	Tries int
	// Seconds is how long to wait for an answer to each; 2 when 0.
	Seconds int
	// Request names options to ask for beyond udhcpc's defaults, e.g. "staticroutes".
	Request []string
}

// Lease runs the client on iface inside ns until it has a lease, puts the lease on
// the interface and returns what the server sent, by udhcpc's names: ip, mask (the
// prefix length), subnet, router, dns, hostname, lease (seconds), mtu, staticroutes.
// When udhcpc gives up without a lease, the error wraps ErrNoLease.
func (c DHCPClient) Lease(t testing.TB, ns, iface string) (map[string]string, error) {
	t.Helper()
	testutil.RequireProgram(t, "busybox")
	tries, secs := c.Tries, c.Seconds
	if tries == 0 {
		tries = 8
	}
	if secs == 0 {
		secs = 2
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "udhcpc.sh")
	lease := filepath.Join(dir, "lease")
	if err := os.WriteFile(script, []byte(dhcpScript), 0o755); err != nil {
		t.Fatal(err)
	}
	// Beyond the discovers, the guard leaves time for the request and its answer.
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(tries*secs+10)*time.Second)
	defer cancel()
	args := []string{"netns", "exec", ns, "busybox", "udhcpc", "-f", "-q", "-n",
		"-t", strconv.Itoa(tries), "-T", strconv.Itoa(secs), "-i", iface, "-s", script}
	for _, o := range c.Request {
		args = append(args, "-O", o)
	}
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Env = append(os.Environ(), "CAIRN_LEASE="+lease)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("udhcpc on %s in %s did not finish: %s", iface, ns, out)
	}
	if err != nil {
		return nil, fmt.Errorf("udhcpc on %s in %s: %w (%v): %s", iface, ns, ErrNoLease, err, out)
	}
	b, err := os.ReadFile(lease)
	if err != nil {
		return nil, fmt.Errorf("udhcpc on %s in %s: %w", iface, ns, err)
	}
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			got[k] = v
		}
	}
	return got, nil
}

// DHCP runs a DHCPClient with its defaults on iface inside ns and returns the lease
// as one line: "ip=… mask=… router=… mtu=… dns=… hostname=…".
func DHCP(t testing.TB, ns, iface string) (string, error) {
	t.Helper()
	l, err := DHCPClient{}.Lease(t, ns, iface)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("ip=%s mask=%s router=%s mtu=%s dns=%s hostname=%s",
		l["ip"], l["mask"], l["router"], l["mtu"], l["dns"], l["hostname"]), nil
}
