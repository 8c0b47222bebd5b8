package pools

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/ui/layout"
)

var (
	alice  = engine.User{ID: "u-alice", Name: "alice", Role: engine.RoleUser}
	root   = engine.User{ID: "u-root", Name: "root", Role: engine.RoleAdmin}
	reader = engine.User{ID: "u-reader", Name: "reader", Role: engine.RoleReadonly}
)

// fakeService is the engine as the Pools area sees it. Admin-only calls refuse
// others as the engine does; every call is recorded.
type fakeService struct {
	mu        sync.Mutex
	pools     []engine.Pool
	snapshots []engine.PoolSnapshot
	images    []engine.Image
	ops       map[string]engine.Operation
	refuse    error
	calls     []string
}

func newFake() *fakeService {
	at := time.Date(2026, 3, 1, 3, 0, 0, 0, time.UTC)
	return &fakeService{
		pools: []engine.Pool{
			{ID: 0, Name: "pool0", Driver: "btrfs", Path: "/var/lib/cairn/pools/0", State: engine.PoolReady, Shared: true, Snapshots: true,
				SnapshotAt: "03:00", SnapshotKeep: 7, TotalBytes: 100 << 30, UsedBytes: 40 << 30, FreeBytes: 60 << 30,
				ImageBytesByOwner: map[string]uint64{alice.ID: 3 << 30, root.ID: 10 << 30}},
			{ID: 1, Name: "tank", Driver: "zfs", Path: "/var/lib/cairn/pools/1", Device: "/dev/sdc", State: engine.PoolUnavailable,
				Problem: "zfs: not supported on this host: no zfs kernel module (/sys/module/zfs)", Snapshots: true},
			{ID: 2, Name: "plain", Driver: "dir", Path: "/srv/images", State: engine.PoolReady, TotalBytes: 10 << 30, FreeBytes: 9 << 30},
		},
		snapshots: []engine.PoolSnapshot{
			{Pool: 0, Name: "daily-20260301", Daily: true, CreatedAt: at, Images: []engine.SnapshotImage{
				{ID: "i-gone", Name: "old-web", Owner: alice.ID, Format: "qcow2", VirtualSize: 10 << 30, Deleted: true},
				{ID: "i-web", Name: "web-1", Owner: alice.ID, Format: "raw", VirtualSize: 1 << 30},
			}},
			{Pool: 0, Name: "manual-20260302-101500", CreatedAt: at.Add(31 * time.Hour), Images: []engine.SnapshotImage{}},
		},
		images: []engine.Image{
			{ID: "i-web", Name: "web-1", Owner: alice.ID, Pool: 0, State: engine.ImageReady},
			{ID: "i-db", Name: "db-1", Owner: root.ID, Pool: 0, State: engine.ImageReady},
		},
		ops: map[string]engine.Operation{},
	}
}

func (f *fakeService) call(format string, a ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, a...))
}

func (f *fakeService) called(prefix string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.calls {
		if strings.HasPrefix(c, prefix) {
			return true
		}
	}
	return false
}

func admin(u engine.User, op string) error {
	if u.Role != engine.RoleAdmin {
		return fmt.Errorf("%s: %w: only admins can do this", op, engine.ErrForbidden)
	}
	return nil
}

func (f *fakeService) pool(id string) (engine.Pool, error) {
	for _, p := range f.pools {
		if strconv.Itoa(p.ID) == id {
			return p, nil
		}
	}
	return engine.Pool{}, fmt.Errorf("pool %s: %w", id, engine.ErrNotFound)
}

func (f *fakeService) Pools(_ context.Context, u engine.User) ([]engine.Pool, error) {
	out := make([]engine.Pool, len(f.pools))
	for i, p := range f.pools {
		// Like the engine, a user sees only their own images' bytes.
		by := map[string]uint64{}
		for owner, b := range p.ImageBytesByOwner {
			if u.Role == engine.RoleAdmin || owner == u.ID {
				by[owner] = b
			}
		}
		p.ImageBytesByOwner = by
		out[i] = p
	}
	return out, nil
}

