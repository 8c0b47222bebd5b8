package engine

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-os/cairn/internal/testutil"
)

// waitOps waits for every running operation of the engine to end.
func waitOps(t *testing.T, te *testEngine, u User) {
	t.Helper()
	ops, err := te.Operations(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range ops {
		if op.State != OpRunning {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		done, err := te.WaitOperation(ctx, u, op.ID)
		cancel()
		if err != nil || done.State != OpSucceeded {
			t.Fatalf("operation %s: %+v %v", op.ID, done, err)
		}
	}
}

// TestScheduledBackups: an image with a daily backup time is backed up once a day
// when that time has passed, and only the last N scheduled backups are kept; backups
// made by hand are never pruned.
func TestScheduledBackups(t *testing.T) {
	testutil.RequireProgram(t, "qemu-img")
	c := &clock{t: time.Date(2026, 3, 1, 1, 0, 0, 0, time.Local)}
	te := openTest(t, "", c)
	u := te.admin(t)
	ctx := context.Background()
	im, err := te.CreateImage(ctx, u, ImageRequest{Name: "data", Format: "qcow2", Size: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	at, keep := "02:00", 2
	if _, err := te.UpdateImage(ctx, u, im.ID, ImageUpdate{BackupAt: &at, BackupKeep: &keep}); err != nil {
		t.Fatal(err)
	}
	manual, err := te.BackupImage(ctx, u, im.ID)
	if err != nil {
		t.Fatal(err)
	}
	waitOps(t, te, u)
	pass := func() {
		te.CheckSchedules(ctx)
		waitOps(t, te, u)
		te.CheckSchedules(ctx)
		waitOps(t, te, u)
	}
	count := func() (scheduled, byHand int) {
		list, err := te.Backups(ctx, u, im.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range list {
			if _, err := os.Stat(b.Path); err != nil {
				t.Errorf("backup %s has no file: %v", b.ID, err)
			}
			if b.Scheduled {
				scheduled++
			} else {
				byHand++
			}
		}
		return
	}
	pass()
	if s, _ := count(); s != 0 {
		t.Fatalf("at 01:00 there are %d scheduled backups, want none before 02:00", s)
	}
	for day, want := range []int{1, 2, 2, 2} {
		c.t = time.Date(2026, 3, 2+day, 2, 5, 0, 0, time.Local)
		pass()
		pass() // a second pass the same day makes no second backup
		if s, h := count(); s != want || h != 1 {
			t.Fatalf("day %d: %d scheduled and %d manual backups, want %d and 1", day+1, s, h, want)
		}
	}
	if op, err := te.Operation(ctx, u, manual.ID); err != nil || op.State != OpSucceeded {
		t.Fatalf("manual backup: %+v %v", op, err)
	}
}

// TestCancelCopy: a full copy canceled while it runs ends canceled, and neither the
// new image nor its file is left behind.
func TestCancelCopy(t *testing.T) {
	testutil.RequireProgram(t, "qemu-img")
	te := openTest(t, "", nil)
	u := te.admin(t)
	ctx := context.Background()
	// A raw image with 1 GiB of data (a copy skips holes, so they would not slow it).
	im, err := te.CreateImage(ctx, u, ImageRequest{Name: "big", Format: "raw", Size: 2 << 30})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(im.Path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	block := bytes.Repeat([]byte("cairn data "), 1<<20/11+1)[:1<<20]
	for off := int64(0); off < 1<<30; off += int64(len(block)) {
		if _, err := f.WriteAt(block, off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	linked := false
	_, op, err := te.CloneImage(ctx, u, im.ID, CloneRequest{Name: "copy", Linked: &linked})
	if err != nil {
		t.Fatal(err)
	}
	// Cancel once the copy has begun moving data.
	for {
		got, err := te.Operation(ctx, u, op.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != OpRunning {
			t.Fatalf("the copy of 1 GiB ended %s before it could be canceled", got.State)
		}
		if got.Progress > 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	got, err := te.CancelOperation(ctx, u, op.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != OpCanceled {
		t.Fatalf("after cancel the copy is %s (%s), want canceled", got.State, got.Error)
	}
	images, err := te.Images(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	if len(images) != 1 || images[0].ID != im.ID || images[0].State != ImageReady {
		t.Fatalf("after a canceled copy the images are %+v, want only the source, ready", images)
	}
	entries, _ := os.ReadDir(filepath.Dir(im.Path))
	for _, e := range entries {
		if e.Name() != filepath.Base(im.Path) {
			t.Errorf("a canceled copy left %s in the pool", e.Name())
		}
	}
	if _, err := te.CancelOperation(ctx, u, op.ID); err == nil {
		t.Error("canceling an ended operation again was not refused")
	}
}
