package pool

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairn-os/cairn/supervisor/hostcmd"
)

func TestSafeRel(t *testing.T) {
	for _, c := range []struct {
		rel, want string
		ok        bool
	}{
		{"images/x.qcow2", "images/x.qcow2", true},
		{"x.qcow2", "x.qcow2", true},
		{"images//a/./x.qcow2", "images/a/x.qcow2", true},
		{"images/", "images", true},
		{"../x", "", false},
		{"/etc", "", false},
		{"/etc/passwd", "", false},
		{"a/../../b", "", false},
		{"a/../b", "", false}, // any ".." is refused, even one that stays inside
		{"..", "", false},
		{"", "", false},
		{".", "", false},
		{"./", "", false},
		{"a\x00b", "", false},
	} {
		got, err := SafeRel(c.rel)
		if c.ok && (err != nil || got != c.want) {
			t.Errorf("SafeRel(%q) = %q, %v; want %q", c.rel, got, err, c.want)
		}
		if !c.ok && (err == nil || !errors.Is(err, ErrInvalid)) {
			t.Errorf("SafeRel(%q) = %q, %v; want ErrInvalid", c.rel, got, err)
		}
	}
}

func TestSnapshotNames(t *testing.T) {
	for name, ok := range map[string]bool{
		"daily-2024-05-01":      true,
		"a":                     true,
		"0.before_upgrade":      true,
		strings.Repeat("a", 63): true,
		strings.Repeat("a", 64): false,
		"":                      false,
		".hidden":               false,
		"-x":                    false,
		"Upper":                 false,
		"a/b":                   false,
		"a b":                   false,
		"..":                    false,
		"a@b":                   false,
	} {
		err := checkSnapshotName(name)
		if ok != (err == nil) {
			t.Errorf("checkSnapshotName(%q) = %v; want ok=%v", name, err, ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("checkSnapshotName(%q) = %v; want ErrInvalid", name, err)
		}
	}
}

func TestRegistry(t *testing.T) {
	if got := Names(); !slices.Equal(got, []string{"btrfs", "dir", "zfs"}) {
		t.Errorf("Names() = %v", got)
	}
	for _, n := range Names() {
		d, err := Lookup(n, hostcmd.Exec{})
		if err != nil || d.Info().Driver != n {
			t.Errorf("Lookup(%s) = %v, %v", n, d, err)
		}
	}
	_, err := Lookup("lvm", hostcmd.Exec{})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `"lvm"`) || !strings.Contains(err.Error(), "btrfs, dir, zfs") {
		t.Errorf("Lookup(lvm) = %v; want ErrInvalid naming it and listing btrfs, dir, zfs", err)
	}
}

func TestParseSubvolumeShow(t *testing.T) {
	out := `.snapshots/daily
	Name: 			daily
	UUID: 			bdc2a137-b652-ab41-9623-013f722d02ea
	Creation time: 		2026-11-22 04:47:55 +0100
	Subvolume ID: 		261
	Flags: 			readonly
	Snapshot(s):
`
	created, id, err := parseSubvolumeShow(out)
	want := time.Date(2026, 11, 22, 3, 47, 55, 0, time.UTC)
	if err != nil || !created.Equal(want) || id != 261 {
		t.Errorf("parseSubvolumeShow = %v, %d, %v; want %v, 261", created, id, err, want)
	}
	if _, _, err := parseSubvolumeShow("Name: x\n"); err == nil {
		t.Error("parseSubvolumeShow without a creation time: no error")
	}
}

func TestParseMountinfo(t *testing.T) {
	in := "36 35 98:0 /mnt1 /mnt/parent\\040dir rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n" +
		"40 22 0:45 /pools/0 /var/lib/cairn/pools/0 rw,relatime shared:5 - btrfs /dev/vdb rw,subvol=/pools/0\n" +
		"garbage\n"
	got, err := parseMountinfo(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []mountEntry{
		{devnum: "98:0", root: "/mnt1", point: "/mnt/parent dir", fstype: "ext3", source: "/dev/root"},
		{devnum: "0:45", root: "/pools/0", point: "/var/lib/cairn/pools/0", fstype: "btrfs", source: "/dev/vdb"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("parseMountinfo =\n%+v\nwant\n%+v", got, want)
	}
}

func TestFSLabel(t *testing.T) {
	if got := fsLabel("/var/lib/cairn/pools/3", 16); got != "cairn-pool-3" {
		t.Errorf("fsLabel = %q", got)
	}
	if got := fsLabel("/var/lib/cairn/pools/123456789", 16); len(got) != 16 {
		t.Errorf("fsLabel for ext4 = %q, longer than 16 bytes", got)
	}
}

func TestCheckPath(t *testing.T) {
	for p, ok := range map[string]bool{
		"/var/lib/cairn/pools/3": true,
		"":                       false,
		"pools/3":                false,
		"/var/lib/../lib/x":      false,
		"/var/lib/cairn/pools/":  false,
		"/":                      false,
	} {
		if err := checkPath(Spec{Path: p}); ok != (err == nil) || (err != nil && !errors.Is(err, ErrInvalid)) {
			t.Errorf("checkPath(%q) = %v; want ok=%v", p, err, ok)
		}
	}
}