func (f *fakeService) Pool(ctx context.Context, u engine.User, id string) (engine.Pool, error) {
	return f.pool(id)
}

func (f *fakeService) CreatePool(_ context.Context, u engine.User, req engine.PoolRequest) (engine.Pool, error) {
	f.call("CreatePool %s %s %s %s", req.Name, req.Driver, req.Path, req.Device)
	if err := admin(u, "create pool"); err != nil {
		return engine.Pool{}, err
	}
	if f.refuse != nil {
		return engine.Pool{}, f.refuse
	}
	p := engine.Pool{ID: len(f.pools), Name: req.Name, Driver: req.Driver, Path: req.Path, Device: req.Device, State: engine.PoolReady}
	f.pools = append(f.pools, p)
	return p, nil
}

func (f *fakeService) UpdatePool(_ context.Context, u engine.User, id string, upd engine.PoolUpdate) (engine.Pool, error) {
	f.call("UpdatePool %s %s %d", id, *upd.SnapshotAt, *upd.SnapshotKeep)
	if err := admin(u, "update pool"); err != nil {
		return engine.Pool{}, err
	}
	return f.pool(id)
}

func (f *fakeService) DeletePool(_ context.Context, u engine.User, id string) error {
	f.call("DeletePool %s", id)
	if err := admin(u, "delete pool"); err != nil {
		return err
	}
	return f.refuse
}

func (f *fakeService) PoolSnapshots(_ context.Context, u engine.User, id string) ([]engine.PoolSnapshot, error) {
	var out []engine.PoolSnapshot
	for _, s := range f.snapshots {
		if strconv.Itoa(s.Pool) == id {
			out = append(out, s)
		}
	}
	return out, nil
}

func (f *fakeService) SnapshotPool(_ context.Context, u engine.User, id string) (engine.PoolSnapshot, error) {
	f.call("SnapshotPool %s", id)
	if err := admin(u, "snapshot pool"); err != nil {
		return engine.PoolSnapshot{}, err
	}
	return engine.PoolSnapshot{Name: "manual-x"}, nil
}

func (f *fakeService) DeletePoolSnapshot(_ context.Context, u engine.User, id, name string) error {
	f.call("DeletePoolSnapshot %s %s", id, name)
	return admin(u, "delete snapshot")
}

func (f *fakeService) RestoreFromSnapshot(_ context.Context, u engine.User, id, name string, req engine.RestoreRequest) (engine.Operation, error) {
	f.call("RestoreFromSnapshot %s %s %s %q", id, name, req.Image, req.Name)
	if u.Role == engine.RoleReadonly {
		return engine.Operation{}, fmt.Errorf("restore: %w: readonly users can only look; ask an admin", engine.ErrForbidden)
	}
	if f.refuse != nil {
		return engine.Operation{}, f.refuse
	}
	op := engine.Operation{ID: "op-1", Owner: u.ID, Kind: "restore", Target: req.Image, State: engine.OpRunning, Progress: 0.25, Message: "copying"}
	f.ops[op.ID] = op
	return op, nil
}

func (f *fakeService) RollbackPool(_ context.Context, u engine.User, id, name, confirm string) error {
	f.call("RollbackPool %s %s %s", id, name, confirm)
	return admin(u, "roll back pool")
}

func (f *fakeService) UsageOf(_ context.Context, u engine.User, who string) (engine.Usage, error) {
	if who != "me" {
		return engine.Usage{}, engine.ErrForbidden
	}
	return engine.Usage{User: u.ID, Images: 4, Servers: 2, Connections: 3, ExternalAddresses: 1, ExternalQuota: 4, Bytes: 3 << 30, BytesByPool: map[string]int64{"0": 2 << 30, "2": 1 << 30}}, nil
}

