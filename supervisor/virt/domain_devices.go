package virt

import (
	"context"
	"fmt"

	"github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"
)

// AttachDisk adds disk d to the domain uuid. A running (or paused) domain gets it at
// once and keeps it in its definition; a shut-off one only in its definition. The ide
// bus cannot take disks while the domain runs.
//
// The disk's target is Target(d.Bus, index) when that is free, else the first free
// target on its bus, in the definition and in the running domain alike: a disk that
// was detached but that the guest has not released yet still holds its target. With
// disks appended in order and none removed, the per-bus index is where DomainXML puts
// the disk at the next start. ErrExists when the image is attached already.
func (c *Conn) AttachDisk(ctx context.Context, uuid string, d Disk, index int) error {
	op := "attach disk " + d.Path + " to domain " + uuid
	if err := d.validate(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if _, err := Target(d.Bus, index); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	dom, flags, err := c.deviceTarget(ctx, uuid)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	live := flags&uint32(libvirt.DomainDeviceModifyLive) != 0
	if d.Bus == BusIDE && live {
		return fmt.Errorf("%s: %w: ide disks cannot be added while the server runs: shut it down first, or use virtio or scsi", op, ErrInvalid)
	}
	defs, err := c.deviceDefs(ctx, dom, flags)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	taken := map[string]bool{}
	for _, def := range defs {
		disks := 0
		for _, x := range def.Devices.Disks {
			if x.Target != nil {
				taken[x.Target.Dev] = true
			}
			if x.Device == "cdrom" {
				continue
			}
			disks++
			if diskFile(x) == d.Path {
				return fmt.Errorf("%s: %w: the server has it as %s already", op, ErrExists, x.Target.Dev)
			}
		}
		if disks >= MaxDisks {
			return fmt.Errorf("%s: %w: the server has %d disks, the most it can have", op, ErrInvalid, disks)
		}
	}
	target, _ := Target(d.Bus, index)
	for i := 0; taken[target]; i++ {
		if i == MaxDisks {
			return fmt.Errorf("%s: %w: no free target on the %s bus", op, ErrInvalid, d.Bus)
		}
		target, _ = Target(d.Bus, i)
	}
	if d.Bus == BusSCSI {
		if err := c.ensureSCSIController(ctx, dom, flags); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	x, err := marshalDisk(diskDef(d, target))
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if err := call0(ctx, func() error { return c.l.DomainAttachDeviceFlags(dom, x, flags) }); err != nil {
		return fmt.Errorf("%s as %s: %w", op, target, classify(err))
	}
	return nil
}

// DetachDisk removes the disk whose image is d.Path from the domain uuid: from its
// definition, and from the running domain when it runs. The disk is found by its
// path, so targets that moved since (a disk detached before it) do not matter; index
// (with d.Bus) names the target only when d.Path is empty. ErrNotFound when the
// domain has no such disk.
//
// A running guest must release the device: Linux does at once, and scsi disks go at
// once anyway; a virtio disk of a guest without an OS that handles hot-unplug stays in
// the running domain (libvirt gives up waiting after 5 s and reports success) until
// the guest lets go or the domain stops. It is gone from the definition either way.
func (c *Conn) DetachDisk(ctx context.Context, uuid string, d Disk, index int) error {
	op := "detach disk " + d.Path + " from domain " + uuid
	var byTarget string
	if d.Path == "" {
		t, err := Target(d.Bus, index)
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		byTarget = t
	}
	dom, flags, err := c.deviceTarget(ctx, uuid)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	defs, err := c.deviceDefs(ctx, dom, flags)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	found := false
	// The running domain first: it is the one that can refuse (ide).
	for i := len(defs) - 1; i >= 0; i-- {
		flag := libvirt.DomainDeviceModifyConfig
		if i == 1 {
			flag = libvirt.DomainDeviceModifyLive
		}
		var disk *libvirtxml.DomainDisk
		for j, x := range defs[i].Devices.Disks {
			if x.Device != "cdrom" && x.Target != nil && ((byTarget == "" && diskFile(x) == d.Path) || x.Target.Dev == byTarget) {
				disk = &defs[i].Devices.Disks[j]
				break
			}
		}
		if disk == nil {
			continue
		}
		found = true
		if flag == libvirt.DomainDeviceModifyLive && disk.Target.Bus == string(BusIDE) {
			return fmt.Errorf("%s: %w: ide disks cannot be removed while the server runs: shut it down first", op, ErrInvalid)
		}
		x, err := marshalDisk(libvirtxml.DomainDisk{
			Device: "disk",
			Target: &libvirtxml.DomainDiskTarget{Dev: disk.Target.Dev, Bus: disk.Target.Bus},
		})
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		if err := call0(ctx, func() error { return c.l.DomainDetachDeviceFlags(dom, x, uint32(flag)) }); err != nil {
			return fmt.Errorf("%s at %s: %w", op, disk.Target.Dev, classify(err))
		}
	}
	if !found {
		return fmt.Errorf("%s: %w: the server has no such disk", op, ErrNotFound)
	}
	return nil
}

// ChangeMedia puts the ISO image at isoPath into the domain's CD-ROM drive, or ejects
// the media when isoPath is empty; at once when the domain runs, and in its
// definition. A domain defined without a CD-ROM drive cannot get media.
func (c *Conn) ChangeMedia(ctx context.Context, uuid string, isoPath string) error {
	op := "change CD-ROM media of domain " + uuid
	if isoPath != "" {
		if err := checkPath("CD-ROM image", isoPath); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	dom, flags, err := c.deviceTarget(ctx, uuid)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	has, err := c.hasCDROM(ctx, dom)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if !has {
		return fmt.Errorf("%s: %w: the server has no CD-ROM drive: add one to its definition (while it is shut off)", op, ErrInvalid)
	}
	x, err := marshalDisk(cdromDef(isoPath))
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	err = call0(ctx, func() error {
		return c.l.DomainUpdateDeviceFlags(dom, x, libvirt.DomainDeviceModifyFlags(flags))
	})
	if err != nil {
		return fmt.Errorf("%s: %w", op, classify(err))
	}
	return nil
}

// deviceTarget looks the domain up and chooses the flags of a device change: the
// definition always, the running domain too when it is active.
func (c *Conn) deviceTarget(ctx context.Context, uuid string) (libvirt.Domain, uint32, error) {
	dom, err := c.lookup(ctx, uuid)
	if err != nil {
		return dom, 0, err
	}
	st, err := c.state(ctx, dom)
	if err != nil {
		return dom, 0, classify(err)
	}
	flags := uint32(libvirt.DomainDeviceModifyConfig)
	if st != StateShutoff && st != StateCrashed && st != StateNoState {
		flags |= uint32(libvirt.DomainDeviceModifyLive)
	}
	return dom, flags, nil
}

// ensureSCSIController adds a virtio-scsi controller where the domain has no scsi
// controller (in its definition and, with the live flag, in the running domain);
// libvirt would otherwise add an emulated LSI one for the first scsi disk.
func (c *Conn) ensureSCSIController(ctx context.Context, dom libvirt.Domain, flags uint32) error {
	sc := scsiController()
	ctrl, err := sc.Marshal()
	if err != nil {
		return err
	}
	for _, which := range []struct {
		flag    libvirt.DomainDeviceModifyFlags
		xmlFlag libvirt.DomainXMLFlags
	}{
		{libvirt.DomainDeviceModifyConfig, libvirt.DomainXMLInactive},
		{libvirt.DomainDeviceModifyLive, 0},
	} {
		if flags&uint32(which.flag) == 0 {
			continue
		}
		def, err := c.domainDef(ctx, dom, which.xmlFlag)
		if err != nil {
			return err
		}
		has := false
		for _, ct := range def.Devices.Controllers {
			has = has || ct.Type == "scsi"
		}
		if has {
			continue
		}
		err = call0(ctx, func() error { return c.l.DomainAttachDeviceFlags(dom, ctrl, uint32(which.flag)) })
		if err != nil {
			return fmt.Errorf("add a virtio-scsi controller: %w", classify(err))
		}
	}
	return nil
}

// deviceDefs reads the definitions a device change touches: the domain's
// definition, and with the live flag the running domain's as the second.
func (c *Conn) deviceDefs(ctx context.Context, dom libvirt.Domain, flags uint32) ([]*libvirtxml.Domain, error) {
	def, err := c.domainDef(ctx, dom, libvirt.DomainXMLInactive)
	if err != nil {
		return nil, err
	}
	defs := []*libvirtxml.Domain{def}
	if flags&uint32(libvirt.DomainDeviceModifyLive) != 0 {
		live, err := c.domainDef(ctx, dom, 0)
		if err != nil {
			return nil, err
		}
		defs = append(defs, live)
	}
	return defs, nil
}

// diskFile is the image file of a disk element, or "".
func diskFile(x libvirtxml.DomainDisk) string {
	if x.Source == nil || x.Source.File == nil {
		return ""
	}
	return x.Source.File.File
}

// hasCDROM tells whether the domain's definition has the CD-ROM drive.
func (c *Conn) hasCDROM(ctx context.Context, dom libvirt.Domain) (bool, error) {
	def, err := c.domainDef(ctx, dom, libvirt.DomainXMLInactive)
	if err != nil {
		return false, err
	}
	for _, d := range def.Devices.Disks {
		if d.Device == "cdrom" && d.Target != nil && d.Target.Dev == cdromTarget {
			return true, nil
		}
	}
	return false, nil
}

// domainDef reads the domain's definition (flags 0: the running domain's).
func (c *Conn) domainDef(ctx context.Context, dom libvirt.Domain, flags libvirt.DomainXMLFlags) (*libvirtxml.Domain, error) {
	s, err := call(ctx, func() (string, error) { return c.l.DomainGetXMLDesc(dom, flags) })
	if err != nil {
		return nil, fmt.Errorf("read definition of %s: %w", dom.Name, classify(err))
	}
	var def libvirtxml.Domain
	if err := def.Unmarshal(s); err != nil {
		return nil, fmt.Errorf("read definition of %s: %w", dom.Name, err)
	}
	if def.Devices == nil {
		def.Devices = &libvirtxml.DomainDeviceList{}
	}
	return &def, nil
}

func marshalDisk(d libvirtxml.DomainDisk) (string, error) {
	s, err := d.Marshal()
	if err != nil {
		return "", fmt.Errorf("marshal disk xml: %w", err)
	}
	return s, nil
}
