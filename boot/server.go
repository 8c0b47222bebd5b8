// Package boot runs the admin node's PXE boot services on the LAN: a DHCPv4 server
// (full, or proxyDHCP beside the LAN's own), answers to IPv6 router solicitations,
// TFTP for the iPXE binaries and HTTP for iPXE scripts, the compute kernel and its
// initramfs. What each machine boots is decided per MAC by a Planner.
//
// The boot path of a compute node: firmware PXE → DHCP names undionly.kpxe or
// ipxe.efi → TFTP → iPXE → DHCP again, now with user class "iPXE", names
// http://<server>/boot.ipxe → that script chains to /nodes/<mac>.ipxe → kernel and
// initramfs over HTTP.
package boot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Plan is what a PXE-booting machine gets.
type Plan struct {
	// Action is ActionCompute (boot the compute image) or ActionLocal (exit iPXE and
	// boot from the local disk).
	Action string
	// KernelArgs are the compute kernel's arguments, e.g. cairn.role=compute
	// cairn.admin=https://10.0.0.1 cairn.token=... cairn.ca=sha256:...; each must be
	// one word of letters, digits and ._:/=,+@%~- .
	KernelArgs []string
}

// Planner decides, per MAC, what a PXE-booting machine gets.
type Planner interface {
	Plan(ctx context.Context, mac net.HardwareAddr) (Plan, error)
}

// Server is the boot services of the admin node. Make it with New, serve with Run.
type Server struct {
	cfg     Config
	planner Planner
	log     *slog.Logger
	pool    *pool // nil unless cfg.Mode is ModeDHCP
	now     func() time.Time

	mu      sync.Mutex
	base    string // http://<ServerIP>[:port], the root of the URLs given to clients
	saveMu  sync.Mutex
	readyCh chan struct{}
	started atomic.Bool
}

// New checks cfg and returns a Server that serves it. Errors name each wrong field.
// With a LeaseFile, the leases it holds are loaded; an unreadable lease file is moved
// aside (".bad") and logged, so that a damaged file never stops machines booting.
func New(cfg Config, p Planner) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if p == nil {
		return nil, errors.New("boot config: planner is nil")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "boot")
	s := &Server{cfg: cfg, planner: p, log: log, now: time.Now, readyCh: make(chan struct{})}
	_, port, _ := net.SplitHostPort(cfg.HTTPAddr)
	s.base = baseURL(cfg.ServerIP, port)

	if cfg.Mode == ModeDHCP {
		s.pool = newPool(cfg.PoolStart, cfg.PoolEnd, cfg.ServerIP, cfg.Router)
		if cfg.LeaseFile != "" {
			skipped, err := s.pool.load(cfg.LeaseFile)
			if err != nil {
				bad := cfg.LeaseFile + ".bad"
				log.Error("lease file unreadable, starting without leases", "file", cfg.LeaseFile, "moved_to", bad, "err", err)
				if err := os.Rename(cfg.LeaseFile, bad); err != nil {
					return nil, fmt.Errorf("boot: move aside unreadable lease file: %w", err)
				}
				s.pool = newPool(cfg.PoolStart, cfg.PoolEnd, cfg.ServerIP, cfg.Router)
			} else if skipped > 0 {
				log.Warn("leases outside the pool dropped", "file", cfg.LeaseFile, "count", skipped)
			}
		}
	}
	for _, f := range []string{FileBIOS, FileUEFI} {
		if _, err := os.Stat(filepath.Join(cfg.TFTPRoot, f)); err != nil {
			log.Warn("ipxe binary missing, machines needing it cannot boot", "file", f, "tftp_root", cfg.TFTPRoot)
		}
	}
	return s, nil
}

// baseURL is the root of the HTTP URLs given to clients; port 80 is left out.
func baseURL(ip net.IP, port string) string {
	if port == "80" {
		return "http://" + ip.String()
	}
	return "http://" + net.JoinHostPort(ip.String(), port)
}

// BaseURL returns the root of the boot HTTP URLs given to clients, e.g.
// "http://10.0.0.1". With HTTPAddr port 0 it carries the chosen port once Ready.
func (s *Server) BaseURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.base
}

