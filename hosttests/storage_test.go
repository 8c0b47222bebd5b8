package hosttests

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-os/cairn/internal/testimage"
	"github.com/cairn-os/cairn/internal/testutil"
	"github.com/cairn-os/cairn/supervisor/engine"
)

// bootMarker starts the server for its nth boot, reads the marker its disk holds
// from the serial console, and forces it off again.
func (l *lab) bootMarker(s engine.Server, nth int) (marker string, boots string) {
	l.t.Helper()
	l.must(200, "POST", "/servers/"+s.ID+"/start", nil, nil)
	// The console's history holds the earlier boots too: wait for the nth "ready",
	// and this boot's marker line is the last one.
	nthReady := regexp.MustCompile(fmt.Sprintf(`(?:[\s\S]*?cairn-test: ready){%d}`, nth))
	out := l.serial(s.ID, nthReady, 3*time.Minute)
	all := testimage.MarkerLine.FindAllStringSubmatch(out, -1)
	m := all[len(all)-1]
	l.must(200, "POST", "/servers/"+s.ID+"/stop", nil, nil)
	l.waitState(s.ID, engine.ServerShutoff, 30*time.Second)
	return m[1], m[2]
}

// TestBtrfsPoolSnapshotsAndBackups makes a btrfs pool on a loop device, snapshots it,
// changes an image, restores it from the snapshot and boots the restored content;
// rolls the pool back over a deleted image; backs an image up, deletes it, restores
// the backup as a new image and boots that.
func TestBtrfsPoolSnapshotsAndBackups(t *testing.T) {
	l := newLab(t, "")
	testutil.RequireProgram(t, "mkfs.btrfs")
	img := testImage(t)
	dev := testutil.LoopDevice(t, 1<<30)

	var p engine.Pool
	status, msg := l.do("POST", "/pools", engine.PoolRequest{Name: "fast", Driver: "btrfs", Device: dev}, nil)
	if status != 400 || !strings.Contains(msg, "confirm_format") {
		t.Fatalf("pool on a device without confirmation: %d %s, want 400 asking for confirm_format", status, msg)
	}
	l.must(201, "POST", "/pools", engine.PoolRequest{Name: "fast", Driver: "btrfs", Device: dev, ConfirmFormat: dev}, &p)
	if p.State != engine.PoolReady || !p.Snapshots || p.ID != 1 {
		t.Fatalf("new pool: %+v", p)
	}
	t.Cleanup(func() {
		exec.Command("umount", p.Path).Run()
	})
	var again engine.Pool
	if status, msg := l.do("POST", "/pools", engine.PoolRequest{Name: "again", Driver: "btrfs", Device: dev, ConfirmFormat: dev}, &again); status < 400 || status >= 500 {
		t.Fatalf("a second pool on the mounted device: %d %s, want a 4xx", status, msg)
	}

	im := l.upload(img, "disk", "qcow2", p.ID)
	var s engine.Server
	l.must(201, "POST", "/servers", engine.ServerRequest{Name: "snappy", VCPUs: 1, MemoryMiB: 128,
		Disks: []engine.ServerDiskRequest{{Image: im.ID, Bus: "scsi"}}}, &s)
	l.track(s)
	original, boots := l.bootMarker(s, 1)
	if boots != "1" {
		t.Fatalf("first boot counts %s", boots)
	}

	var snap engine.PoolSnapshot
	l.must(201, "POST", fmt.Sprintf("/pools/%d/snapshots", p.ID), nil, &snap)
	if err := testimage.SetMarker(t.Context(), im.Path, "changed"); err != nil {
		t.Fatal(err)
	}
	if m, _ := l.bootMarker(s, 2); m != "changed" {
		t.Fatalf("after changing the image the guest shows marker %q", m)
	}

	// Restore the image in place from the snapshot: the guest boots the old content.
	var op engine.Operation
	l.must(202, "POST", fmt.Sprintf("/pools/%d/snapshots/%s/restore", p.ID, snap.Name), engine.RestoreRequest{Image: im.ID}, &op)
	l.wait(op)
	if m, b := l.bootMarker(s, 3); m != original || b != "2" {
		t.Fatalf("after the restore the guest shows marker %q boots %s, want %q boots 2", m, b, original)
	}

	// Roll the whole pool back over a deleted image.
	l.must(200, "DELETE", "/servers/"+s.ID+"?disks=delete", nil, nil)
	if _, err := os.Stat(im.Path); !os.IsNotExist(err) {
		t.Fatalf("the deleted image's file is still there: %v", err)
	}
	path := fmt.Sprintf("/pools/%d/snapshots/%s/rollback", p.ID, snap.Name)
	if status, msg := l.do("POST", path, map[string]string{"confirm": "wrong"}, nil); status != 400 {
		t.Fatalf("rollback without the pool's name: %d %s, want 400", status, msg)
	}
	l.must(200, "POST", path, map[string]string{"confirm": "fast"}, nil)
	var back engine.Image
	l.must(200, "GET", "/images/"+im.ID, nil, &back)
	if back.State != engine.ImageReady {
		t.Fatalf("image after rollback: %+v", back)
	}
	if m, err := testimage.Marker(t.Context(), back.Path); err != nil || m != original {
		t.Fatalf("image after rollback has marker %q (%v), want %q", m, err, original)
	}

	// Back the image up, delete it, restore the backup as a new image and boot it.
	l.must(202, "POST", "/images/"+im.ID+"/backup", nil, &op)
	op = l.wait(op)
	var bk engine.Backup
	l.must(200, "GET", "/backups/"+op.Result, nil, &bk)
	if bk.Image != im.ID || bk.Size <= 0 {
		t.Fatalf("backup: %+v", bk)
	}
	l.must(204, "DELETE", "/images/"+im.ID, nil, nil)
	l.must(202, "POST", "/backups/"+bk.ID+"/restore", engine.RestoreRequest{Name: "reborn"}, &op)
	op = l.wait(op)
	var reborn engine.Image
	l.must(200, "GET", "/images/"+op.Result, nil, &reborn)
	var s2 engine.Server
	l.must(201, "POST", "/servers", engine.ServerRequest{Name: "reborn", VCPUs: 1, MemoryMiB: 128,
		Disks: []engine.ServerDiskRequest{{Image: reborn.ID, Bus: "ide"}}}, &s2)
	l.track(s2)
	if m, _ := l.bootMarker(s2, 1); m != original {
		t.Fatalf("the restored backup boots with marker %q, want %q", m, original)
	}
	l.must(200, "DELETE", "/servers/"+s2.ID+"?disks=delete", nil, nil)
	l.must(204, "DELETE", "/backups/"+bk.ID, nil, nil)
	l.must(204, "DELETE", fmt.Sprintf("/pools/%d", p.ID), nil, nil)
}

