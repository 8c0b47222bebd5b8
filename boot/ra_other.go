//go:build !linux

package boot

import (
	"context"
	"errors"
	"net"
)

// raListener is not implemented off Linux.
type raListener struct{ ifi *net.Interface }

func listenRouterSolicitations(ifname string) (*raListener, error) {
	return nil, errors.New("router solicitations: only on linux")
}

// Close does nothing.
func (l *raListener) Close() error { return nil }

func (s *Server) serveRouterSolicitations(ctx context.Context, l *raListener) error { return nil }

func routerAdvertisement(mac net.HardwareAddr) []byte { return nil }
