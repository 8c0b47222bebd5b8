package backups

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/cairn-os/cairn/internal/enginetest"
	"github.com/cairn-os/cairn/internal/testutil"
	"github.com/cairn-os/cairn/supervisor/engine"
)

// waitOp waits for the operation a redirect names (…?op=ID) and returns it.
func waitOp(t *testing.T, e *engine.Engine, u engine.User, location string) engine.Operation {
	t.Helper()
	loc, err := url.Parse(location)
	if err != nil || loc.Query().Get("op") == "" {
		t.Fatalf("redirect %q names no operation", location)
	}
	op, err := e.WaitOperation(t.Context(), u, loc.Query().Get("op"))
	if err != nil {
		t.Fatal(err)
	}
	if op.State != engine.OpSucceeded {
		t.Fatalf("operation %s ended %s: %s", op.ID, op.State, op.Error)
	}
	return op
}

func TestRealBackupRestoresInPlaceAndAsNew(t *testing.T) {
	testutil.RequireProgram(t, "qemu-img")
	ctx := context.Background()
	e, admin := enginetest.Open(t)
	dave := enginetest.User(t, e, admin, "dave", engine.RoleUser)
	im, err := e.CreateImage(ctx, dave, engine.ImageRequest{Name: "data", Format: "raw", Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	before := bytes.Repeat([]byte("before "), 1000)
	if err := os.WriteFile(im.Path, before, 0o640); err != nil {
		t.Fatal(err)
	}
	op, err := e.BackupImage(ctx, dave, im.ID)
	if err != nil {
		t.Fatal(err)
	}
	if op, _ = e.WaitOperation(ctx, dave, op.ID); op.State != engine.OpSucceeded {
		t.Fatalf("backup: %s %s", op.State, op.Error)
	}
	backupID := op.Result
	if err := os.WriteFile(im.Path, []byte("after, and different"), 0o640); err != nil {
		t.Fatal(err)
	}

	body := do(t, e, dave, http.MethodGet, "/backups", "").Body.String()
	if !strings.Contains(body, `<tr data-backup-id="`+backupID+`" data-image-id="`+im.ID+`"`) || !strings.Contains(body, `href="/images/`+im.ID+`">data<`) {
		t.Fatalf("the backup is not listed:\n%s", body)
	}

	// In place: the file holds what it held at the backup.
	rec := do(t, e, dave, http.MethodPost, "/backups/"+backupID+"/restore", "mode=inplace")
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("restore in place: %d\n%s", rec.Code, rec.Body.String())
	}
	waitOp(t, e, dave, rec.Header().Get("Location"))
	if got, _ := os.ReadFile(im.Path); !bytes.HasPrefix(got, before) {
		t.Errorf("after the restore the image holds %.40q…", got)
	}

	// As a new image, beside the old one.
	rec = do(t, e, dave, http.MethodPost, "/backups/"+backupID+"/restore", "mode=new&name=data-copy")
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("restore as new: %d\n%s", rec.Code, rec.Body.String())
	}
	op = waitOp(t, e, dave, rec.Header().Get("Location"))
	copyImage, err := e.Image(ctx, dave, op.Result)
	if err != nil || copyImage.Name != "data-copy" || copyImage.State != engine.ImageReady {
		t.Fatalf("restored image: %+v %v", copyImage, err)
	}
	if got, _ := os.ReadFile(copyImage.Path); !bytes.HasPrefix(got, before) {
		t.Errorf("the new image holds %.40q…", got)
	}
	// The same name again is the engine's refusal, shown as it is.
	rec = do(t, e, dave, http.MethodPost, "/backups/"+backupID+"/restore", "mode=new&name=data-copy")
	if rec.Code != http.StatusConflict || !strings.Contains(rec.Body.String(), "you already have an image named &#34;data-copy&#34;") {
		t.Errorf("restore under a taken name: %d", rec.Code)
	}

	if rec := do(t, e, dave, http.MethodPost, "/backups/"+backupID+"/delete", "confirm=yes"); rec.Code != http.StatusSeeOther {
		t.Fatalf("delete: %d", rec.Code)
	}
	if list, _ := e.Backups(ctx, dave, ""); len(list) != 0 {
		t.Errorf("backups after the delete: %v", list)
	}
}
