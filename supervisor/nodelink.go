package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/cairn-os/cairn/supervisor/agent"
	"github.com/cairn-os/cairn/supervisor/console"
	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/supervisor/virt"
)

// nodeLink is how the admin reaches nodes: its own libvirtd and consoles over unix
// sockets, a compute node's over mutual TLS through the node's agent on :16514.
type nodeLink struct {
	e *engine.Engine
	// consoleDir and logDir are where the admin node's own consoles are.
	consoleDir, logDir string
	// consoles lets the viewers of a serial console share it.
	consoles console.Hub
	// net applies the admin's own part of the networks (node_networks.go).
	net networkApplier
}

// hypervisor connects to node n's libvirtd: the admin's own over its unix socket, a
// compute node's over mutual TLS through its agent.
func (l *nodeLink) hypervisor(ctx context.Context, n engine.Node) (*virt.Conn, error) {
	if l.e == nil {
		return nil, errors.New("the engine is still starting")
	}
	if n.ID == engine.LocalNodeID {
		return virt.DialLocal(ctx, libvirtSock)
	}
	cert, err := l.e.CA().ClientCertificate(agent.AdminCN)
	if err != nil {
		return nil, err
	}
	lv, err := agent.DialLibvirt(ctx, net.JoinHostPort(n.Address, "16514"), agent.ClientTLS(cert, l.e.CA().Pool(), n.ID))
	if err != nil {
		return nil, err
	}
	return virt.New(lv), nil
}

// probe reads node n's libvirt and QEMU versions.
func (l *nodeLink) probe(ctx context.Context, n engine.Node) (string, error) {
	c, err := l.hypervisor(ctx, n)
	if err != nil {
		return "", err
	}
	defer c.Close()
	return agent.Describe(ctx, c.Libvirt())
}

// console says how to reach a server's console on node n. Viewers of one serial
// console share one connection to it (qemu serves one client at a time).
func (l *nodeLink) console(n engine.Node, uuid string, kind console.Kind) console.Target {
	t := l.consoleTarget(n, uuid, kind)
	if kind == console.Serial {
		t = l.consoles.Share(n.ID+"/"+uuid, t)
	}
	return t
}

func (l *nodeLink) consoleTarget(n engine.Node, uuid string, kind console.Kind) console.Target {
	if n.ID == engine.LocalNodeID {
		return console.LocalTarget(l.consoleDir, l.logDir, uuid, kind)
	}
	if l.e == nil {
		return console.Target{Dial: func(context.Context) (net.Conn, error) { return nil, errors.New("the engine is still starting") }}
	}
	cert, err := l.e.CA().ClientCertificate(agent.AdminCN)
	if err != nil {
		fail := func(context.Context) (net.Conn, error) { return nil, fmt.Errorf("admin client certificate: %w", err) }
		return console.Target{Dial: fail}
	}
	return agent.ConsoleTarget(net.JoinHostPort(n.Address, "16514"), agent.ClientTLS(cert, l.e.CA().Pool(), n.ID), uuid, kind)
}

// configure fills in the engine's ways to reach nodes.
func (l *nodeLink) configure(cfg *engine.Config) {
	cfg.ProbeNode = l.probe
	cfg.Hypervisor = l.hypervisor
	cfg.Console = l.console
	cfg.ConsoleDir, cfg.ConsoleLogDir = l.consoleDir, l.logDir
	cfg.ApplyNetwork = l.applyNetwork
}
