package lab

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-os/cairn/qemu-tests/vm"
	"github.com/cairn-os/cairn/supervisor/settings"
)

// TestSettingsAreWhatTheAdminReads checks the lab's cairn.yaml and its CAIRNCFG disks
// against the supervisor's own settings reader: a key the admin ignored would make
// the lab boot an engine other than the one the tests expect.
func TestSettingsAreWhatTheAdminReads(t *testing.T) {
	s := NewSettings(GeneratePassword(), true)
	got, problems := settings.Parse(s.YAML())
	for _, p := range problems {
		t.Errorf("the admin would ignore a setting: %s", p)
	}
	if got.AdminPassword != s.AdminPassword || !got.Debug || got.PXE != settings.PXEDHCP || !got.Uplink.DHCP {
		t.Errorf("the admin reads %+v from\n%s", got, s.YAML())
	}
	if got.LAN.Interface != LANMAC || got.Uplink.Interface != UplinkMAC || got.LAN.Address.String() != LANAddress {
		t.Errorf("the admin reads LAN %+v and uplink %+v", got.LAN, got.Uplink)
	}

	for _, format := range []vm.SettingsFormat{vm.SettingsFAT, vm.SettingsISO} {
		prog := map[vm.SettingsFormat]string{vm.SettingsFAT: "mcopy", vm.SettingsISO: "xorriso"}[format]
		if _, err := exec.LookPath(prog); err != nil {
			t.Logf("%s disk not checked: %v", format, err)
			continue
		}
		img := filepath.Join(t.TempDir(), "cfg.img")
		if err := vm.SettingsDisk(context.Background(), img, s.YAML(), format); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(img)
		if err != nil {
			t.Fatal(err)
		}
		_, label, err := settings.ReadLabel(f)
		f.Close()
		if err != nil || label != vm.SettingsLabel {
			t.Errorf("%s disk: the admin reads label %q (%v), want %s", format, label, err, vm.SettingsLabel)
		}
	}
}

func TestGeneratePasswordPassesTheAdminsRules(t *testing.T) {
	seen := map[string]bool{}
	for range 20 {
		p := GeneratePassword()
		if seen[p] {
			t.Fatalf("password %s generated twice", p)
		}
		seen[p] = true
		if _, problems := settings.Parse([]byte("admin_password: \"" + p + "\"\n")); len(problems) > 0 {
			t.Fatalf("the admin refuses %q: %v", p, problems)
		}
		if strings.ContainsAny(p, "0O1lI") {
			t.Fatalf("password %q has characters that look alike", p)
		}
	}
}

func TestComputeMACs(t *testing.T) {
	if ComputeMAC(0) != "52:54:00:00:01:01" || ComputeMAC(9) != "52:54:00:00:01:0a" {
		t.Errorf("compute MACs %s, %s", ComputeMAC(0), ComputeMAC(9))
	}
}
