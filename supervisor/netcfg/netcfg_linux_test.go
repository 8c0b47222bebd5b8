package netcfg

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/cairn-os/cairn/internal/testutil"
	"github.com/cairn-os/cairn/supervisor/hostcmd"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// inNetns runs fn on an OS thread inside the named network namespace. The thread is
// never unlocked, so it ends with the goroutine and no other goroutine runs in the
// namespace by accident.
func inNetns(t *testing.T, name string, fn func() error) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		h, err := netns.GetFromName(name)
		if err != nil {
			errc <- fmt.Errorf("open netns %s: %w", name, err)
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := (hostcmd.Exec{}).Run(context.Background(), "ip", args...); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
}

func randomMAC() net.HardwareAddr {
	b := make([]byte, 3)
	rand.Read(b)
	return net.HardwareAddr{0x52, 0x54, 0x00, b[0], b[1], b[2]}
}

func TestLinks(t *testing.T) {
	n := testutil.NewNetns(t, "", "")
	mac := randomMAC()
	err := inNetns(t, n.Name, func() error {
		l, err := netlink.LinkByName(n.NsIf)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetHardwareAddr(l, mac); err != nil {
			return err
		}
		// By MAC, in any case and with hyphens; by name.
		for _, q := range []string{strings.ToUpper(mac.String()), strings.ReplaceAll(mac.String(), ":", "-"), n.NsIf} {
			got, err := FindLink(q)
			if err != nil || got.Attrs().Name != n.NsIf {
				return fmt.Errorf("FindLink(%q) = %v, %v; want %s", q, got, err, n.NsIf)
			}
		}
		// A bridge with the same MAC does not hide the veth.
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: testutil.Name("br"), HardwareAddr: mac}}
		if err := netlink.LinkAdd(br); err != nil {
			return err
		}
		if got, err := FindLink(mac.String()); err != nil || got.Attrs().Name != n.NsIf {
			return fmt.Errorf("FindLink(%s) with a bridge of that MAC = %v, %v", mac, got, err)
		}
		for _, q := range []string{"nosuch0", "52:54:00:ff:ff:fe"} {
			_, err := FindLink(q)
			if err == nil || !strings.Contains(err.Error(), n.NsIf+" ("+mac.String()+")") {
				return fmt.Errorf("FindLink(%q) err = %v; want one listing %s", q, err, n.NsIf)
			}
		}

		// Physical: a veth is not a network card, unless asked for.
		phys, err := Physical()
		if err != nil || len(phys) != 0 {
			return fmt.Errorf("Physical() = %v, %v; want none in a namespace with lo, a veth and a bridge", phys, err)
		}
		phys, err = Physical("veth")
		if err != nil || len(phys) != 1 || phys[0].Attrs().Name != n.NsIf {
			return fmt.Errorf(`Physical("veth") = %v, %v; want %s`, phys, err, n.NsIf)
		}

		// Addresses: adding twice is fine and leaves one.
		if err := Up(l); err != nil {
			return err
		}
		p := netip.MustParsePrefix("10.66.0.2/24")
		for i := 0; i < 2; i++ {
			if err := AddressAdd(l, p); err != nil {
				return fmt.Errorf("AddressAdd #%d: %w", i+1, err)
			}
		}
		var count int
		for _, a := range Addresses(l) {
			if a == p {
				count++
			}
		}
		if count != 1 {
			return fmt.Errorf("Addresses = %v; want %s once", Addresses(l), p)
		}

		// The default route is replaced, not added to.
		for _, gw := range []string{"10.66.0.1", "10.66.0.254"} {
			if err := DefaultRoute(netip.MustParseAddr(gw), l); err != nil {
				return err
			}
		}
		if gws := defaultRoutes(l); !slices.Equal(gws, []string{"10.66.0.254"}) {
			return fmt.Errorf("default routes via %v; want only 10.66.0.254", gws)
		}
		if err := AddressDel(l, p); err != nil || slices.Contains(Addresses(l), p) {
			return fmt.Errorf("AddressDel: %v, addresses %v", err, Addresses(l))
		}
		return AddressDel(l, p) // gone already: no error
	})
	if err != nil {
		t.Fatal(err)
	}
}

func defaultRoutes(l netlink.Link) []string {
	routes, _ := netlink.RouteList(l, netlink.FAMILY_V4)
	var gws []string
	for _, r := range routes {
		if (r.Dst == nil || r.Dst.IP.IsUnspecified()) && r.Gw != nil {
			gws = append(gws, r.Gw.String())
		}
	}
	return gws
}

