// Package lab sets up a whole Cairn engine in qemu on one host: the admin ISO with a
// data disk, a CAIRNCFG settings disk and two NICs (uplink on user networking with
// the console forwarded to 127.0.0.1, LAN on a private Hub), and diskless compute VMs
// that PXE-boot from it over that LAN. `make run` (cmd/cairn-qemu) and the qemu tier
// tests both use it, so that what a person sees is what the tests check.
package lab

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cairn-os/cairn/qemu-tests/engineapi"
	"github.com/cairn-os/cairn/qemu-tests/vm"
	"gopkg.in/yaml.v3"
)

// Addresses of the lab's network, as docs/architecture.md fixes them.
const (
	LANMAC     = "52:54:00:00:00:01"
	UplinkMAC  = "52:54:00:00:00:02"
	LANAddress = "10.0.0.1/16"
	// AdminUser is the first admin account's name.
	AdminUser = "admin"
)

// ComputeMAC returns the MAC of the i-th compute VM (0-based): 52:54:00:00:01:01, …
func ComputeMAC(i int) string { return fmt.Sprintf("52:54:00:00:01:%02x", i+1) }

// Sizes of the lab's VMs.
const (
	AdminMemoryMiB   = 4096
	AdminCPUs        = 2
	ComputeMemoryMiB = 2048
	ComputeCPUs      = 2
	DataDiskSize     = "20G"
)

// Settings is cairn.yaml as the lab writes it.
type Settings struct {
	AdminPassword string `yaml:"admin_password"`
	LAN           struct {
		Interface string `yaml:"interface"`
		Address   string `yaml:"address"`
	} `yaml:"lan"`
	Uplink struct {
		Interface string `yaml:"interface"`
		DHCP      bool   `yaml:"dhcp"`
	} `yaml:"uplink"`
	PXE string `yaml:"pxe"`
	// Debug starts the supervisor's debug shell on the admin's second serial port.
	Debug bool `yaml:"debug,omitempty"`
}

// NewSettings returns the lab's settings: the LAN and uplink NICs by MAC, a full DHCP
// server for PXE, and password as the admin's password.
func NewSettings(password string, debug bool) Settings {
	var s Settings
	s.AdminPassword = password
	s.LAN.Interface, s.LAN.Address = LANMAC, LANAddress
	s.Uplink.Interface, s.Uplink.DHCP = UplinkMAC, true
	s.PXE = "dhcp"
	s.Debug = debug
	return s
}

// YAML renders the settings as cairn.yaml.
func (s Settings) YAML() []byte {
	b, err := yaml.Marshal(s)
	if err != nil {
		panic(err) // a plain struct of strings and bools always marshals
	}
	return append([]byte("# cairn.yaml for a Cairn lab in qemu; the admin reads it from the CAIRNCFG disk.\n"), b...)
}

// LoadSettings reads a cairn.yaml the lab wrote before.
func LoadSettings(path string) (Settings, error) {
	var s Settings
	b, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	if err := yaml.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("%s: %w", path, err)
	}
	if s.AdminPassword == "" {
		return s, fmt.Errorf("%s: no admin_password", path)
	}
	return s, nil
}

// GeneratePassword returns a new admin password: 16 letters and digits that cannot be
// mistaken for each other, in groups of four.
func GeneratePassword() string {
	const alphabet = "abcdefghijkmnpqrstuvwxyz23456789"
	b := make([]byte, 16)
	rand.Read(b)
	var s strings.Builder
	for i, c := range b {
		if i > 0 && i%4 == 0 {
			s.WriteByte('-')
		}
		s.WriteByte(alphabet[int(c)%len(alphabet)])
	}
	return s.String()
}

// Config describes a lab.
type Config struct {
	// ISO is the admin ISO (build/cairn.iso).
	ISO string
	// Work holds the disks, settings, hub socket and each VM's folder.
	Work string
	// Firmware is what every VM boots with.
	Firmware vm.Firmware
	// Port is the host port on 127.0.0.1 that forwards to the console's port 443.
	Port int
	// Settings go on the admin's CAIRNCFG disk.
	Settings Settings
	// Logf reports progress; nil means quiet.
	Logf func(format string, args ...any)
}

// Lab is a running engine: the hub, the admin and the compute VMs.
type Lab struct {
	Config
	Hub      *vm.Hub
	Admin    *vm.VM
	Computes []*vm.VM
	// API is a client of the admin's API, logged in as admin.
	API *engineapi.Client

	hubTmp string // a short folder for the hub socket when Work is too deep for one
}

