package hosttests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cairn-os/cairn/supervisor/engine"
)

// TestBadInput sends a table of bad requests per resource. Each gets a clear 4xx
// whose message names what to fix, and afterwards nothing was made: the same images,
// servers, pools and files as before.
func TestBadInput(t *testing.T) {
	l := newLab(t, "")
	img := testImage(t)
	base := l.upload(img, "base", "qcow2", 0)
	master := true
	l.must(200, "PATCH", "/images/"+base.ID, engine.ImageUpdate{Master: &master}, nil)
	l.must(201, "POST", "/images/"+base.ID+"/clone", engine.CloneRequest{Name: "kid"}, nil)
	var plain engine.Image
	l.must(201, "POST", "/images", engine.ImageRequest{Name: "plain", Format: "raw", Size: 1 << 20}, &plain)
	one := 1
	huge := int64(1) << 50

	type tc struct {
		name         string
		method, path string
		body         any
		status       int
		says         string
	}
	cases := []tc{
		// Images.
		{"image name with a slash", "POST", "/images", engine.ImageRequest{Name: "../evil", Format: "qcow2", Size: 1 << 20}, 400, "name"},
		{"image name too short", "POST", "/images", engine.ImageRequest{Name: "a", Format: "qcow2", Size: 1 << 20}, 400, "2 to 64 characters"},
		{"image size zero", "POST", "/images", engine.ImageRequest{Name: "zero", Format: "qcow2", Size: 0}, 400, "size"},
		{"image size not a sector multiple", "POST", "/images", engine.ImageRequest{Name: "odd", Format: "qcow2", Size: 1000}, 400, "512"},
		{"image size beyond 64 TiB", "POST", "/images", engine.ImageRequest{Name: "vast", Format: "raw", Size: 1 << 47}, 400, "64 TiB"},
		{"unknown image format", "POST", "/images", engine.ImageRequest{Name: "exe", Format: "exe", Size: 1 << 20}, 400, "qcow2"},
		{"empty iso", "POST", "/images", engine.ImageRequest{Name: "cd", Format: "iso", Size: 1 << 20}, 400, "upload"},
		{"image in a missing pool", "POST", "/images", engine.ImageRequest{Name: "lost", Format: "raw", Size: 1 << 20, Pool: new(int(7))}, 404, "pool 7"},
		{"upload larger than the pool", "POST", "/images", engine.ImageRequest{Name: "big", Format: "raw", Size: huge, Upload: true}, 400, "64 TiB"},
		{"duplicate image name", "POST", "/images", engine.ImageRequest{Name: "plain", Format: "raw", Size: 1 << 20}, 409, "already have"},
		{"delete a master with children", "DELETE", "/images/" + base.ID, nil, 409, "flatten"},
		{"linked clone of a non-master", "POST", "/images/" + plain.ID + "/clone", engine.CloneRequest{Name: "nope", Linked: new(bool(true))}, 400, "master"},
		{"shrink an image", "POST", "/images/" + plain.ID + "/resize", map[string]int64{"size": 512}, 400, "shrink"},
		{"resize a master", "POST", "/images/" + base.ID + "/resize", map[string]int64{"size": 1 << 30}, 400, "master"},
		{"convert to an unknown format", "POST", "/images/" + plain.ID + "/convert", map[string]string{"format": "floppy"}, 400, "qcow2"},
		{"flatten an image without master", "POST", "/images/" + plain.ID + "/flatten", nil, 400, "no master"},
		{"upload chunk without its offset", "PATCH", "/images/" + plain.ID + "/upload", nil, 400, "Upload-Offset"},
		{"upload status of a ready image", "GET", "/images/" + plain.ID + "/upload", nil, 400, "not being uploaded"},
		{"backup schedule at 25:00", "PATCH", "/images/" + plain.ID, map[string]string{"backup_at": "25:00"}, 400, "HH:MM"},
		{"unmark a master with children", "PATCH", "/images/" + base.ID, map[string]bool{"master": false}, 409, "depend"},

		// Pools.
		{"pool path with ..", "POST", "/pools", engine.PoolRequest{Name: "dots", Driver: "dir", Path: "/tmp/../etc"}, 400, `".."`},
		{"relative pool path", "POST", "/pools", engine.PoolRequest{Name: "rel", Driver: "dir", Path: "data"}, 400, "absolute"},
		{"pool path that is missing", "POST", "/pools", engine.PoolRequest{Name: "gone", Driver: "dir", Path: "/nonexistent/cairn"}, 400, "existing directory"},
		{"pool inside pool 0", "POST", "/pools", engine.PoolRequest{Name: "inner", Driver: "dir", Path: filepath.Join(l.dir, "pools", "0", "images")}, 409, "overlaps"},
		{"unknown pool driver", "POST", "/pools", engine.PoolRequest{Name: "odd", Driver: "ntfs", Path: "/tmp"}, 400, "btrfs, dir, zfs"},
		{"zfs on this host", "POST", "/pools", engine.PoolRequest{Name: "tank", Driver: "zfs", Device: "/dev/null", ConfirmFormat: "/dev/null"}, 400, "not supported on this host"},
		{"pool on a non-device", "POST", "/pools", engine.PoolRequest{Name: "null", Driver: "btrfs", Device: "/dev/null", ConfirmFormat: "/dev/null"}, 400, "block device"},
		{"pool with both path and device", "POST", "/pools", engine.PoolRequest{Name: "both", Driver: "dir", Path: "/tmp", Device: "/dev/loop0"}, 400, "either"},
		{"pool number that is not a number", "GET", "/pools/abc", nil, 400, "numbered"},
		{"delete pool 0", "DELETE", "/pools/0", nil, 400, "always exists"},
		{"snapshots of a dir pool", "POST", "/pools/0/snapshots", nil, 400, "no snapshots"},

		// Servers.
		{"server name with a slash", "POST", "/servers", engine.ServerRequest{Name: "a/b", VCPUs: 1, MemoryMiB: 128}, 400, "name"},
		{"zero vcpus", "POST", "/servers", engine.ServerRequest{Name: "cpu0", VCPUs: 0, MemoryMiB: 128}, 400, "vcpus"},
		{"too little memory", "POST", "/servers", engine.ServerRequest{Name: "tiny", VCPUs: 1, MemoryMiB: 1}, 400, "memory_mib"},
		{"more memory than any node has", "POST", "/servers", engine.ServerRequest{Name: "whale", VCPUs: 1, MemoryMiB: 900 << 10}, 409, "no node is big enough"},
		{"more vcpus than any node has", "POST", "/servers", engine.ServerRequest{Name: "octopus", VCPUs: 64, MemoryMiB: 128}, 409, "no node is big enough"},
		{"five disks", "POST", "/servers", engine.ServerRequest{Name: "disks", VCPUs: 1, MemoryMiB: 128, Disks: make([]engine.ServerDiskRequest, 5)}, 400, "at most 4"},
		{"unknown bus", "POST", "/servers", engine.ServerRequest{Name: "usb", VCPUs: 1, MemoryMiB: 128, Disks: []engine.ServerDiskRequest{{Image: plain.ID, Bus: "usb"}}}, 400, "virtio, scsi or ide"},
		{"missing disk image", "POST", "/servers", engine.ServerRequest{Name: "ghost", VCPUs: 1, MemoryMiB: 128, Disks: []engine.ServerDiskRequest{{Image: "i-000000000000"}}}, 404, "i-000000000000"},
		{"a master as a disk", "POST", "/servers", engine.ServerRequest{Name: "direct", VCPUs: 1, MemoryMiB: 128, Disks: []engine.ServerDiskRequest{{Image: base.ID}}}, 400, "clone"},
		{"clone of a non-master", "POST", "/servers", engine.ServerRequest{Name: "cln", VCPUs: 1, MemoryMiB: 128, Disks: []engine.ServerDiskRequest{{Image: plain.ID, Clone: true}}}, 400, "not a master"},
		{"a disk as the cdrom", "POST", "/servers", engine.ServerRequest{Name: "cd", VCPUs: 1, MemoryMiB: 128, CDROM: plain.ID}, 400, "not an ISO"},
		{"unknown boot device", "POST", "/servers", engine.ServerRequest{Name: "floppy", VCPUs: 1, MemoryMiB: 128, Boot: []string{"floppy"}}, 400, "disk, cdrom, network"},
		{"lock to a missing node", "POST", "/servers", engine.ServerRequest{Name: "locked", VCPUs: 1, MemoryMiB: 128, LockNode: "n-nowhere"}, 400, "does not exist"},
		{"too many nics", "POST", "/servers", engine.ServerRequest{Name: "nics", VCPUs: 1, MemoryMiB: 128, NICs: 9}, 400, "nics"},
		{"a missing server", "POST", "/servers/s-000000000000/start", nil, 404, "s-000000000000"},
		{"delete a missing disk index", "DELETE", "/servers/s-000000000000/disks/x", nil, 400, "index"},

		// Backups, snapshots, operations, settings.
		{"restore a missing backup", "POST", "/backups/b-000000000000/restore", nil, 404, "b-000000000000"},
		{"snapshot name with ..", "POST", "/pools/0/snapshots/..%2Fx/restore", engine.RestoreRequest{Image: plain.ID}, 400, "snapshots"},
		{"cancel a missing operation", "POST", "/operations/op-000000000000/cancel", nil, 404, "op-000000000000"},
		{"placement policy", "PUT", "/engine/settings", engine.Settings{Placement: "random", CPUOvercommit: 4, MemoryOvercommit: 1, ShutdownTimeoutSeconds: 60}, 400, "disperse or pack"},
		{"backup pool that does not exist", "PUT", "/engine/settings", engine.Settings{Placement: "pack", CPUOvercommit: 4, MemoryOvercommit: 1, ShutdownTimeoutSeconds: 60, BackupPool: one + 8}, 400, "backup_pool"},
	}

	before := l.inventory()
	for _, c := range cases {
		status, body := l.do(c.method, c.path, c.body, nil)
		var e struct{ Error string }
		json.Unmarshal([]byte(body), &e)
		switch {
		case status != c.status:
			t.Errorf("%s: %s %s: %d %s, want %d", c.name, c.method, c.path, status, body, c.status)
		case !strings.Contains(e.Error, c.says):
			t.Errorf("%s: the message %q does not say %q", c.name, e.Error, c.says)
		}
	}
	if after := l.inventory(); after != before {
		t.Errorf("bad requests left something behind:\nbefore: %s\nafter:  %s", before, after)
	}
}

// inventory describes what the engine holds: image, server and pool IDs with their
// states, and the files in pool 0.
func (l *lab) inventory() string {
	var images, servers, pools struct {
		Items []map[string]any `json:"items"`
	}
	l.must(200, "GET", "/images", nil, &images)
	l.must(200, "GET", "/servers", nil, &servers)
	l.must(200, "GET", "/pools", nil, &pools)
	var parts []string
	for _, list := range [][]map[string]any{images.Items, servers.Items, pools.Items} {
		for _, it := range list {
			parts = append(parts, fmt.Sprint(it["id"], "=", it["state"]))
		}
	}
	entries, _ := os.ReadDir(filepath.Join(l.dir, "pools", "0", "images"))
	for _, e := range entries {
		parts = append(parts, e.Name())
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}
