package supervisor

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/supervisor/service"
	"github.com/cairn-os/cairn/supervisor/settings"
	"github.com/cairn-os/cairn/supervisor/virt"
)

// runDev runs the engine on an ordinary Linux host: state in a folder, the host's own
// libvirtd, no changes to the host's network, no PXE.
func runDev(ctx context.Context, cfg Config, logger *slog.Logger) error {
	stateDir := cfg.StateDir
	if stateDir == "" {
		stateDir = "cairn-state"
	}
	stateDir, _ = filepath.Abs(stateDir)
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return fmt.Errorf("state folder: %w", err)
	}
	// A development engine never scans the host's disks for a CAIRNCFG label.
	s, problems := settings.Defaults(), []settings.Problem(nil)
	if cfg.ConfigFile != "" {
		s, problems = loadSettings(ctx, cfg, logger)
	}
	for _, p := range problems {
		logger.Warn("setting ignored", "problem", p)
	}
	listen := cfg.Listen
	if listen == "" {
		listen = "127.0.0.1:8443"
	}
	mgr := service.NewManager(logger.With("component", "service"))
	link := &nodeLink{consoleDir: filepath.Join(stateDir, "consoles"), logDir: filepath.Join(stateDir, "console-logs"), net: &recordsOnly{}}
	if err := virt.PrepareDirs(link.consoleDir, link.logDir); err != nil {
		logger.Warn("console folders", "err", err)
	}
	ecfg := engine.Config{
		StateDir:          stateDir,
		URL:               "https://" + listen + "/",
		LANURL:            "https://" + listen,
		HeartbeatInterval: cfg.Heartbeat,
		Services:          mgr.Status,
		Logger:            logger,
		Version:           Version,
		// A host whose /dev/kvm does not work (nested virtualisation) sets
		// CAIRN_DOMAIN_TYPE=qemu to run servers under TCG.
		DomainType: os.Getenv("CAIRN_DOMAIN_TYPE"),
	}
	link.configure(&ecfg)
	e, err := engine.Open(ctx, ecfg)
	if err != nil {
		return err
	}
	defer e.Close()
	link.e = e
	password := s.AdminPassword
	if password == "" {
		password = settings.GeneratePassword()
	}
	created, err := e.EnsureAdmin(ctx, password)
	if err != nil {
		return err
	}
	login := "admin / (unchanged)"
	if created {
		login = "admin / " + password
	}
	go runLocalNode(ctx, logger, e, "", link.localNetworkVersion)
	go e.RunHealth(ctx)
	go e.RunSchedules(ctx)
	bannerTo(os.Stderr, "Cairn "+Version+" — development engine",
		"Web console:  https://"+listen+"/",
		"Login:        "+login,
		"State:        "+stateDir)
	return serveHTTPS(ctx, logger, e, listen, adminNetwork{}.addresses())
}
