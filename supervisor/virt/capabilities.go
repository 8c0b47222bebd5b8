package virt

import (
	"context"
	"fmt"

	"libvirt.org/go/libvirtxml"
)

// Capabilities reports what the node offers: whether libvirt can run x86_64 guests
// with KVM, the node's CPUs and memory. KVM is what libvirt says (it found a usable
// /dev/kvm), which under nested virtualisation may still be unusable; the caller
// decides the domain type.
func (c *Conn) Capabilities(ctx context.Context) (Caps, error) {
	s, err := call(ctx, c.l.ConnectGetCapabilities)
	if err != nil {
		return Caps{}, fmt.Errorf("read hypervisor capabilities: %w", classify(err))
	}
	caps, err := parseCaps(s)
	if err != nil {
		return Caps{}, err
	}
	type nodeInfo struct {
		memKiB uint64
		cpus   int32
	}
	ni, err := call(ctx, func() (nodeInfo, error) {
		_, mem, cpus, _, _, _, _, _, err := c.l.NodeGetInfo()
		return nodeInfo{mem, cpus}, err
	})
	if err != nil {
		return Caps{}, fmt.Errorf("read node info: %w", classify(err))
	}
	caps.CPUs = int(ni.cpus)
	caps.MemoryBytes = ni.memKiB * 1024
	free, err := call(ctx, c.l.NodeGetFreeMemory)
	if err != nil {
		return Caps{}, fmt.Errorf("read free memory: %w", classify(err))
	}
	caps.FreeMemoryBytes = free
	return caps, nil
}

// parseCaps reads libvirt's capabilities XML.
func parseCaps(s string) (Caps, error) {
	var x libvirtxml.Caps
	if err := x.Unmarshal(s); err != nil {
		return Caps{}, fmt.Errorf("read hypervisor capabilities: %w", err)
	}
	caps := Caps{}
	if x.Host.CPU != nil {
		caps.Arch = x.Host.CPU.Arch
	}
	for _, g := range x.Guests {
		if g.OSType != "hvm" || g.Arch.Name != "x86_64" {
			continue
		}
		caps.Emulator = g.Arch.Emulator
		for _, m := range g.Arch.Machines {
			caps.Machines = append(caps.Machines, m.Name)
		}
		for _, d := range g.Arch.Domains {
			if d.Type == "kvm" {
				caps.KVM = true
			}
		}
	}
	return caps, nil
}