// Ready returns a channel that is closed once Run has opened all its sockets.
func (s *Server) Ready() <-chan struct{} { return s.readyCh }

// Leases returns the DHCP address bindings, ordered by address (none unless Mode is
// ModeDHCP). Expired ones are included: they keep their address for their MAC until
// the pool runs out.
func (s *Server) Leases() []Lease {
	if s.pool == nil {
		return nil
	}
	return s.pool.leases()
}

// saveLeases writes the leases to the lease file, if there is one. A failure is logged
// and not returned: serving DHCP matters more than remembering it.
func (s *Server) saveLeases() {
	if s.cfg.LeaseFile == "" || s.pool == nil {
		return
	}
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	if err := s.pool.save(s.cfg.LeaseFile); err != nil {
		s.log.Error("lease file not written", "err", err)
	}
}

// Run serves until ctx ends: DHCP on Interface (per Mode: port 67, proxy mode also
// 4011), answers to IPv6 router solicitations on Interface, TFTP on ServerIP:69 and
// HTTP on HTTPAddr. It opens every socket first, so a port in use or a missing
// interface is returned at once. It returns after every service has stopped; nil
// when ctx ended, else the first service's error. Run may be called only once.
func (s *Server) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("boot: Run called twice; make a new Server with New")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var closers []func()
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	var services []func() error

	httpLn, err := net.Listen("tcp4", s.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("boot http listen %s: %w", s.cfg.HTTPAddr, err)
	}
	closers = append(closers, func() { httpLn.Close() })
	_, port, _ := net.SplitHostPort(httpLn.Addr().String())
	s.mu.Lock()
	s.base = baseURL(s.cfg.ServerIP, port)
	s.mu.Unlock()
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	services = append(services, func() error {
		if err := hs.Serve(httpLn); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("boot http serve: %w", err)
		}
		return nil
	})
	stopHTTP := func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		if err := hs.Shutdown(sctx); err != nil {
			hs.Close()
		}
	}

	tftpConn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: s.cfg.ServerIP, Port: 69})
	if err != nil {
		closeAll()
		return fmt.Errorf("boot tftp listen %s:69: %w", s.cfg.ServerIP, err)
	}
	ts := s.newTFTPServer()
	closers = append(closers, func() { tftpConn.Close() })
	services = append(services, func() error { return ts.Serve(tftpConn) })

	switch s.cfg.Mode {
	case ModeDHCP, ModeProxy:
		ports := []int{67}
		if s.cfg.Mode == ModeProxy {
			ports = append(ports, 4011)
		}
		for _, port := range ports {
			conn, err := listenDHCP(s.cfg.Interface, port)
			if err != nil {
				closeAll()
				return err
			}
			closers = append(closers, func() { conn.Close() })
			services = append(services, func() error { return s.serveDHCP(ctx, conn, port) })
		}
	}

	if s.cfg.Interface != "" {
		ra, err := listenRouterSolicitations(s.cfg.Interface)
		if err != nil {
			// IPv6 may be off on the LAN; iPXE then only waits longer.
			s.log.Warn("ipv6 router solicitations not answered", "interface", s.cfg.Interface, "err", err)
		} else {
			closers = append(closers, func() { ra.Close() })
			services = append(services, func() error { return s.serveRouterSolicitations(ctx, ra) })
		}
	}

	s.log.Info("boot services started", "mode", s.cfg.Mode, "interface", s.cfg.Interface,
		"server_ip", s.cfg.ServerIP, "http", httpLn.Addr().String(), "base_url", s.BaseURL())
	close(s.readyCh)

	errc := make(chan error, len(services))
	var wg sync.WaitGroup
	for _, svc := range services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := svc()
			if err != nil && ctx.Err() == nil {
				errc <- err
			}
			cancel()
		}()
	}
	<-ctx.Done()
	stopHTTP()
	ts.Shutdown() // closes tftpConn and waits for transfers in flight
	closeAll()
	wg.Wait()
	close(errc)
	s.log.Info("boot services stopped")
	return <-errc // nil when closed and empty
}
