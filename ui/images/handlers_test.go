package images

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/cairn-os/cairn/supervisor/engine"
)

func newHandlers(svc Service) *Handlers { return New(svc, quietLogger()) }

// rows returns the table's rows as "id=state" in order.
func rows(html string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`<tr data-image-id="([^"]+)" data-state="([^"]+)"`).FindAllStringSubmatch(html, -1) {
		out = append(out, m[1]+"="+m[2])
	}
	return out
}

func TestTableRowsCarryIDStateAndOwnersForAdmins(t *testing.T) {
	h := newHandlers(newFake(t))
	rec := do(t, h, root, http.MethodGet, "/images/table", nil, "HX-Request", "true", "HX-Target", "images")
	got := rec.Body.String()
	if rec.Code != http.StatusOK || !strings.HasPrefix(got, `<table id="images"`) {
		t.Fatalf("fragment: %d\n%s", rec.Code, got)
	}
	want := []string{"i-bob=busy", "i-deb=ready", "i-web=ready", "i-up=uploading"}
	if fmt.Sprint(rows(got)) != fmt.Sprint(want) {
		t.Errorf("rows %v, want %v (sorted by name)", rows(got), want)
	}
	for _, s := range []string{"<th>Owner</th>", ">alice<", ">bob<", "tag-master", "Uploading 20 %", "web-server", "every 3s", "20 GiB", ">fast<"} {
		if !strings.Contains(got, s) {
			t.Errorf("admin's table lacks %q", s)
		}
	}
	// alice sees only her own images, no owner column, and no polling (nothing of hers is busy).
	got = do(t, h, alice, http.MethodGet, "/images/table", nil, "HX-Request", "true", "HX-Target", "images").Body.String()
	if fmt.Sprint(rows(got)) != "[i-deb=ready i-web=ready i-up=uploading]" {
		t.Errorf("alice's rows: %v", rows(got))
	}
	if strings.Contains(got, "<th>Owner</th>") || strings.Contains(got, "bobs-disk") || strings.Contains(got, "every 3s") {
		t.Errorf("alice's table shows owners, bob's image or polls:\n%s", got)
	}
	if !strings.Contains(got, `data-resume-id="i-up"`) || !strings.Contains(got, `data-resume-size="5368709120"`) {
		t.Errorf("the unfinished upload has no Resume input:\n%s", got)
	}
}