// The DHCP client gets a lease from dnsmasq on the other end of a veth and applies
// it: afterwards a TCP connection to an address beyond the router goes through.
func TestDHCP(t *testing.T) {
	testutil.RequireProgram(t, "dnsmasq")
	// Namespace "server": dnsmasq on NsIf, which is also the router. Namespace
	// "client": the veth's other end, moved out of the host's namespace so the
	// default route the client sets cannot touch the host.
	server := testutil.NewNetns(t, "", "10.77.0.1/24")
	client := testutil.Name("cairn-")
	ipCmd(t, "netns", "add", client)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", client).Run() })
	ipCmd(t, "link", "set", server.HostIf, "netns", client)
	ipCmd(t, "-n", client, "link", "set", "lo", "up")
	ipCmd(t, "-n", server.Name, "addr", "add", "192.0.2.1/32", "dev", "lo")

	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := server.Command(ctx, "dnsmasq", "--keep-in-foreground", "--no-daemon", "--conf-file=/dev/null", "--port=0",
		"--user=root", "--pid-file", "--log-dhcp", "--log-facility=-", "--no-ping",
		"--interface="+server.NsIf, "--bind-interfaces",
		"--dhcp-range=10.77.0.50,10.77.0.60,255.255.255.0,2m",
		"--dhcp-option=option:router,10.77.0.1",
		"--dhcp-option=option:dns-server,10.77.0.53",
		"--dhcp-option=option:domain-name,lab.example",
		"--dhcp-leasefile="+filepath.Join(dir, "leases"))
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	p, err := hostcmd.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		p.Wait()
		if t.Failed() {
			t.Logf("dnsmasq:\n%s", log.String())
		}
	})

	// Something to reach through the default route: a listener on 192.0.2.1 in the
	// server's namespace, outside the leased network.
	lnc := make(chan net.Listener, 1)
	if err := inNetns(t, server.Name, func() error {
		ln, err := net.Listen("tcp", "192.0.2.1:0")
		lnc <- ln
		return err
	}); err != nil {
		t.Fatal(err)
	}
	ln := <-lnc
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("hello from beyond the router\n"))
			c.Close()
		}
	}()

	resolv := filepath.Join(dir, "resolv.conf")
	opts := []DHCPOption{WithResolvConf(resolv), WithHostname("cairn-test"), WithTimeout(2*time.Second, 5)}
	var kept Lease
	err = inNetns(t, client, func() error {
		link, err := FindLink(server.HostIf)
		if err != nil {
			return err
		}
		lease, err := DHCP(ctx, link, testLogger(t), opts...)
		if err != nil {
			return err
		}
		if !netip.MustParsePrefix("10.77.0.48/28").Contains(lease.Address.Addr()) || lease.Address.Bits() != 24 {
			return fmt.Errorf("lease address %s is not in dnsmasq's range", lease.Address)
		}
		if lease.Router.String() != "10.77.0.1" || !slices.Equal(lease.DNS, []netip.Addr{netip.MustParseAddr("10.77.0.53")}) ||
			lease.Domain != "lab.example" || lease.Duration != 2*time.Minute || lease.Server.String() != "10.77.0.1" {
			return fmt.Errorf("lease = %+v", lease)
		}
		if !slices.Contains(Addresses(link), lease.Address) {
			return fmt.Errorf("address %s not on %s: %v", lease.Address, link.Attrs().Name, Addresses(link))
		}
		if gws := defaultRoutes(link); !slices.Equal(gws, []string{"10.77.0.1"}) {
			return fmt.Errorf("default routes via %v; want 10.77.0.1", gws)
		}
		conn, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			return fmt.Errorf("connect through the default route: %w", err)
		}
		buf := make([]byte, 64)
		nr, _ := conn.Read(buf)
		conn.Close()
		if !strings.HasPrefix(string(buf[:nr]), "hello") {
			return fmt.Errorf("read %q through the default route", buf[:nr])
		}

		renewed, err := Renew(ctx, link, lease, testLogger(t), opts...)
		if err != nil {
			return err
		}
		if renewed.Address != lease.Address || !renewed.Obtained.After(lease.Obtained) {
			return fmt.Errorf("renewed lease %+v; was %+v", renewed, lease)
		}
		kept = renewed
		// Lose the address, as after a long outage.
		return AddressDel(link, lease.Address)
	})
	if err != nil {
		t.Fatal(err)
	}

	// Maintain, handed a lease that ran out, gets a new one and puts it back.
	kept.Obtained = time.Now().Add(-3 * time.Minute)
	mctx, mcancel := context.WithCancel(ctx)
	defer mcancel()
	maintained := make(chan error, 1)
	go func() {
		maintained <- inNetns(t, client, func() error {
			link, err := FindLink(server.HostIf)
			if err != nil {
				return err
			}
			return Maintain(mctx, link, kept, testLogger(t), opts...)
		})
	}()
	err = inNetns(t, client, func() error {
		link, err := FindLink(server.HostIf)
		if err != nil {
			return err
		}
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if slices.Contains(Addresses(link), kept.Address) {
				return nil
			}
		}
		return fmt.Errorf("Maintain did not restore %s: addresses %v", kept.Address, Addresses(link))
	})
	if err != nil {
		t.Error(err)
	}
	mcancel()
	if err := <-maintained; err != context.Canceled {
		t.Errorf("Maintain returned %v; want context.Canceled", err)
	}
	b, err := os.ReadFile(resolv)
	if err != nil || !strings.Contains(string(b), "nameserver 10.77.0.53\n") || !strings.Contains(string(b), "search lab.example\n") {
		t.Errorf("resolv.conf = %q, %v", b, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "leases")); !strings.Contains(string(b), " cairn-test ") {
		t.Errorf("dnsmasq's leases do not show the host name sent: %q", b)
	}
}

// With no DHCP server the client gives up within its tries and says what to check.
func TestDHCPNoServer(t *testing.T) {
	n := testutil.NewNetns(t, "", "")
	ctx := context.Background()
	err := inNetns(t, n.Name, func() error {
		link, err := FindLink(n.NsIf)
		if err != nil {
			return err
		}
		_, err = DHCP(ctx, link, testLogger(t), WithTimeout(300*time.Millisecond, 2))
		if err == nil || !strings.Contains(err.Error(), "is a DHCP server on this network") {
			return fmt.Errorf("DHCP without a server: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
