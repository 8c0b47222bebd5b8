package netnode

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	"github.com/cairn-os/cairn/supervisor/netdhcp"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// dhcpWant is one network's DHCP server as nn asks for it.
type dhcpWant struct {
	network int
	cfg     netdhcp.Config
}

// dhcpRun is one network's running DHCP server.
type dhcpRun struct {
	cfg    netdhcp.Config
	srv    *netdhcp.Server
	cancel context.CancelFunc
	done   chan struct{} // closed when the server's goroutine has returned
	// ifindex is the bridge's index when the server started: a socket stays bound to
	// the bridge it was made on, so a re-created bridge needs a new server.
	ifindex int
}

func (r *dhcpRun) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// reconcileDHCP runs one server per entry of want: it stops the servers of networks
// that are gone, restarts those whose settings changed, whose bridge was re-created or
// that failed, hands changed leases to the others, and starts the missing ones.
func (a *Applier) reconcileDHCP(want []dhcpWant) error {
	// Every failed server is restarted below; one that fails again sets it again.
	a.dhcpFailed.Store(false)
	keep := map[int]bool{}
	for _, w := range want {
		keep[w.network] = true
	}
	for id := range a.servers {
		if !keep[id] {
			a.stop(id, "network gone")
		}
	}
	if len(want) == 0 {
		return nil
	}
	h, err := handle(a.cfg.NS)
	if err != nil {
		return fmt.Errorf("netlink in namespace: %w", err)
	}
	defer h.Close()
	for _, w := range want {
		id, c := w.network, w.cfg
		br, err := h.LinkByName(c.Interface)
		if err != nil {
			return fmt.Errorf("dhcp for network %d: bridge %s: %w", id, c.Interface, err)
		}
		idx := br.Attrs().Index
		if r := a.servers[id]; r != nil {
			switch {
			case r.exited():
				a.stop(id, "failed before")
			case !sameSettings(r.cfg, c):
				a.stop(id, "settings changed")
			case r.ifindex != idx:
				a.stop(id, "bridge re-created")
			default:
				if !sameLeases(r.cfg.Leases, c.Leases) {
					if err := r.srv.SetLeases(c.Leases); err != nil {
						return fmt.Errorf("dhcp for network %d: %w", id, err)
					}
					r.cfg.Leases = c.Leases
				}
				continue
			}
		}
		if err := a.start(id, c, idx); err != nil {
			return err
		}
	}
	return nil
}

func (a *Applier) start(id int, c netdhcp.Config, ifindex int) error {
	srv, err := netdhcp.New(c, a.cfg.Logger)
	if err != nil {
		return fmt.Errorf("dhcp for network %d: %w", id, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &dhcpRun{cfg: c, srv: srv, cancel: cancel, done: make(chan struct{}), ifindex: ifindex}
	a.servers[id] = r
	go func() {
		defer close(r.done)
		if err := srv.ServeIn(ctx, a.cfg.NS); err != nil {
			a.log.Error("dhcp server failed, the next apply restarts it", "network", id, "err", err)
			a.dhcpFailed.Store(true)
		}
	}()
	return nil
}

// stop ends network id's server and waits until its socket is closed, so that a new
// server on the same bridge is the only one on port 67.
func (a *Applier) stop(id int, why string) {
	r := a.servers[id]
	if r == nil {
		return
	}
	r.cancel()
	<-r.done
	delete(a.servers, id)
	a.log.Info("dhcp server stopped", "network", id, "reason", why)
}

func sameSettings(x, y netdhcp.Config) bool {
	return x.Interface == y.Interface && x.Prefix == y.Prefix && x.Gateway == y.Gateway &&
		slices.Equal(x.DNS, y.DNS) && x.MTU == y.MTU
}

func sameLeases(x, y []netdhcp.Lease) bool {
	return slices.EqualFunc(x, y, func(a, b netdhcp.Lease) bool {
		return bytes.Equal(a.MAC, b.MAC) && a.IP == b.IP && a.Hostname == b.Hostname
	})
}

// handle is a netlink handle in ns, zero meaning the caller's namespace.
func handle(ns netns.NsHandle) (*netlink.Handle, error) {
	if ns <= 0 {
		return netlink.NewHandle(unix.NETLINK_ROUTE)
	}
	return netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
}