func TestUploadStartAnswersIDAndOffset(t *testing.T) {
	svc := newFake(t)
	h := newHandlers(svc)
	rec := post(t, h, alice, "/images/upload", "name=debian&format=qcow2&pool=1&size=123456")
	var a UploadAnswer
	if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil || rec.Code != http.StatusCreated {
		t.Fatalf("start: %d %q (%v)", rec.Code, rec.Body.String(), err)
	}
	if a.ID == "" || a.Offset != 0 || a.Size != 123456 || a.State != "uploading" {
		t.Errorf("answer %+v", a)
	}
	im, err := svc.Image(t.Context(), alice, a.ID)
	if err != nil || im.Pool != 1 || im.Name != "debian" {
		t.Errorf("recorded image %+v, %v", im, err)
	}
	for _, form := range []string{"name=x&format=qcow2", "name=x&format=qcow2&size=-5", "name=x&format=qcow2&size=12&pool=fast"} {
		if rec := post(t, h, alice, "/images/upload", form); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"error"`) {
			t.Errorf("%s: %d %s", form, rec.Code, rec.Body.String())
		}
	}
}

func TestChunkAtWrongOffsetIsConflictWithTheOffsetToResumeFrom(t *testing.T) {
	h := newHandlers(newFake(t))
	chunk := func(off string, body string) (int, UploadAnswer) {
		rec := do(t, h, alice, http.MethodPatch, "/images/i-up/upload", strings.NewReader(body),
			OffsetHeader, off, "Content-Type", ChunkContentType)
		var a UploadAnswer
		json.Unmarshal(rec.Body.Bytes(), &a)
		return rec.Code, a
	}
	code, a := chunk("0", "abc")
	if code != http.StatusConflict || a.Offset != 1<<30 || !strings.Contains(a.Error, "resume from 1073741824") {
		t.Errorf("wrong offset: %d %+v", code, a)
	}
	code, a = chunk("1073741824", "abcd")
	if code != http.StatusOK || a.Offset != 1<<30+4 || a.State != "uploading" {
		t.Errorf("right offset: %d %+v", code, a)
	}
	rec := do(t, h, alice, http.MethodGet, "/images/i-up/upload", nil)
	json.Unmarshal(rec.Body.Bytes(), &a)
	if rec.Code != http.StatusOK || a.Offset != 1<<30+4 || a.Size != 5<<30 {
		t.Errorf("status: %d %+v", rec.Code, a)
	}
}

func TestChunkHeadersAreStrict(t *testing.T) {
	svc := newFake(t)
	h := newHandlers(svc)
	for _, c := range []struct {
		offset, ctype string
		want          int
	}{
		{"", ChunkContentType, http.StatusBadRequest},
		{"abc", ChunkContentType, http.StatusBadRequest},
		{"-1", ChunkContentType, http.StatusBadRequest},
		{"+1073741824", ChunkContentType, http.StatusBadRequest},
		{"1073741824 ", ChunkContentType, http.StatusBadRequest},
		{"99999999999999999999", ChunkContentType, http.StatusBadRequest},
		{"1073741824", "application/octet-stream", http.StatusUnsupportedMediaType},
		{"1073741824", "application/x-www-form-urlencoded", http.StatusUnsupportedMediaType},
	} {
		r := do(t, h, alice, http.MethodPatch, "/images/i-up/upload", strings.NewReader("x"), OffsetHeader, c.offset, "Content-Type", c.ctype)
		if r.Code != c.want || !strings.Contains(r.Body.String(), `"error"`) {
			t.Errorf("offset %q type %q: %d %s, want %d", c.offset, c.ctype, r.Code, r.Body.String(), c.want)
		}
	}
	if svc.called("UploadChunk") {
		t.Error("a malformed chunk reached the engine")
	}
}

func TestReadonlyViewerSeesNoActions(t *testing.T) {
	svc := newFake(t)
	svc.images[0].Owner = reader.ID
	svc.images[2].Owner = reader.ID
	h := newHandlers(svc)
	actions := regexp.MustCompile(`data-action="(\w+)"`)
	for _, target := range []string{"/images", "/images/i-deb", "/images/i-up"} {
		rec := do(t, h, reader, http.MethodGet, target, nil)
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: %d", target, rec.Code)
		}
		content := rec.Body.String()[strings.Index(rec.Body.String(), `<main`):]
		for _, m := range actions.FindAllStringSubmatch(content, -1) {
			if m[1] != "download" {
				t.Errorf("%s shows a read-only viewer the action %s", target, m[1])
			}
		}
		for _, s := range []string{"<form", "<button", "data-resume-id", "upload.js"} {
			if strings.Contains(content, s) {
				t.Errorf("%s shows a read-only viewer %s", target, s)
			}
		}
	}
	// The same page for the owner has them.
	svc.images[0].Owner = alice.ID
	body := do(t, h, alice, http.MethodGet, "/images/i-deb", nil).Body.String()
	for _, s := range []string{`data-action="clone"`, `data-action="master"`, `data-action="delete"`, `data-action="backup"`, `data-action="schedule"`} {
		if !strings.Contains(body, s) {
			t.Errorf("owner's page lacks %s", s)
		}
	}
	// A read-only user who posts anyway gets the engine's refusal.
	rec := post(t, h, reader, "/images/i-up/delete", "confirm=yes")
	if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "readonly users can only look") {
		t.Errorf("read-only delete: %d", rec.Code)
	}
}

func TestAnotherUsersImageIsNotFound(t *testing.T) {
	svc := newFake(t)
	h := newHandlers(svc)
	for _, c := range []struct{ method, target string }{
		{http.MethodGet, "/images/i-bob"},
		{http.MethodGet, "/images/i-bob/download"},
		{http.MethodGet, "/images/i-bob/upload"},
		{http.MethodPost, "/images/i-bob/delete"},
		{http.MethodPost, "/images/i-bob/convert"},
	} {
		rec := do(t, h, alice, c.method, c.target, strings.NewReader("confirm=yes&format=raw"), "Content-Type", "application/x-www-form-urlencoded")
		if rec.Code != http.StatusNotFound || strings.Contains(rec.Body.String(), "bobs-disk") {
			t.Errorf("%s %s as alice: %d", c.method, c.target, rec.Code)
		}
	}
	rec := do(t, h, alice, http.MethodPatch, "/images/i-bob/upload", strings.NewReader("x"), OffsetHeader, "0", "Content-Type", ChunkContentType)
	if rec.Code != http.StatusNotFound {
		t.Errorf("PATCH another user's upload: %d", rec.Code)
	}
	if _, err := svc.Image(t.Context(), root, "i-bob"); err != nil {
		t.Errorf("bob's image went: %v", err)
	}
	if rec := do(t, h, root, http.MethodGet, "/images/i-bob", nil); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "bobs-disk") {
		t.Errorf("admin cannot see bob's image: %d", rec.Code)
	}
}

func TestDeleteShowsTheEnginesRefusalPlainly(t *testing.T) {
	svc := newFake(t)
	h := newHandlers(svc)
	if rec := post(t, h, alice, "/images/i-deb/delete", ""); rec.Code != http.StatusBadRequest || svc.called("DeleteImage") || !strings.Contains(rec.Body.String(), "Tick the box") {
		t.Errorf("delete without confirming: %d, reached the engine: %v", rec.Code, svc.called("DeleteImage"))
	}
	const msg = `delete image "i-deb": in use: it is a master and child images [i-web] depend on it; delete or flatten them first`
	svc.refuse = fmt.Errorf(`delete image "i-deb": %w: it is a master and child images [i-web] depend on it; delete or flatten them first`, engine.ErrInUse)
	rec := post(t, h, alice, "/images/i-deb/delete", "confirm=yes")
	if rec.Code != http.StatusConflict || !strings.Contains(rec.Body.String(), `id="action-error">`+strings.ReplaceAll(msg, `"`, "&#34;")+"<") {
		t.Errorf("refused delete: %d\n%s", rec.Code, rec.Body.String())
	}
	svc.refuse = nil
	rec = post(t, h, alice, "/images/i-web/delete", "confirm=yes")
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/images?done=deleted" {
		t.Errorf("delete: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	if _, err := svc.Image(t.Context(), alice, "i-web"); err == nil {
		t.Error("the image is still there")
	}
	if body := do(t, h, alice, http.MethodGet, "/images?done=deleted", nil).Body.String(); !strings.Contains(body, "The image was deleted.") {
		t.Error("no confirmation after the delete")
	}
}