func (f *fakeService) Images(_ context.Context, u engine.User) ([]engine.Image, error) {
	var out []engine.Image
	for _, im := range f.images {
		if u.Role == engine.RoleAdmin || im.Owner == u.ID {
			out = append(out, im)
		}
	}
	return out, nil
}

func (f *fakeService) Operation(_ context.Context, u engine.User, id string) (engine.Operation, error) {
	op, ok := f.ops[id]
	if !ok || (u.Role != engine.RoleAdmin && op.Owner != u.ID) {
		return engine.Operation{}, engine.ErrNotFound
	}
	return op, nil
}

func (f *fakeService) Users(_ context.Context, u engine.User) ([]engine.User, error) {
	if err := admin(u, "list users"); err != nil {
		return nil, err
	}
	return []engine.User{alice, root, reader}, nil
}

func do(t *testing.T, svc Service, u engine.User, method, target, form string) *httptest.ResponseRecorder {
	t.Helper()
	h := New(svc, slog.New(slog.NewTextHandler(io.Discard, nil)))
	mux := http.NewServeMux()
	for _, rt := range h.Routes() {
		mux.HandleFunc(rt.Pattern, rt.Handler)
	}
	r := httptest.NewRequest(method, target, strings.NewReader(form))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r = r.WithContext(layout.WithViewer(r.Context(), layout.Viewer{User: u, Session: engine.Session{CSRF: "tok"}}))
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, r)
	return rec
}

func TestPoolsTableShowsStateProblemsUsageAndOwners(t *testing.T) {
	svc := newFake()
	body := do(t, svc, root, http.MethodGet, "/pools", "").Body.String()
	rows := regexp.MustCompile(`<tr data-pool-id="(\d+)" data-state="(\w+)"`).FindAllStringSubmatch(body, -1)
	if fmt.Sprint(rows) != "[[<tr data-pool-id=\"0\" data-state=\"ready\" 0 ready] [<tr data-pool-id=\"1\" data-state=\"unavailable\" 1 unavailable] [<tr data-pool-id=\"2\" data-state=\"ready\" 2 ready]]" {
		t.Errorf("rows: %v", rows)
	}
	for _, s := range []string{
		"zfs: not supported on this host: no zfs kernel module", "/dev/sdc at /var/lib/cairn/pools/1",
		"40 GiB used", "60 GiB free of 100 GiB", `value="40"`, "Daily at 03:00, keeping 7", "Not supported by dir pools",
		`<li data-owner="root"><span>root</span><span>10 GiB</span></li><li data-owner="alice"><span>alice</span><span>3 GiB</span>`,
		`data-usage="images">4<`, `data-usage="servers">2<`, `data-usage="external">1 of 4<`, ">3 connections</a>", `data-usage="bytes">3 GiB<`, "<span>pool0</span><span>2 GiB</span>", "<span>plain</span><span>1 GiB</span>",
		`id="create-pool"`,
	} {
		if !strings.Contains(body, s) {
			t.Errorf("admin's pools page lacks %q", s)
		}
	}
	// A user sees their own bytes only, under their name, and no create form.
	body = do(t, svc, alice, http.MethodGet, "/pools", "").Body.String()
	if strings.Contains(body, ">root<") || !strings.Contains(body, `data-owner="alice"`) || strings.Contains(body, "create-pool") {
		t.Errorf("alice's pools page shows root's bytes or the create form")
	}
}