// New prepares a lab in cfg.Work: the settings disk (rewritten every time), the data
// disk (made once, blank, and kept: the engine's state survives from run to run) and
// the hub. Start the admin next.
func New(ctx context.Context, cfg Config) (*Lab, error) {
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if err := os.MkdirAll(cfg.Work, 0o755); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	l := &Lab{Config: cfg}
	if err := os.WriteFile(l.path("cairn.yaml"), cfg.Settings.YAML(), 0o600); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	if err := vm.SettingsDisk(ctx, l.path("cairncfg.img"), cfg.Settings.YAML(), vm.SettingsFAT); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	created, err := vm.CreateDisk(ctx, l.path("data.qcow2"), DataDiskSize)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	if created {
		cfg.Logf("made a blank %s data disk: %s", DataDiskSize, l.path("data.qcow2"))
	} else {
		cfg.Logf("reusing the data disk %s (the engine's state from earlier runs)", l.path("data.qcow2"))
	}
	hubPath := l.path("lan.sock")
	if len(hubPath) >= 100 {
		d, err := os.MkdirTemp("", "cairn-lan-")
		if err != nil {
			return nil, fmt.Errorf("lab: %w", err)
		}
		hubPath = filepath.Join(d, "lan.sock")
		l.hubTmp = d
	}
	if l.Hub, err = vm.NewHub(hubPath, nil); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	l.API = engineapi.New(l.URL(), AdminUser, cfg.Settings.AdminPassword)
	l.Admin = &vm.VM{
		Name: "admin", Memory: AdminMemoryMiB, CPUs: AdminCPUs, Firmware: cfg.Firmware,
		CDROM: cfg.ISO,
		Disks: []string{l.path("data.qcow2"), l.path("cairncfg.img")},
		// The admin never boots from the network: no option ROMs, so SeaBIOS does
		// not spend TCG time starting iPXE on both cards.
		NICs: []vm.NIC{
			{MAC: UplinkMAC, User: &vm.UserNet{HostFwd: []string{fmt.Sprintf("tcp:127.0.0.1:%d-:443", cfg.Port)}}, ROMFile: &noROM},
			{MAC: LANMAC, Hub: l.Hub.Path(), ROMFile: &noROM},
		},
		Boot:        []vm.BootDevice{vm.BootCDROM},
		DebugSerial: cfg.Settings.Debug,
		Workdir:     l.path("admin"),
	}
	return l, nil
}

var noROM = ""

func (l *Lab) path(name string) string { return filepath.Join(l.Work, name) }

// URL returns the web console's address on the host.
func (l *Lab) URL() string { return fmt.Sprintf("https://127.0.0.1:%d", l.Port) }

// StartAdmin boots the admin VM (again, after a power-off: same disks).
func (l *Lab) StartAdmin(ctx context.Context) error {
	if !vm.PortFree(l.Port) {
		return fmt.Errorf("lab: port %d on 127.0.0.1 is taken; choose another with --port", l.Port)
	}
	return l.Admin.Start(ctx)
}

// WaitAdmin waits until /api/v1/health answers through the forwarded port, then pins
// the engine's CA for the API client.
func (l *Lab) WaitAdmin(ctx context.Context) (time.Duration, error) {
	d, err := l.Wait(ctx, "the admin's /api/v1/health at "+l.URL(), 3*time.Second, func(ctx context.Context) (bool, string, error) {
		if !l.Admin.Running() {
			return false, "", fmt.Errorf("the admin VM stopped: %v", l.Admin.Wait())
		}
		hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := l.API.Health(hctx); err != nil {
			return false, shortErr(err), nil
		}
		return true, "", nil
	})
	if err != nil {
		return d, err
	}
	if err := l.API.Pin(ctx); err != nil {
		return d, fmt.Errorf("lab: %w", err)
	}
	return d, nil
}

// StartCompute boots the i-th compute VM (0-based, made on first use): no disk, its one
// NIC on the LAN, network boot first.
func (l *Lab) StartCompute(ctx context.Context, i int) (*vm.VM, error) {
	for len(l.Computes) <= i {
		n := len(l.Computes)
		l.Computes = append(l.Computes, &vm.VM{
			Name: fmt.Sprintf("compute%d", n+1), Memory: ComputeMemoryMiB, CPUs: ComputeCPUs,
			Firmware: l.Firmware,
			NICs:     []vm.NIC{{MAC: ComputeMAC(n), Hub: l.Hub.Path()}},
			Boot:     []vm.BootDevice{vm.BootNetwork},
			Workdir:  l.path(fmt.Sprintf("compute%d", n+1)),
		})
	}
	return l.Computes[i], l.Computes[i].Start(ctx)
}