func TestDownloadIsResumable(t *testing.T) {
	h := newHandlers(newFake(t))
	rec := do(t, h, alice, http.MethodGet, "/images/i-deb/download", nil, "Range", "bytes=10-")
	if rec.Code != http.StatusPartialContent || rec.Body.String() != "abcdefghij" {
		t.Fatalf("range: %d %q", rec.Code, rec.Body.String())
	}
	if got := rec.Header().Get("Content-Disposition"); got != `attachment; filename=debian-12.qcow2` {
		t.Errorf("Content-Disposition %q", got)
	}
	etag := rec.Header().Get("ETag")
	rec = do(t, h, alice, http.MethodGet, "/images/i-deb/download", nil, "Range", "bytes=15-", "If-Range", etag)
	if rec.Code != http.StatusPartialContent || rec.Body.String() != "fghij" {
		t.Errorf("If-Range with the ETag: %d %q", rec.Code, rec.Body.String())
	}
	rec = do(t, h, alice, http.MethodGet, "/images/i-deb/download", nil, "Range", "bytes=15-", "If-Range", `"other"`)
	if rec.Code != http.StatusOK || rec.Body.Len() != 20 {
		t.Errorf("If-Range with another file's ETag: %d (want the whole file)", rec.Code)
	}
}

func TestLongActionsShowTheOperationsProgress(t *testing.T) {
	svc := newFake(t)
	h := newHandlers(svc)
	rec := post(t, h, alice, "/images/i-web/convert", "format=raw&name=web-raw")
	loc := rec.Header().Get("Location")
	if rec.Code != http.StatusSeeOther || loc != "/images/i-web?op=op-1" || !svc.called("ConvertImage raw") {
		t.Fatalf("convert: %d %q", rec.Code, loc)
	}
	page := do(t, h, alice, http.MethodGet, loc, nil).Body.String()
	for _, s := range []string{`id="op-op-1"`, `data-op-state="running"`, `hx-get="/operations/op-1"`, `hx-trigger="every 1s"`, `<progress class="op-bar" max="100" value="40"`} {
		if !strings.Contains(page, s) {
			t.Errorf("page lacks %s", s)
		}
	}
	for _, c := range []struct{ target, want string }{
		{"/images/i-web/flatten", "/images/i-web?op=op-2"},
		{"/images/i-web/backup", "/images/i-web?op=op-3"},
	} {
		if rec := post(t, h, alice, c.target, ""); rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != c.want {
			t.Errorf("%s: %d %q, want %s", c.target, rec.Code, rec.Header().Get("Location"), c.want)
		}
	}
	// The table reloads when an operation ends, and polls while an image is busy.
	table := do(t, h, root, http.MethodGet, "/images/table", nil, "HX-Request", "true", "HX-Target", "images").Body.String()
	if !strings.Contains(table, `hx-trigger="images-changed from:body, operation-ended from:body, every 3s"`) {
		t.Errorf("table trigger:\n%s", table[:300])
	}
	// Another user's operation is not shown.
	if page := do(t, h, bob, http.MethodGet, "/images?op=op-1", nil).Body.String(); strings.Contains(page, `id="op-op-1"`) {
		t.Error("bob sees alice's operation")
	}
}