func TestCreateOnADeviceAsksToTypeItAgain(t *testing.T) {
	svc := newFake()
	rec := do(t, svc, root, http.MethodPost, "/pools", "name=fast&driver=btrfs&on=device&device=%2Fdev%2Fsdz&shared=yes&snapshot_keep=7")
	body := rec.Body.String()
	if rec.Code != http.StatusBadRequest || !strings.Contains(body, `id="confirm-device-prompt"`) ||
		!strings.Contains(body, "Formatting <code>/dev/sdz</code> erases everything on it") {
		t.Fatalf("no confirmation prompt: %d\n%s", rec.Code, body)
	}
	if !strings.Contains(body, `value="fast"`) || !strings.Contains(body, `id="on-device" name="on" value="device" checked`) {
		t.Error("the form lost what was typed")
	}
	if svc.called("CreatePool") {
		t.Fatal("the engine was asked to format a device without the confirmation")
	}
	rec = do(t, svc, root, http.MethodPost, "/pools", "name=fast&driver=btrfs&on=device&device=%2Fdev%2Fsdz&confirm_device=%2Fdev%2Fsdy")
	if rec.Code != http.StatusBadRequest || svc.called("CreatePool") {
		t.Fatalf("a different confirmation went through: %d", rec.Code)
	}
	// The engine's own refusal of the device is shown as it is.
	svc.refuse = fmt.Errorf("create pool \"fast\": %w: check device /dev/sdz: sdz1 is mounted at /mnt; unmount it first", engine.ErrInUse)
	rec = do(t, svc, root, http.MethodPost, "/pools", "name=fast&driver=btrfs&on=device&device=%2Fdev%2Fsdz&confirm_device=%2Fdev%2Fsdz")
	if rec.Code != http.StatusConflict || !strings.Contains(rec.Body.String(), "sdz1 is mounted at /mnt; unmount it first") {
		t.Errorf("engine refusal: %d", rec.Code)
	}
	svc.refuse = nil
	rec = do(t, svc, root, http.MethodPost, "/pools", "name=fast&driver=btrfs&on=device&device=%2Fdev%2Fsdz&confirm_device=%2Fdev%2Fsdz")
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/pools/3?done=created" || !svc.called("CreatePool fast btrfs  /dev/sdz") {
		t.Errorf("confirmed create: %d %q %v", rec.Code, rec.Header().Get("Location"), svc.calls)
	}
	// A directory needs no confirmation.
	if rec := do(t, svc, root, http.MethodPost, "/pools", "name=slow&driver=dir&on=path&path=%2Fsrv%2Fslow"); rec.Code != http.StatusSeeOther || !svc.called("CreatePool slow dir /srv/slow ") {
		t.Errorf("dir pool: %d %v", rec.Code, svc.calls)
	}
}

func TestRollbackWithoutTypingThePoolsNameIsRefused(t *testing.T) {
	svc := newFake()
	for _, confirm := range []string{"", "pool", "POOL0"} {
		rec := do(t, svc, root, http.MethodPost, "/pools/0/snapshots/daily-20260301/rollback", "confirm="+confirm)
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "type the pool&#39;s name, pool0, into the confirmation box") {
			t.Errorf("confirm %q: %d", confirm, rec.Code)
		}
	}
	if svc.called("RollbackPool") {
		t.Fatal("the engine rolled back without the pool's name")
	}
	rec := do(t, svc, root, http.MethodPost, "/pools/0/snapshots/daily-20260301/rollback", "confirm=pool0")
	if rec.Code != http.StatusSeeOther || !svc.called("RollbackPool 0 daily-20260301 pool0") {
		t.Errorf("rollback with the name: %d %v", rec.Code, svc.calls)
	}
}

