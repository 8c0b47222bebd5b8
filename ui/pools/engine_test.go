package pools

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sys/unix"

	"github.com/cairn-os/cairn/internal/enginetest"
	"github.com/cairn-os/cairn/internal/testutil"
	"github.com/cairn-os/cairn/supervisor/engine"
)

func TestRealBtrfsPoolFromCreateToRollback(t *testing.T) {
	testutil.RequireRoot(t)
	for _, p := range []string{"losetup", "mkfs.btrfs", "btrfs", "blkid", "wipefs", "qemu-img"} {
		testutil.RequireProgram(t, p)
	}
	ctx := context.Background()
	state := t.TempDir()
	dev := testutil.LoopDevice(t, 512<<20)
	// The engine mounts pool 1 here; unmount it before the loop device goes.
	t.Cleanup(func() {
		for unix.Unmount(filepath.Join(state, "pools", "1"), 0) == nil {
		}
	})
	e, err := engine.Open(ctx, engine.Config{StateDir: state, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	if _, err := e.EnsureAdmin(ctx, "admin-password"); err != nil {
		t.Fatal(err)
	}
	admin, err := e.Authenticate(ctx, engine.AdminName, "admin-password")
	if err != nil {
		t.Fatal(err)
	}

	// The device is formatted only once its path is typed a second time.
	create := url.Values{"name": {"fast"}, "driver": {"btrfs"}, "on": {"device"}, "device": {dev}, "shared": {"yes"}, "snapshot_keep": {"7"}}
	rec := do(t, e, admin, http.MethodPost, "/pools", create.Encode())
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `id="confirm-device-prompt"`) {
		t.Fatalf("device without confirmation: %d", rec.Code)
	}
	if pools, _ := e.Pools(ctx, admin); len(pools) != 1 {
		t.Fatalf("a pool was made without the confirmation: %+v", pools)
	}
	create.Set("confirm_device", dev)
	rec = do(t, e, admin, http.MethodPost, "/pools", create.Encode())
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/pools/1?done=created" {
		t.Fatalf("create: %d %q\n%s", rec.Code, rec.Header().Get("Location"), rec.Body.String())
	}
	body := do(t, e, admin, http.MethodGet, "/pools", "").Body.String()
	if !strings.Contains(body, `<tr data-pool-id="1" data-state="ready">`) || !strings.Contains(body, dev+" at ") {
		t.Fatalf("the new pool is not listed ready:\n%s", body)
	}
	// The same device again is the engine's refusal, shown as it is.
	rec = do(t, e, admin, http.MethodPost, "/pools", strings.Replace(create.Encode(), "name=fast", "name=again", 1))
	if rec.Code < 400 || !strings.Contains(rec.Body.String(), `id="create-error"`) {
		t.Errorf("the same device twice: %d", rec.Code)
	}

	one := 1
	im, err := e.CreateImage(ctx, admin, engine.ImageRequest{Name: "vm-disk", Pool: &one, Format: "raw", Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	before := bytes.Repeat([]byte("as it was "), 100)
	if err := os.WriteFile(im.Path, before, 0o640); err != nil {
		t.Fatal(err)
	}
	// Another user's image in the same pool.
	bob := enginetest.User(t, e, admin, "bob", engine.RoleUser)
	bobs, err := e.CreateImage(ctx, bob, engine.ImageRequest{Name: "bobs-disk", Pool: &one, Format: "raw", Size: 2 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if rec := do(t, e, admin, http.MethodPost, "/pools/1/snapshots", ""); rec.Code != http.StatusSeeOther {
		t.Fatalf("snapshot now: %d\n%s", rec.Code, rec.Body.String())
	}
	snaps, err := e.PoolSnapshots(ctx, admin, "1")
	if err != nil || len(snaps) != 1 {
		t.Fatalf("snapshots: %v %v", snaps, err)
	}
	snap := snaps[0].Name
	if got := snapshotImageIDs(snaps[0]); got != bobs.ID+" "+im.ID && got != im.ID+" "+bobs.ID {
		t.Errorf("the admin sees the snapshot holding %q, want both images", got)
	}
	// Bob sees only his own image in the snapshot, also once he deleted it, and can
	// bring it back from the pool's page as a new image.
	if err := e.DeleteImage(ctx, bob, bobs.ID); err != nil {
		t.Fatal(err)
	}
	if snaps, err := e.PoolSnapshots(ctx, bob, "1"); err != nil || len(snaps) != 1 || snapshotImageIDs(snaps[0]) != bobs.ID || !snaps[0].Images[0].Deleted {
		t.Fatalf("bob's view of the snapshot: %+v %v; want only his image, deleted", snaps, err)
	}
	page := do(t, e, bob, http.MethodGet, "/pools/1", "").Body.String()
	if !strings.Contains(page, `<option value="`+bobs.ID+`" data-deleted>bobs-disk`) || strings.Contains(page, im.ID) {
		t.Errorf("bob's restore form does not offer his deleted image alone:\n%s", page)
	}
	rec = do(t, e, bob, http.MethodPost, "/pools/1/snapshots/"+snap+"/restore", url.Values{"image": {bobs.ID}, "mode": {"new"}, "name": {"bobs-back"}}.Encode())
	if loc, _ := url.Parse(rec.Header().Get("Location")); rec.Code != http.StatusSeeOther || loc == nil || loc.Query().Get("op") == "" {
		t.Fatalf("bob's restore: %d %q\n%s", rec.Code, rec.Header().Get("Location"), rec.Body.String())
	} else if op, err := e.WaitOperation(ctx, bob, loc.Query().Get("op")); err != nil || op.State != engine.OpSucceeded {
		t.Fatalf("bob's restore operation: %+v %v", op, err)
	} else if back, err := e.Image(ctx, bob, op.Result); err != nil || back.Name != "bobs-back" || back.Owner != bob.ID {
		t.Fatalf("bob's restored image: %+v %v", back, err)
	}
	if body := do(t, e, admin, http.MethodGet, "/pools/1", "").Body.String(); !strings.Contains(body, `<tr data-snapshot="`+snap+`">`) {
		t.Errorf("the snapshot is not listed on the pool's page")
	}
	if err := os.WriteFile(im.Path, []byte("changed since"), 0o640); err != nil {
		t.Fatal(err)
	}

	// One image back as a new image, with a progress bar to follow.
	rec = do(t, e, admin, http.MethodPost, "/pools/1/snapshots/"+snap+"/restore", url.Values{"image": {im.ID}, "mode": {"new"}, "name": {"vm-disk-then"}}.Encode())
	loc, _ := url.Parse(rec.Header().Get("Location"))
	if rec.Code != http.StatusSeeOther || loc == nil || loc.Query().Get("op") == "" {
		t.Fatalf("restore: %d %q\n%s", rec.Code, rec.Header().Get("Location"), rec.Body.String())
	}
	op, err := e.WaitOperation(ctx, admin, loc.Query().Get("op"))
	if err != nil || op.State != engine.OpSucceeded {
		t.Fatalf("restore operation: %+v %v", op, err)
	}
	restored, err := e.Image(ctx, admin, op.Result)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(restored.Path); !bytes.HasPrefix(got, before) {
		t.Errorf("the restored image holds %.30q…", got)
	}

	// The whole pool back: only after typing its name.
	if rec := do(t, e, admin, http.MethodPost, "/pools/1/snapshots/"+snap+"/rollback", "confirm="); rec.Code != http.StatusBadRequest {
		t.Errorf("rollback without the name: %d", rec.Code)
	}
	if got, _ := os.ReadFile(im.Path); string(got) != "changed since" {
		t.Fatalf("the pool changed without the confirmation: %.30q", got)
	}
	if rec := do(t, e, admin, http.MethodPost, "/pools/1/snapshots/"+snap+"/rollback", "confirm=fast"); rec.Code != http.StatusSeeOther {
		t.Fatalf("rollback: %d\n%s", rec.Code, rec.Body.String())
	}
	if got, _ := os.ReadFile(im.Path); !bytes.HasPrefix(got, before) {
		t.Errorf("after the rollback the image holds %.30q…", got)
	}
	if _, err := e.Image(ctx, admin, restored.ID); err == nil {
		t.Error("the image made after the snapshot is still there after the rollback")
	}

	if rec := do(t, e, admin, http.MethodPost, "/pools/1/snapshots/"+snap+"/delete", "confirm=yes"); rec.Code != http.StatusSeeOther {
		t.Fatalf("delete snapshot: %d\n%s", rec.Code, rec.Body.String())
	}
	if snaps, _ := e.PoolSnapshots(ctx, admin, "1"); len(snaps) != 0 {
		t.Errorf("snapshots after the delete: %v", snaps)
	}
}

// snapshotImageIDs lists the IDs of the images a snapshot holds, space-separated.
func snapshotImageIDs(s engine.PoolSnapshot) string {
	var ids []string
	for _, im := range s.Images {
		ids = append(ids, im.ID)
	}
	return strings.Join(ids, " ")
}
