package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/cairn-os/cairn/boot"
	"github.com/cairn-os/cairn/supervisor/agent"
	"github.com/cairn-os/cairn/supervisor/datadisk"
	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/supervisor/netnode"
	"github.com/cairn-os/cairn/supervisor/service"
	"github.com/cairn-os/cairn/supervisor/settings"
	"github.com/cairn-os/cairn/supervisor/virt"
)

// Paths on the admin's root.
const (
	dataMount   = "/var/lib/cairn"
	libDir      = "/usr/lib/cairn"
	libvirtSock = "/run/libvirt/libvirt-sock"
)

// runAdmin brings up the administration node: settings, network, data disk, services,
// the engine, HTTPS and the PXE services. It returns only on a fatal error.
func runAdmin(ctx context.Context, cfg Config, logger *slog.Logger, mgr *service.Manager, console io.Writer) error {
	s, problems := loadSettings(ctx, cfg, logger)
	for _, p := range problems {
		logger.Warn("setting ignored", "problem", p)
	}
	nw, err := setupAdminNetwork(ctx, logger, s)
	if err != nil {
		// Without a network nobody can reach the console; keep going so that the
		// console banner says what is wrong, and the services still run.
		logger.Error("network setup failed", "err", err)
	}
	stateDir, persistent := prepareDataDisk(ctx, logger)

	for _, spec := range libvirtServices() {
		mustAdd(logger, mgr, spec)
	}
	// The exports start with pool 0; the engine rewrites them when pools change.
	exports := []Export{{Path: filepath.Join(dataMount, "pools", "0"), Clients: nw.lan.Masked(), FSID: 1}}
	for _, spec := range nfsServices(exportsFile(exports)) {
		mustAdd(logger, mgr, spec)
	}
	if s.Debug || kernelArgs()["cairn.debug"] == "1" {
		mustAdd(logger, mgr, debugShellService("/dev/ttyS1"))
	}

	// The LAN carries the networks' VXLAN; the uplink their masquerade and mappings.
	underlay := nw.lanLink
	if underlay == "" {
		underlay = nw.uplinkLink
	}
	localNet := netnode.New(netnode.Config{Underlay: underlay, Uplink: nw.uplinkLink, Logger: logger})
	defer localNet.Close()
	link := &nodeLink{consoleDir: engine.DefaultConsoleDir, logDir: engine.DefaultConsoleLogDir, net: localNet}
	if err := virt.PrepareDirs(link.consoleDir, link.logDir); err != nil {
		logger.Error("console folders", "err", err)
	}
	// Pool 0 is the data disk's pools/0 subvolume; without a data disk it is a
	// folder in RAM.
	pool0 := "dir"
	if persistent {
		pool0 = "btrfs"
	}
	ecfg := engine.Config{
		StateDir:          stateDir,
		URL:               nw.consoleURL(443),
		LANURL:            "https://" + nw.lan.Addr().String(),
		HeartbeatInterval: cfg.Heartbeat,
		Services:          mgr.Status,
		Logger:            logger,
		Version:           Version,
		PoolsDir:          filepath.Join(dataMount, "pools"),
		Pool0Driver:       pool0,
		LocalDir:          engine.DefaultLocalDir,
		ReservedPrefixes:  reservedPrefixes(nw),
		PoolsChanged: func(shared []engine.Pool) {
			if err := writeExports(ctx, poolExports(shared, nw.lan.Masked())); err != nil {
				logger.Error("nfs exports", "err", err)
			}
		},
	}
	link.configure(&ecfg)
	e, err := engine.Open(ctx, ecfg)
	if err != nil {
		return fmt.Errorf("open engine state in %s: %w", stateDir, err)
	}
	defer e.Close()
	link.e = e

	password, generated := s.AdminPassword, false
	if password == "" {
		password, generated = settings.GeneratePassword(), true
	}
	created, err := e.EnsureAdmin(ctx, password)
	if err != nil {
		return fmt.Errorf("admin account: %w", err)
	}

	// Compute nodes reach the admin on the LAN: for migrations to it and as the VXLAN
	// peer of the networks.
	lanAddr := ""
	if nw.lan.IsValid() {
		lanAddr = nw.lan.Addr().String()
	}
	go runLocalNode(ctx, logger, e, lanAddr, link.localNetworkVersion)
	go e.RunHealth(ctx)
	go e.RunSchedules(ctx)
	if shared := e.SharedPools(); len(shared) > 1 {
		if err := writeExports(ctx, poolExports(shared, nw.lan.Masked())); err != nil {
			logger.Error("nfs exports", "err", err)
		}
	}

	listen := cfg.Listen
	if listen == "" {
		listen = ":443"
	}
	httpsErr := make(chan error, 1)
	go func() { httpsErr <- serveHTTPS(ctx, logger, e, listen, nw.addresses()) }()

	if nw.pxe != "off" && nw.lanLink != "" {
		bs, err := boot.New(bootConfig(nw, stateDir, logger), planner{e})
		if err != nil {
			logger.Error("pxe boot services not started", "err", err)
		} else {
			go func() {
				if err := bs.Run(ctx); err != nil && ctx.Err() == nil {
					logger.Error("pxe boot services stopped", "err", err)
				}
			}()
		}
	}

	login := "admin / (the password you set at first boot)"
	switch {
	case created && generated:
		login = "admin / " + password + "   (generated: write it down, it is shown only now)"
	case created:
		login = "admin / (the admin_password from cairn.yaml)"
	}
	lines := []string{
		"Cairn " + Version + " — administration node",
		"Web console:  " + nw.consoleURL(443),
		"Login:        " + login,
		"CA:           " + e.CA().Fingerprint(),
		"PXE:          " + nw.pxeSummary(),
	}
	if !persistent {
		lines = append(lines, "WARNING: no data disk: state is kept in RAM and lost at power-off. Attach a blank disk.")
	}
	for _, p := range problems {
		lines = append(lines, p.String())
	}
	bannerTo(console, lines...)

	select {
	case err := <-httpsErr:
		return fmt.Errorf("web console: %w", err)
	case <-ctx.Done():
		return nil
	}
}

