package virt

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/digitalocean/go-libvirt"
)

// Define defines d on the node (DomainDefineXML, validated against libvirt's schema).
// Defining a UUID that is already defined replaces its definition; a running domain
// keeps running as it is and uses the new definition from its next start.
func (c *Conn) Define(ctx context.Context, d Domain) error {
	x, err := DomainXML(d)
	if err != nil {
		return fmt.Errorf("define domain: %w", err)
	}
	_, err = call(ctx, func() (libvirt.Domain, error) { return c.l.DomainDefineXMLFlags(x, libvirt.DomainDefineValidate) })
	if err != nil {
		if libvirtCode(err) == libvirt.ErrOperationFailed && strings.Contains(err.Error(), "already exists") {
			// Another UUID has the name (libvirt's generic "operation failed").
			err = tagged{ErrExists, err}
		}
		return fmt.Errorf("define domain %s (%s): %w", d.Name, d.UUID, classify(err))
	}
	return nil
}

// Undefine removes the definition of the domain uuid, with any managed save image,
// NVRAM file and snapshot or checkpoint metadata. A domain libvirt does not know is
// not an error. A running domain keeps running (as a transient domain) until it is
// destroyed or shut down.
func (c *Conn) Undefine(ctx context.Context, uuid string) error {
	dom, err := c.lookup(ctx, uuid)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("undefine domain %s: %w", uuid, err)
	}
	flags := libvirt.DomainUndefineManagedSave | libvirt.DomainUndefineSnapshotsMetadata |
		libvirt.DomainUndefineNvram | libvirt.DomainUndefineCheckpointsMetadata
	err = call0(ctx, func() error { return c.l.DomainUndefineFlags(dom, flags) })
	if libvirtCode(err) == libvirt.ErrNoDomain {
		return nil // gone meanwhile
	}
	if err != nil {
		return fmt.Errorf("undefine domain %s (%s): %w", dom.Name, uuid, classify(err))
	}
	return nil
}

// Start boots the defined domain uuid. Starting a running domain is an error
// wrapping ErrInvalid.
func (c *Conn) Start(ctx context.Context, uuid string) error {
	return c.domainOp(ctx, "start", uuid, func(dom libvirt.Domain) error { return c.l.DomainCreate(dom) })
}

// Shutdown asks the guest to power off by pressing its ACPI power button and returns
// at once; the stopped event tells when it has. A guest without an ACPI-aware OS
// (or one that ignores the button) keeps running: the caller waits with a timeout
// and offers Destroy.
func (c *Conn) Shutdown(ctx context.Context, uuid string) error {
	return c.domainOp(ctx, "shut down", uuid, func(dom libvirt.Domain) error {
		return c.l.DomainShutdownFlags(dom, libvirt.DomainShutdownAcpiPowerBtn)
	})
}

// Destroy powers the domain off at once, as pulling the plug does. A domain that is
// already shut off is left as it is.
func (c *Conn) Destroy(ctx context.Context, uuid string) error {
	dom, err := c.lookup(ctx, uuid)
	if err != nil {
		return fmt.Errorf("force off domain %s: %w", uuid, err)
	}
	err = call0(ctx, func() error { return c.l.DomainDestroyFlags(dom, 0) })
	if libvirtCode(err) == libvirt.ErrOperationInvalid {
		if st, serr := c.State(ctx, uuid); serr == nil && st == StateShutoff {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("force off domain %s (%s): %w", dom.Name, uuid, classify(err))
	}
	return nil
}

// Reboot asks the guest to restart through ACPI; like Shutdown it needs a guest that
// listens.
func (c *Conn) Reboot(ctx context.Context, uuid string) error {
	return c.domainOp(ctx, "reboot", uuid, func(dom libvirt.Domain) error {
		return c.l.DomainReboot(dom, libvirt.DomainRebootAcpiPowerBtn)
	})
}

// Suspend pauses the domain's vCPUs; it keeps its memory.
func (c *Conn) Suspend(ctx context.Context, uuid string) error {
	return c.domainOp(ctx, "suspend", uuid, func(dom libvirt.Domain) error { return c.l.DomainSuspend(dom) })
}

// Resume lets a suspended domain run again.
func (c *Conn) Resume(ctx context.Context, uuid string) error {
	return c.domainOp(ctx, "resume", uuid, func(dom libvirt.Domain) error { return c.l.DomainResume(dom) })
}

// domainOp looks the domain up and runs f on it, wrapping errors with op.
func (c *Conn) domainOp(ctx context.Context, op, uuid string, f func(libvirt.Domain) error) error {
	dom, err := c.lookup(ctx, uuid)
	if err != nil {
		return fmt.Errorf("%s domain %s: %w", op, uuid, err)
	}
	if err := call0(ctx, func() error { return f(dom) }); err != nil {
		return fmt.Errorf("%s domain %s (%s): %w", op, dom.Name, uuid, classify(err))
	}
	return nil
}

// State returns the run state of the domain uuid; ErrNotFound when libvirt does not
// know it.
func (c *Conn) State(ctx context.Context, uuid string) (State, error) {
	dom, err := c.lookup(ctx, uuid)
	if err != nil {
		return "", fmt.Errorf("domain state %s: %w", uuid, err)
	}
	st, err := c.state(ctx, dom)
	if err != nil {
		return "", fmt.Errorf("domain state %s (%s): %w", dom.Name, uuid, classify(err))
	}
	return st, nil
}

func (c *Conn) state(ctx context.Context, dom libvirt.Domain) (State, error) {
	type res struct{ state, reason int32 }
	r, err := call(ctx, func() (res, error) {
		s, why, err := c.l.DomainGetState(dom, 0)
		return res{s, why}, err
	})
	if err != nil {
		return "", err
	}
	return stateOf(libvirt.DomainState(r.state)), nil
}

// List returns the run state of every domain libvirt knows on the node, by UUID.
func (c *Conn) List(ctx context.Context) (map[string]State, error) {
	doms, err := call(ctx, func() ([]libvirt.Domain, error) {
		d, _, err := c.l.ConnectListAllDomains(1, libvirt.ConnectListDomainsActive|libvirt.ConnectListDomainsInactive)
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("list domains: %w", classify(err))
	}
	out := make(map[string]State, len(doms))
	for _, dom := range doms {
		st, err := c.state(ctx, dom)
		if libvirtCode(err) == libvirt.ErrNoDomain {
			continue // a transient domain that ended meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("list domains: state of %s: %w", dom.Name, classify(err))
		}
		out[formatUUID(dom.UUID)] = st
	}
	return out, nil
}

func stateOf(s libvirt.DomainState) State {
	switch s {
	case libvirt.DomainRunning:
		return StateRunning
	case libvirt.DomainBlocked:
		return StateBlocked
	case libvirt.DomainPaused:
		return StatePaused
	case libvirt.DomainShutdown:
		return StateShutdown
	case libvirt.DomainShutoff:
		return StateShutoff
	case libvirt.DomainCrashed:
		return StateCrashed
	case libvirt.DomainPmsuspended:
		return StatePMSuspended
	}
	return StateNoState
}