// TestDailySnapshots: a btrfs pool with a daily snapshot time gets one snapshot a day
// once that time has passed, keeps the last N daily ones, and never prunes a
// snapshot taken by hand.
func TestDailySnapshots(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 3, 1, 1, 0, 0, 0, time.Local)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	set := func(t time.Time) { mu.Lock(); now = t; mu.Unlock() }
	l := newLab(t, "", func(c *engine.Config) { c.Now = clock })
	testutil.RequireProgram(t, "mkfs.btrfs")
	dev := testutil.LoopDevice(t, 512<<20)
	var p engine.Pool
	l.must(201, "POST", "/pools", engine.PoolRequest{Name: "daily", Driver: "btrfs", Device: dev, ConfirmFormat: dev, SnapshotAt: "02:00", SnapshotKeep: 2}, &p)
	t.Cleanup(func() { exec.Command("umount", p.Path).Run() })
	var manual engine.PoolSnapshot
	l.must(201, "POST", fmt.Sprintf("/pools/%d/snapshots", p.ID), nil, &manual)
	list := func() (daily []string, byHand int) {
		var out struct{ Items []engine.PoolSnapshot }
		l.must(200, "GET", fmt.Sprintf("/pools/%d/snapshots", p.ID), nil, &out)
		for _, s := range out.Items {
			if s.Daily {
				daily = append(daily, s.Name)
			} else {
				byHand++
			}
		}
		return
	}
	l.e.CheckSchedules(t.Context())
	if d, _ := list(); len(d) != 0 {
		t.Fatalf("at 01:00 the pool has daily snapshots %v, want none before 02:00", d)
	}
	for day := range 4 {
		set(time.Date(2026, 3, 2+day, 2, 1, 0, 0, time.Local))
		l.e.CheckSchedules(t.Context())
		l.e.CheckSchedules(t.Context())
		want := []string{}
		for d := max(0, day-1); d <= day; d++ {
			want = append(want, fmt.Sprintf("daily-202603%02d", 2+d))
		}
		daily, byHand := list()
		if strings.Join(daily, " ") != strings.Join(want, " ") || byHand != 1 {
			t.Fatalf("day %d: daily %v and %d by hand, want %v and 1", day+1, daily, byHand, want)
		}
	}
}