func mustAdd(logger *slog.Logger, mgr *service.Manager, spec service.Spec) {
	if err := mgr.Add(spec); err != nil {
		logger.Error("service not added", "service", spec.Name, "err", err)
	}
}

// loadSettings reads cairn.yaml from --config or a CAIRNCFG disk; without one it
// returns the defaults.
func loadSettings(ctx context.Context, cfg Config, logger *slog.Logger) (settings.Settings, []settings.Problem) {
	var data []byte
	var err error
	source := cfg.ConfigFile
	if source != "" {
		data, err = os.ReadFile(source)
	} else {
		data, source, err = settings.Find(ctx, logger)
	}
	switch {
	case errors.Is(err, settings.ErrNoConfig):
		logger.Info("no CAIRNCFG disk: using defaults")
		return settings.Defaults(), nil
	case err != nil:
		logger.Error("settings not read: using defaults", "source", source, "err", err)
		return settings.Defaults(), []settings.Problem{{Message: err.Error()}}
	}
	logger.Info("settings read", "source", source)
	return settings.Parse(data)
}

// prepareDataDisk mounts the data disk (formatting only a blank one) and returns the
// state folder and whether it survives a reboot.
func prepareDataDisk(ctx context.Context, logger *slog.Logger) (string, bool) {
	log := logger
	stateDir := filepath.Join(dataMount, "state")
	disks, err := datadisk.List(ctx)
	if err != nil {
		log.Error("list disks", "err", err)
	}
	d, action, err := datadisk.Choose(disks)
	if err == nil && action != datadisk.None {
		if err = datadisk.Prepare(ctx, hostRunner, log, d, action, dataMount); err == nil {
			log.Info("data disk ready", "disk", d.Path, "action", action)
			return stateDir, true
		}
	}
	log.Warn("no data disk: state kept in RAM", "err", err)
	os.MkdirAll(filepath.Join(dataMount, "pools", "0"), 0o755)
	os.MkdirAll(stateDir, 0o700)
	return stateDir, false
}

// runLocalNode registers the admin as a compute node of its own engine and beats for
// it, so that one machine is a complete engine.
func runLocalNode(ctx context.Context, logger *slog.Logger, e *engine.Engine, address string, netVersion func() string) {
	inv, err := agent.Inventory(ctx)
	if err != nil {
		logger.Error("inventory of the admin node", "err", err)
		return
	}
	if address != "" {
		inv.Address = address
	}
	if _, err := e.RegisterLocalNode(ctx, inv); err != nil {
		logger.Error("register the admin as a node", "err", err)
		return
	}
	t := time.NewTicker(e.HeartbeatInterval())
	defer t.Stop()
	for {
		if hb, err := agent.Stats(); err == nil {
			hb.NetworkVersion = netVersion()
			hb.Address = address
			e.LocalHeartbeat(ctx, hb)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// planner adapts the engine to the boot package's per-MAC decision.
type planner struct{ e *engine.Engine }

func (p planner) Plan(ctx context.Context, mac net.HardwareAddr) (boot.Plan, error) {
	action, args, err := p.e.Plan(ctx, mac)
	return boot.Plan{Action: action, KernelArgs: args}, err
}

func bootConfig(nw adminNetwork, stateDir string, logger *slog.Logger) boot.Config {
	lan := nw.lan
	return boot.Config{
		Interface: nw.lanLink,
		ServerIP:  net.IP(lan.Addr().AsSlice()),
		Netmask:   net.CIDRMask(lan.Bits(), 32),
		Mode:      boot.Mode(nw.pxe),
		PoolStart: net.IP(poolAddr(lan, 100, 1).AsSlice()),
		PoolEnd:   net.IP(poolAddr(lan, 199, 254).AsSlice()),
		LeaseTime: time.Hour,
		HTTPAddr:  net.JoinHostPort(lan.Addr().String(), "80"),
		TFTPRoot:  filepath.Join(libDir, "ipxe"),
		Kernel:    filepath.Join(libDir, "compute", "vmlinuz"),
		Initramfs: filepath.Join(libDir, "compute", "initramfs.cpio.zst"),
		LeaseFile: filepath.Join(stateDir, "dhcp-leases.json"),
		Logger:    logger,
	}
}

// poolAddr places the DHCP pool inside the LAN: x.y.100.1–x.y.199.254 on a /16, and
// the upper half of a smaller network.
func poolAddr(lan netip.Prefix, third, fourth byte) netip.Addr {
	base := lan.Masked().Addr().As4()
	if lan.Bits() <= 16 {
		return netip.AddrFrom4([4]byte{base[0], base[1], third, fourth})
	}
	size := uint32(1) << (32 - lan.Bits())
	b := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	v := b + size/2
	if third >= 199 {
		v = b + size - 2
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