// WaitNode waits until the node with the MAC is listed with one of the states, and
// returns it.
func (l *Lab) WaitNode(ctx context.Context, mac string, states ...string) (engineapi.Node, time.Duration, error) {
	id := engineapi.NodeID(mac)
	var node engineapi.Node
	d, err := l.Wait(ctx, fmt.Sprintf("node %s to be %s", id, strings.Join(states, " or ")), 3*time.Second, func(ctx context.Context) (bool, string, error) {
		if !l.Admin.Running() {
			return false, "", fmt.Errorf("the admin VM stopped: %v", l.Admin.Wait())
		}
		n, ok, err := l.API.Node(ctx, id)
		if errors.Is(err, engineapi.ErrUnauthorized) {
			return false, "", err
		}
		switch {
		case err != nil:
			return false, shortErr(err), nil
		case !ok:
			return false, "not listed yet", nil
		}
		node = n
		for _, s := range states {
			if n.State == s {
				return true, "", nil
			}
		}
		return false, "state " + n.State, nil
	})
	return node, d, err
}

// Wait calls check every interval until it reports done, fails, or ctx ends. It says
// what it waits for, how it is going every 10 seconds, and how long it took; on time-out
// the error carries the last status check gave.
func (l *Lab) Wait(ctx context.Context, what string, interval time.Duration, check func(ctx context.Context) (done bool, status string, err error)) (time.Duration, error) {
	return Wait(ctx, l.Logf, what, interval, check)
}

// Wait is Lab.Wait for callers without a lab.
func Wait(ctx context.Context, logf func(string, ...any), what string, interval time.Duration, check func(ctx context.Context) (done bool, status string, err error)) (time.Duration, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	start := time.Now()
	logf("waiting for %s", what)
	lastReport := start
	status := ""
	for {
		done, s, err := check(ctx)
		if s != "" {
			status = s
		}
		el := time.Since(start).Round(time.Second)
		if err != nil {
			return el, fmt.Errorf("waiting for %s (%s): %w", what, el, err)
		}
		if done {
			logf("%s: done after %s", what, el)
			return el, nil
		}
		if time.Since(lastReport) >= 10*time.Second {
			logf("  still waiting for %s: %s so far (%s)", what, el, status)
			lastReport = time.Now()
		}
		select {
		case <-ctx.Done():
			return el, fmt.Errorf("waiting for %s: gave up after %s (last: %s): %w", what, el, status, ctx.Err())
		case <-time.After(interval):
		}
	}
}

func shortErr(err error) string {
	s := err.Error()
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}

// VMs returns the admin and the compute VMs that were made.
func (l *Lab) VMs() []*vm.VM {
	out := []*vm.VM{}
	if l.Admin != nil {
		out = append(out, l.Admin)
	}
	return append(out, l.Computes...)
}

// Tails returns the last n lines of every VM's console, for a failure message.
func (l *Lab) Tails(n int) string {
	var b strings.Builder
	for _, v := range l.VMs() {
		fmt.Fprintf(&b, "--- last %d lines of %s's console (%s) ---\n%s\n", n, v.Name, v.SerialPath(), v.SerialTail(n))
	}
	return b.String()
}

// Logs returns the paths of every VM's log files.
func (l *Lab) Logs() []string {
	var out []string
	for _, v := range l.VMs() {
		out = append(out, v.Logs()...)
	}
	return out
}

// Stop powers every running VM down at once (power button, then quit after timeout)
// and closes the hub.
func (l *Lab) Stop(ctx context.Context, timeout time.Duration) error {
	var wg sync.WaitGroup
	errs := make([]error, len(l.VMs()))
	for i, v := range l.VMs() {
		if !v.Running() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = v.PowerDown(ctx, timeout)
		}()
	}
	wg.Wait()
	l.closeHub()
	return errors.Join(errs...)
}

// Kill ends every VM at once and closes the hub: the clean-up of a test.
func (l *Lab) Kill() {
	for _, v := range l.VMs() {
		v.Kill()
	}
	l.closeHub()
}

func (l *Lab) closeHub() {
	if l.Hub != nil {
		l.Hub.Close()
	}
	if l.hubTmp != "" {
		os.RemoveAll(l.hubTmp)
	}
}
