package netdhcp

import (
	"context"
	"fmt"
	"net"
	"runtime"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/vishvananda/netns"
)

// ServeIn is Serve with the server's interface in network namespace ns; zero or
// netns.None() means the caller's namespace. Only the socket is made inside ns (a
// socket stays in the namespace it was made in): no thread of the caller changes
// namespace.
func (s *Server) ServeIn(ctx context.Context, ns netns.NsHandle) error {
	if ns <= 0 {
		return s.Serve(ctx)
	}
	conn, err := listenIn(ns, s.cfg.Interface)
	if err != nil {
		return fmt.Errorf("netdhcp listen on %s port %d in namespace: %w: check that the bridge exists and no other DHCP server runs on it", s.cfg.Interface, dhcpv4.ServerPort, err)
	}
	return s.serveConn(ctx, conn)
}

// listenIn opens the server socket on iface inside ns, on a thread of its own.
func listenIn(ns netns.NsHandle, iface string) (*net.UDPConn, error) {
	type result struct {
		conn *net.UDPConn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("open own network namespace: %w", err)}
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("enter network namespace: %w", err)}
			return
		}
		conn, err := server4.NewIPv4UDPConn(iface, &net.UDPAddr{Port: dhcpv4.ServerPort})
		if netns.Set(orig) == nil {
			// Only a thread back in its own namespace may run other goroutines; on
			// failure the locked thread ends with this goroutine.
			runtime.UnlockOSThread()
		}
		ch <- result{conn, err}
	}()
	r := <-ch
	return r.conn, r.err
}
