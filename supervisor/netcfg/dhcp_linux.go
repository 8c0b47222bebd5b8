package netcfg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
)

// DHCPOption tunes the DHCP client.
type DHCPOption func(*dhcpConfig)

type dhcpConfig struct {
	resolvConf string
	hostname   string
	timeout    time.Duration
	retries    int
}

// WithResolvConf writes the lease's name servers to path ("/etc/resolv.conf").
// Without it name servers are left alone.
func WithResolvConf(path string) DHCPOption { return func(c *dhcpConfig) { c.resolvConf = path } }

// WithHostname sends the host name to the server (option 12), so its leases show it.
func WithHostname(name string) DHCPOption { return func(c *dhcpConfig) { c.hostname = name } }

// WithTimeout sets how long one try waits for an answer (5 s) and how many tries
// there are (3).
func WithTimeout(perTry time.Duration, tries int) DHCPOption {
	return func(c *dhcpConfig) { c.timeout, c.retries = perTry, tries }
}

func newConfig(opts []DHCPOption) dhcpConfig {
	c := dhcpConfig{timeout: 5 * time.Second, retries: 3}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// Lease is an address obtained over DHCP.
type Lease struct {
	// Interface is the name of the interface the lease is for.
	Interface string
	// Address is the leased address with the network's prefix length.
	Address netip.Prefix
	// Router is the default gateway; not valid when the server offered none.
	Router netip.Addr
	// DNS are the name servers the server offered.
	DNS []netip.Addr
	// Domain is the DNS domain the server offered, if any.
	Domain string
	// Server is the DHCP server's identifier.
	Server netip.Addr
	// Duration is the lease time, counted from Obtained.
	Duration time.Duration
	// Obtained is when the server acknowledged the lease.
	Obtained time.Time

	raw *nclient4.Lease
}

// RenewAt is when the lease should be renewed: half-way through (RFC 2131's T1).
func (l Lease) RenewAt() time.Time { return l.Obtained.Add(l.Duration / 2) }

// Expires is when the lease ends unless renewed.
func (l Lease) Expires() time.Time { return l.Obtained.Add(l.Duration) }

// DHCP brings the interface up, obtains a lease, and applies it: the address, the
// default route through the router, and the name servers (with WithResolvConf).
// Keep the lease with Maintain, or the server gives the address to another machine
// when it expires.
func DHCP(ctx context.Context, link netlink.Link, logger *slog.Logger, opts ...DHCPOption) (Lease, error) {
	cfg := newConfig(opts)
	name := link.Attrs().Name
	logger = logger.With("component", "netcfg", "interface", name)
	if err := Up(link); err != nil {
		return Lease{}, err
	}
	c, err := newClient(name, cfg, logger)
	if err != nil {
		return Lease{}, err
	}
	defer c.Close()
	raw, err := c.Request(ctx, modifiers(cfg)...)
	if err != nil {
		return Lease{}, fmt.Errorf("dhcp on %s: no lease (is a DHCP server on this network, and the cable in?): %w", name, err)
	}
	lease, err := fromRaw(name, raw)
	if err != nil {
		return Lease{}, err
	}
	if err := apply(link, lease, Lease{}, cfg); err != nil {
		return Lease{}, err
	}
	logger.Info("dhcp lease obtained", "address", lease.Address, "router", lease.Router, "dns", lease.DNS, "lease", lease.Duration)
	return lease, nil
}

// Renew asks the server that gave the lease to extend it, and applies the answer
// (the address may change).
func Renew(ctx context.Context, link netlink.Link, lease Lease, logger *slog.Logger, opts ...DHCPOption) (Lease, error) {
	cfg := newConfig(opts)
	name := link.Attrs().Name
	logger = logger.With("component", "netcfg", "interface", name)
	if lease.raw == nil {
		return Lease{}, fmt.Errorf("dhcp renew on %s: the lease did not come from DHCP", name)
	}
	c, err := newClient(name, cfg, logger)
	if err != nil {
		return Lease{}, err
	}
	defer c.Close()
	raw, err := c.Renew(ctx, lease.raw, modifiers(cfg)...)
	if err != nil {
		return Lease{}, fmt.Errorf("dhcp renew on %s: %w", name, err)
	}
	nl, err := fromRaw(name, raw)
	if err != nil {
		return Lease{}, err
	}
	if err := apply(link, nl, lease, cfg); err != nil {
		return Lease{}, err
	}
	logger.Debug("dhcp lease renewed", "address", nl.Address, "lease", nl.Duration)
	return nl, nil
}

// Maintain keeps the lease until ctx ends: it renews half-way through, retries a
// failed renewal at half the remaining time, and starts over with DHCP when the server
// refuses or the lease ran out. It returns ctx's error.
func Maintain(ctx context.Context, link netlink.Link, lease Lease, logger *slog.Logger, opts ...DHCPOption) error {
	log := logger.With("component", "netcfg", "interface", link.Attrs().Name)
	next := lease.RenewAt()
	for {
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		var err error
		var nl Lease
		var nak *nclient4.ErrNak
		if time.Now().Before(lease.Expires()) {
			nl, err = Renew(ctx, link, lease, logger, opts...)
		}
		if !time.Now().Before(lease.Expires()) || errors.As(err, &nak) {
			nl, err = DHCP(ctx, link, logger, opts...)
		}
		if err == nil {
			lease, next = nl, nl.RenewAt()
			continue
		}
		wait := max(time.Until(lease.Expires())/2, 10*time.Second)
		log.Warn("dhcp lease not renewed", "err", err, "retry_in", wait.Round(time.Second), "expires", lease.Expires())
		next = time.Now().Add(wait)
	}
}

func newClient(name string, cfg dhcpConfig, logger *slog.Logger) (*nclient4.Client, error) {
	c, err := nclient4.New(name, nclient4.WithTimeout(cfg.timeout), nclient4.WithRetry(max(cfg.retries, 1)), nclient4.WithLogger(slogDHCP{logger}))
	if err != nil {
		return nil, fmt.Errorf("dhcp on %s: %w", name, err)
	}
	return c, nil
}

func modifiers(cfg dhcpConfig) []dhcpv4.Modifier {
	m := []dhcpv4.Modifier{dhcpv4.WithRequestedOptions(
		dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer,
		dhcpv4.OptionDomainName, dhcpv4.OptionIPAddressLeaseTime)}
	if cfg.hostname != "" {
		m = append(m, dhcpv4.WithOption(dhcpv4.OptHostName(cfg.hostname)))
	}
	return m
}

func fromRaw(name string, raw *nclient4.Lease) (Lease, error) {
	ack := raw.ACK
	ip, ok := netip.AddrFromSlice(ack.YourIPAddr)
	if !ok || !ip.Unmap().Is4() || ip.Unmap().IsUnspecified() {
		return Lease{}, fmt.Errorf("dhcp on %s: the server acknowledged no address (%s)", name, ack.YourIPAddr)
	}
	ip = ip.Unmap()
	mask := ack.SubnetMask()
	if mask == nil {
		mask = ack.YourIPAddr.DefaultMask()
	}
	ones, bits := mask.Size()
	if bits != 32 {
		return Lease{}, fmt.Errorf("dhcp on %s: the server sent the bad subnet mask %s", name, mask)
	}
	l := Lease{
		Interface: name,
		Address:   netip.PrefixFrom(ip, ones),
		Domain:    ack.DomainName(),
		Duration:  ack.IPAddressLeaseTime(time.Hour),
		Obtained:  raw.CreationTime,
		raw:       raw,
	}
	if rs := ack.Router(); len(rs) > 0 {
		if a, ok := netip.AddrFromSlice(rs[0]); ok && !a.Unmap().IsUnspecified() {
			l.Router = a.Unmap()
		}
	}
	for _, d := range ack.DNS() {
		if a, ok := netip.AddrFromSlice(d); ok {
			l.DNS = append(l.DNS, a.Unmap())
		}
	}
	if a, ok := netip.AddrFromSlice(ack.ServerIdentifier()); ok {
		l.Server = a.Unmap()
	}
	return l, nil
}

// apply puts a lease on the interface, replacing the previous lease's address.
func apply(link netlink.Link, l, prev Lease, cfg dhcpConfig) error {
	if err := AddressAdd(link, l.Address); err != nil {
		return err
	}
	if prev.Address.IsValid() && prev.Address != l.Address {
		if err := AddressDel(link, prev.Address); err != nil {
			return err
		}
	}
	if l.Router.IsValid() {
		if err := DefaultRoute(l.Router, link); err != nil {
			return err
		}
	}
	if cfg.resolvConf != "" && len(l.DNS) > 0 {
		if err := WriteResolvConf(cfg.resolvConf, l.DNS, l.Domain, "the DHCP lease on "+l.Interface); err != nil {
			return err
		}
	}
	return nil
}

// WriteResolvConf replaces path with a resolv.conf that names servers and search
// domain; from says where they came from, in a comment. The file is replaced in one
// step, so resolvers never read half of it.
func WriteResolvConf(path string, servers []netip.Addr, domain, from string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by Cairn from %s.\n", from)
	if domain != "" && !strings.ContainsAny(domain, " \t\n") {
		fmt.Fprintf(&b, "search %s\n", domain)
	}
	for _, s := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".resolv.conf-")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(b.String()); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// slogDHCP sends nclient4's messages to the debug log.
type slogDHCP struct{ logger *slog.Logger }

func (s slogDHCP) Printf(format string, v ...any) {
	s.logger.Debug("dhcp client", "msg", fmt.Sprintf(format, v...))
}

func (s slogDHCP) PrintMessage(prefix string, m *dhcpv4.DHCPv4) {
	s.logger.Debug("dhcp message", "what", strings.TrimSuffix(prefix, ":"), "type", m.MessageType().String(), "xid", m.TransactionID.String())
}

var _ nclient4.Logger = slogDHCP{}
