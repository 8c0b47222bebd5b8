package datadisk

import (
	"strings"
	"testing"
)

func TestChoose(t *testing.T) {
	const gib = 1 << 30
	blank := func(name string) Disk {
		return Disk{Name: name, Path: "/dev/" + name, SizeBytes: 20 * gib, Blank: true}
	}
	with := func(d Disk, f func(*Disk)) Disk { f(&d); return d }
	data := func(name, uuid string) Disk {
		return Disk{Name: name, Path: "/dev/" + name, SizeBytes: 20 * gib, FSType: "btrfs", Label: Label, UUID: uuid}
	}
	ext4 := Disk{Name: "vda", Path: "/dev/vda", SizeBytes: 20 * gib, FSType: "ext4", Label: "home"}
	tests := []struct {
		name   string
		disks  []Disk
		want   string // the chosen disk's name
		action Action
		errHas string
	}{
		{"first blank", []Disk{ext4, blank("vdb"), blank("vdc")}, "vdb", Format, ""},
		{"data disk wins over an earlier blank one", []Disk{blank("vda"), data("vdb", "u1")}, "vdb", Mount, ""},
		{"one multi-device file system", []Disk{data("vdb", "u1"), data("vdc", "u1")}, "vdb", Mount, ""},
		{"two data disks", []Disk{data("vdb", "u1"), data("vdc", "u2")}, "", None, "/dev/vdb, /dev/vdc are all labelled CAIRNDATA"},
		{"read-only data disk", []Disk{with(data("vdb", "u1"), func(d *Disk) { d.ReadOnly = true })}, "", None, "read-only"},
		{"btrfs with another label is data", []Disk{with(data("vdb", "u1"), func(d *Disk) { d.Label = "photos" })}, "", None, `vdb holds btrfs labelled "photos" and is left alone`},
		{"no disks", nil, "", None, "there are no disks"},
		{"only data", []Disk{ext4, {Name: "vdb", FSType: "unknown data", SizeBytes: 20 * gib}, {Name: "vdc", FSType: "gpt", SizeBytes: 20 * gib}}, "", None,
			"vda holds ext4 labelled \"home\" and is left alone; vdb holds data of a kind Cairn does not recognise and is left alone; vdc has a partition table and is left alone"},
		{"removable", []Disk{with(blank("sdb"), func(d *Disk) { d.Removable = true })}, "", None, "sdb is removable"},
		{"mounted", []Disk{with(blank("sdb"), func(d *Disk) { d.Mounted = true })}, "", None, "sdb is in use"},
		{"read-only", []Disk{with(blank("sdb"), func(d *Disk) { d.ReadOnly = true })}, "", None, "sdb is read-only"},
		{"too small", []Disk{with(blank("vdb"), func(d *Disk) { d.SizeBytes = 100 << 20 })}, "", None, "vdb has 100 MiB"},
		{"skips unsuitable", []Disk{with(blank("sdb"), func(d *Disk) { d.Removable = true }), blank("vdb")}, "vdb", Format, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, action, err := Choose(tt.disks)
			if d.Name != tt.want || action != tt.action {
				t.Errorf("Choose = %q, %v; want %q, %v", d.Name, action, tt.want, tt.action)
			}
			if (err != nil) != (tt.action == None) {
				t.Errorf("err = %v with action %v: want an error exactly when nothing is chosen", err, action)
			}
			if tt.errHas != "" && (err == nil || !strings.Contains(err.Error(), tt.errHas)) {
				t.Errorf("err = %v, want it to say %q", err, tt.errHas)
			}
			if action == None && tt.errHas != "" && !strings.Contains(err.Error(), "reboot") {
				t.Errorf("err = %v, want it to say what to do", err)
			}
		})
	}
}