func TestFormsReachTheEngineWithWhatWasTyped(t *testing.T) {
	svc := newFake(t)
	h := newHandlers(svc)
	if rec := post(t, h, alice, "/images/i-web/resize", "size=1.5&unit=GiB"); rec.Code != http.StatusSeeOther || !svc.called(fmt.Sprintf("ResizeImage %d", 1536<<20)) {
		t.Errorf("resize: %d %v", rec.Code, svc.calls)
	}
	if rec := post(t, h, alice, "/images/i-web/resize", "size=lots&unit=GiB"); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "Type the new size") {
		t.Errorf("resize with a bad size: %d", rec.Code)
	}
	if rec := post(t, h, alice, "/images/i-web/schedule", "backup_at=02%3A30&backup_keep=3"); rec.Code != http.StatusSeeOther {
		t.Errorf("schedule: %d", rec.Code)
	}
	if im, _ := svc.Image(t.Context(), alice, "i-web"); im.BackupAt != "02:30" || im.BackupKeep != 3 {
		t.Errorf("schedule not saved: %q %d", im.BackupAt, im.BackupKeep)
	}
	if rec := post(t, h, alice, "/images/i-deb/master", "master=false"); rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/images/i-deb?done=unmaster" {
		t.Errorf("unmark master: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	if rec := post(t, h, alice, "/images/i-deb/clone", "name=c&mode=copy&target=pool%3A1"); rec.Code != http.StatusSeeOther || !strings.Contains(rec.Header().Get("Location"), "?op=op-") {
		t.Errorf("clone copy: %d %q", rec.Code, rec.Header().Get("Location"))
	}
}

func TestParseSize(t *testing.T) {
	for _, c := range []struct {
		n, unit string
		want    int64
	}{{"20", "GiB", 20 << 30}, {"1.5", "TiB", 1536 << 30}, {"100", "MiB", 100 << 20}, {"0.0001", "MiB", 1 << 20}} {
		if got, err := ParseSize(c.n, c.unit); err != nil || got != c.want {
			t.Errorf("ParseSize(%s %s) = %d, %v; want %d", c.n, c.unit, got, err, c.want)
		}
	}
	for _, c := range [][2]string{{"0", "GiB"}, {"-1", "GiB"}, {"x", "GiB"}, {"1", "PB"}, {"65", "TiB"}, {"NaN", "GiB"}, {"Inf", "GiB"}} {
		if _, err := ParseSize(c[0], c[1]); err == nil {
			t.Errorf("ParseSize(%s %s) took it", c[0], c[1])
		}
	}
}