// Each snapshot's restore form offers the images that snapshot holds, deleted ones
// said to be so, and says so when it holds none.
func TestRestoreFormListsTheSnapshotsImages(t *testing.T) {
	svc := newFake()
	page := do(t, svc, alice, http.MethodGet, "/pools/0", "").Body.String()
	for _, want := range []string{
		`<option value="i-gone" data-deleted>old-web (i-gone), qcow2 10 GiB — deleted since: restore as a new image</option>`,
		`<option value="i-web">web-1 (i-web), raw 1 GiB</option>`,
		`data-empty="snapshot-images"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the pool page lacks %s", want)
		}
	}
	if strings.Contains(page, `name="image_id"`) {
		t.Error("the restore form still asks for a typed image ID")
	}
	// Newest first: the manual snapshot (holding none) and then the daily one.
	if i, j := strings.Index(page, `data-empty="snapshot-images"`), strings.Index(page, `value="i-gone"`); i < 0 || j < 0 || i > j {
		t.Error("the images are not under their own snapshot")
	}
}

func TestRestoreFromSnapshotStartsAnOperation(t *testing.T) {
	svc := newFake()
	if rec := do(t, svc, alice, http.MethodPost, "/pools/0/snapshots/daily-20260301/restore", "image=i-web&mode=new&name="); rec.Code != http.StatusBadRequest || svc.called("Restore") {
		t.Errorf("restore as new without a name: %d", rec.Code)
	}
	rec := do(t, svc, alice, http.MethodPost, "/pools/0/snapshots/daily-20260301/restore", "image=i-gone&mode=new&name=web-back")
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/pools/0?op=op-1" || !svc.called(`RestoreFromSnapshot 0 daily-20260301 i-gone "web-back"`) {
		t.Fatalf("restore: %d %q %v", rec.Code, rec.Header().Get("Location"), svc.calls)
	}
	page := do(t, svc, alice, http.MethodGet, "/pools/0?op=op-1", "").Body.String()
	if !strings.Contains(page, `<progress class="op-bar" max="100" value="25"`) || !strings.Contains(page, `hx-get="/operations/op-1"`) {
		t.Errorf("no progress after the restore:\n%s", page)
	}
	svc.refuse = fmt.Errorf("restore: %w: server web (s-1) uses it and is running; shut it off first", engine.ErrInUse)
	rec = do(t, svc, alice, http.MethodPost, "/pools/0/snapshots/daily-20260301/restore", "image=i-web&mode=inplace")
	if rec.Code != http.StatusConflict || !strings.Contains(rec.Body.String(), "server web (s-1) uses it and is running; shut it off first") {
		t.Errorf("in-place restore of a running server's image: %d", rec.Code)
	}
}

func TestPoolPageActionsFollowTheRole(t *testing.T) {
	svc := newFake()
	actions := func(u engine.User) []string {
		body := do(t, svc, u, http.MethodGet, "/pools/0", "").Body.String()
		var out []string
		for _, m := range regexp.MustCompile(`data-action="([\w-]+)"`).FindAllStringSubmatch(body, -1) {
			out = append(out, m[1])
		}
		return out
	}
	if got := fmt.Sprint(actions(reader)); got != "[]" {
		t.Errorf("read-only viewer sees actions %s", got)
	}
	if got := fmt.Sprint(actions(alice)); got != "[restore restore]" {
		t.Errorf("user sees actions %s, want restore on each snapshot", got)
	}
	if got := fmt.Sprint(actions(root)); got != "[schedule snapshot restore rollback delete-snapshot restore rollback delete-snapshot]" {
		t.Errorf("admin sees actions %s", got)
	}
	// Pool 0 cannot be removed; others can, by admins, after ticking the box.
	if body := do(t, svc, root, http.MethodGet, "/pools/2", "").Body.String(); !strings.Contains(body, `data-action="delete"`) || !strings.Contains(body, "dir pools have no snapshots") {
		t.Error("pool 2's page has no remove form or claims snapshots")
	}
	if rec := do(t, svc, root, http.MethodPost, "/pools/2/delete", ""); rec.Code != http.StatusBadRequest || svc.called("DeletePool") {
		t.Errorf("remove without ticking: %d", rec.Code)
	}
	if rec := do(t, svc, root, http.MethodPost, "/pools/2/delete", "confirm=yes"); rec.Code != http.StatusSeeOther {
		t.Errorf("remove: %d", rec.Code)
	}
	// A user who posts an admin's form anyway gets the engine's refusal.
	if rec := do(t, svc, alice, http.MethodPost, "/pools/0/snapshots", ""); rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "only admins can do this") {
		t.Errorf("user snapshots a pool: %d", rec.Code)
	}
	if rec := do(t, svc, alice, http.MethodGet, "/pools/9", ""); rec.Code != http.StatusNotFound {
		t.Errorf("unknown pool: %d", rec.Code)
	}
}
