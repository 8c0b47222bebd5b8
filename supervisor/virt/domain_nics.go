package virt

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"
)

// nicReleaseWait bounds how long DetachNIC waits for a running guest to release the
// NIC. Linux answers the ACPI eject request within a second or two, under TCG too.
var nicReleaseWait = 20 * time.Second

// AttachNIC adds n to the domain uuid. A running (or paused) domain gets it at once
// (PCI hot-plug) and keeps it in its definition; a shut-off one only in its
// definition, so it has it from the next start. ErrExists when the domain has a NIC
// with n's MAC address already, in its definition or still in the running domain.
func (c *Conn) AttachNIC(ctx context.Context, uuid string, n NIC) error {
	op := "attach NIC " + n.MAC + " to domain " + uuid
	if err := n.validate(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	mac := canonicalMAC(n.MAC)
	dom, flags, err := c.deviceTarget(ctx, uuid)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	defs, err := c.deviceDefs(ctx, dom, flags)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if findNIC(defs[0], mac) != nil {
		return fmt.Errorf("%s: %w: the server has a NIC with MAC address %s already: give the new one another address", op, ErrExists, mac)
	}
	if len(defs) > 1 && findNIC(defs[1], mac) != nil {
		return fmt.Errorf("%s: %w: the running server still has the NIC with MAC address %s that was removed, because the guest has not released it: power the server off, or give the new NIC another address", op, ErrExists, mac)
	}
	x, err := marshalNIC(nicDef(n))
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if err := call0(ctx, func() error { return c.l.DomainAttachDeviceFlags(dom, x, flags) }); err != nil {
		return fmt.Errorf("%s: %w", op, classify(err))
	}
	return nil
}

// DetachNIC removes the NIC with MAC address mac from the domain uuid: from its
// definition, and from the running domain when it runs. ErrNotFound, naming the MAC
// addresses the domain has, when it has no such NIC.
//
// A running guest must release the device (PCI hot-unplug through ACPI), which
// libvirt waits for only 5 s: DetachNIC waits until the running domain no longer has
// the NIC, up to 20 s in all. When the guest does not let go, the error wraps
// ErrNotReleased; the NIC is gone from the definition all the same, and from the
// running domain when the guest releases it or the domain stops.
func (c *Conn) DetachNIC(ctx context.Context, uuid, mac string) error {
	op := "detach NIC " + mac + " from domain " + uuid
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		return fmt.Errorf("%s: %w: MAC address %q: use six hexadecimal pairs as in 52:54:00:12:34:56", op, ErrInvalid, mac)
	}
	mac = hw.String()
	dom, flags, err := c.deviceTarget(ctx, uuid)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	defs, err := c.deviceDefs(ctx, dom, flags)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	found, live := false, false
	// The wait includes libvirt's own (5 s) in DomainDetachDeviceFlags.
	deadline := time.Now().Add(nicReleaseWait)
	// The running domain first: when it refuses, the definition stays as it was.
	for i := len(defs) - 1; i >= 0; i-- {
		flag := libvirt.DomainDeviceModifyConfig
		if i == 1 {
			flag = libvirt.DomainDeviceModifyLive
		}
		nic := findNIC(defs[i], mac)
		if nic == nil {
			continue
		}
		found = true
		// libvirt finds the NIC by its MAC address; the source makes the element
		// one it can parse.
		x, err := marshalNIC(libvirtxml.DomainInterface{MAC: nic.MAC, Source: nic.Source, Model: nic.Model})
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		if err := call0(ctx, func() error { return c.l.DomainDetachDeviceFlags(dom, x, uint32(flag)) }); err != nil {
			return fmt.Errorf("%s: %w", op, classify(err))
		}
		live = live || flag == libvirt.DomainDeviceModifyLive
	}
	if !found {
		return fmt.Errorf("%s: %w: the server has no NIC with that address; it has %s", op, ErrNotFound, describeMACs(defs))
	}
	if live {
		if err := c.waitNICReleased(ctx, dom, mac, deadline); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	return nil
}

// waitNICReleased polls the running domain's definition until it has no NIC with
// mac, up to deadline. libvirt reports the removal as an event too, but a poll also
// ends when the domain stops or goes away, and needs no subscription.
func (c *Conn) waitNICReleased(ctx context.Context, dom libvirt.Domain, mac string, deadline time.Time) error {
	wctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		def, err := c.domainDef(wctx, dom, 0)
		switch {
		case errors.Is(err, ErrNotFound):
			return nil
		case err != nil && wctx.Err() == nil:
			return err
		case err == nil && findNIC(def, mac) == nil:
			return nil
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%w within %s (does its OS handle PCI hot-unplug?): the NIC is gone from the server's definition, and goes from the running server when the server is powered off", ErrNotReleased, nicReleaseWait)
		case <-tick.C:
		}
	}
}

// findNIC returns def's interface with MAC address mac (canonical form), or nil.
func findNIC(def *libvirtxml.Domain, mac string) *libvirtxml.DomainInterface {
	for i, x := range def.Devices.Interfaces {
		if x.MAC != nil && canonicalMAC(x.MAC.Address) == mac {
			return &def.Devices.Interfaces[i]
		}
	}
	return nil
}

// describeMACs lists the MAC addresses of the NICs in defs, for an error message.
func describeMACs(defs []*libvirtxml.Domain) string {
	var macs []string
	seen := map[string]bool{}
	for _, def := range defs {
		for _, x := range def.Devices.Interfaces {
			if x.MAC == nil || seen[canonicalMAC(x.MAC.Address)] {
				continue
			}
			seen[canonicalMAC(x.MAC.Address)] = true
			macs = append(macs, canonicalMAC(x.MAC.Address))
		}
	}
	if len(macs) == 0 {
		return "no NICs"
	}
	return "NICs with MAC addresses " + strings.Join(macs, ", ")
}

// canonicalMAC is mac in lower case with colons, the form libvirt reports, or mac
// unchanged when it is no MAC address.
func canonicalMAC(mac string) string {
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return mac
	}
	return hw.String()
}

func marshalNIC(n libvirtxml.DomainInterface) (string, error) {
	s, err := n.Marshal()
	if err != nil {
		return "", fmt.Errorf("marshal interface xml: %w", err)
	}
	return s, nil
}
