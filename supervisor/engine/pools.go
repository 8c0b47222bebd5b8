package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/cairn-os/cairn/supervisor/pool"
	"github.com/cairn-os/cairn/supervisor/store"
)

const bucketPools = "pools"

// DefaultPoolsDir is where pools are on every node.
const DefaultPoolsDir = "/var/lib/cairn/pools"

// poolKey is the store key of pool id: zero-padded so that keys sort by number.
func poolKey(id int) string { return fmt.Sprintf("%06d", id) }

var timeOfDay = regexp.MustCompile(`^([01][0-9]|2[0-3]):[0-5][0-9]$`)

// openPools records pool 0 on first start and opens every recorded pool. A pool that
// cannot be opened is kept as unavailable, with the reason, so nothing is forgotten.
func (e *Engine) openPools(ctx context.Context) error {
	dir := e.cfg.PoolsDir
	var p0 Pool
	err := e.store.Update(func(tx *store.Tx) error {
		if err := tx.Get(bucketPools, poolKey(0), &p0); err == nil {
			return nil
		} else if !isNotFound(err) {
			return err
		}
		p0 = Pool{ID: 0, Name: "pool0", Driver: e.cfg.Pool0Driver, Path: filepath.Join(dir, "0"),
			Shared: true, SnapshotAt: "", SnapshotKeep: 7, CreatedAt: e.now()}
		return tx.Put(bucketPools, poolKey(0), p0)
	})
	if err != nil {
		return fmt.Errorf("record pool 0: %w", err)
	}
	// Pool 0 is made by the data disk (the appliance) or is a folder (--dev).
	if err := os.MkdirAll(p0.Path, 0o755); err != nil {
		return fmt.Errorf("pool 0: %w", err)
	}
	pools, err := store.List[Pool](e.store, bucketPools)
	if err != nil {
		return fmt.Errorf("list pools: %w", err)
	}
	for _, p := range pools {
		e.openPool(ctx, p)
	}
	return nil
}

// openPool opens one recorded pool and records whether that worked.
func (e *Engine) openPool(ctx context.Context, p Pool) {
	state, problem := PoolReady, ""
	drv, err := pool.Lookup(p.Driver, e.cfg.Runner)
	var opened pool.Pool
	if err == nil {
		err = drv.Supported(ctx)
	}
	if err == nil {
		opened, err = drv.Open(ctx, p.spec())
	}
	if err != nil {
		state, problem = PoolUnavailable, err.Error()
		e.log.Warn("pool unavailable", "pool", p.ID, "driver", p.Driver, "err", err)
	} else {
		e.poolsMu.Lock()
		e.pools[p.ID] = opened
		e.poolsMu.Unlock()
		if err := os.MkdirAll(filepath.Join(p.Path, "images"), 0o755); err != nil {
			state, problem = PoolUnavailable, err.Error()
		}
	}
	if p.State != state || p.Problem != problem {
		p.State, p.Problem = state, problem
		if drv != nil {
			p.Snapshots = drv.Info().Snapshots
		}
		if err := e.store.Put(bucketPools, poolKey(p.ID), p); err != nil {
			e.log.Warn("record pool state failed", "pool", p.ID, "err", err)
		}
	}
}

func (p Pool) spec() pool.Spec {
	return pool.Spec{Driver: p.Driver, Path: p.Path, Device: p.Device, UUID: p.UUID}
}

// openedPool returns the open pool id, or an error that says why it cannot be used.
func (e *Engine) openedPool(id int) (pool.Pool, error) {
	e.poolsMu.Lock()
	defer e.poolsMu.Unlock()
	p, ok := e.pools[id]
	if !ok {
		return nil, fmt.Errorf("pool %d: %w: it does not exist or is unavailable (see GET /api/v1/pools)", id, ErrNotFound)
	}
	return p, nil
}

func (e *Engine) poolRecord(id int) (Pool, error) {
	var p Pool
	if err := e.store.Get(bucketPools, poolKey(id), &p); err != nil {
		return Pool{}, fmt.Errorf("pool %d: %w", id, notFound(err))
	}
	return p, nil
}

// Pools lists the storage pools with their usage and what each user's images take.
func (e *Engine) Pools(ctx context.Context, u User) ([]Pool, error) {
	if err := requireUser(u, "list pools"); err != nil {
		return nil, err
	}
	pools, err := store.List[Pool](e.store, bucketPools)
	if err != nil {
		return nil, fmt.Errorf("list pools: %w", err)
	}
	images, err := store.List[Image](e.store, bucketImages)
	if err != nil {
		return nil, fmt.Errorf("list pools: %w", err)
	}
	for i := range pools {
		e.fillUsage(ctx, u, &pools[i], images)
	}
	return pools, nil
}

// Pool shows one pool.
func (e *Engine) Pool(ctx context.Context, u User, idText string) (Pool, error) {
	if err := requireUser(u, "show pool"); err != nil {
		return Pool{}, err
	}
	id, err := parsePoolID(idText)
	if err != nil {
		return Pool{}, err
	}
	p, err := e.poolRecord(id)
	if err != nil {
		return Pool{}, err
	}
	images, err := store.List[Image](e.store, bucketImages)
	if err != nil {
		return Pool{}, err
	}
	e.fillUsage(ctx, u, &p, images)
	return p, nil
}

func parsePoolID(s string) (int, error) {
	id, err := strconv.Atoi(s)
	if err != nil || id < 0 {
		return 0, fmt.Errorf("pool %q: %w: pools are numbered 0, 1, 2…", s, ErrInvalid)
	}
	return id, nil
}

func (e *Engine) fillUsage(ctx context.Context, u User, p *Pool, images []Image) {
	if opened, err := e.openedPool(p.ID); err == nil {
		if us, err := opened.Usage(ctx); err == nil {
			p.TotalBytes, p.UsedBytes, p.FreeBytes = us.TotalBytes, us.UsedBytes, us.FreeBytes
		}
	}
	p.ImageBytesByOwner = map[string]uint64{}
	for _, im := range images {
		if im.Node != "" || im.Pool != p.ID || !canSee(u, im.Owner) {
			continue
		}
		p.ImageBytesByOwner[im.Owner] += uint64(fileBytes(im.Path))
	}
}

// fileBytes is what a file takes on disk (sparse files count what is allocated).
func fileBytes(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}

// CreatePool adds a storage pool: on an existing directory, or on a block device that
// is formatted for it (the request must confirm by repeating the device's path; a
// mounted or in-use device is refused). Only admins may.
func (e *Engine) CreatePool(ctx context.Context, u User, req PoolRequest) (Pool, error) {
	op := fmt.Sprintf("create pool %q", req.Name)
	if err := requireAdmin(u, op); err != nil {
		return Pool{}, err
	}
	if !namePattern.MatchString(req.Name) {
		return Pool{}, fmt.Errorf("%s: %w: %s", op, ErrInvalid, nameRule)
	}
	drv, err := pool.Lookup(req.Driver, e.cfg.Runner)
	if err != nil {
		return Pool{}, fmt.Errorf("%s: %w: %v", op, ErrInvalid, err)
	}
	if err := drv.Supported(ctx); err != nil {
		return Pool{}, fmt.Errorf("%s: %w: driver %s: %v", op, ErrInvalid, req.Driver, err)
	}
	if (req.Path == "") == (req.Device == "") {
		return Pool{}, fmt.Errorf("%s: %w: give either path (an existing directory) or device (a block device to format)", op, ErrInvalid)
	}
	if err := checkSchedule(req.SnapshotAt, req.SnapshotKeep); err != nil {
		return Pool{}, fmt.Errorf("%s: %w", op, err)
	}
	if req.SnapshotAt != "" && !drv.Info().Snapshots {
		return Pool{}, fmt.Errorf("%s: %w: %s pools have no snapshots; leave snapshot_at empty or use btrfs or zfs", op, ErrInvalid, req.Driver)
	}
	e.poolsCreate.Lock()
	defer e.poolsCreate.Unlock()
	pools, err := store.List[Pool](e.store, bucketPools)
	if err != nil {
		return Pool{}, err
	}
	id := 0
	for _, p := range pools {
		if p.Name == req.Name {
			return Pool{}, fmt.Errorf("%s: %w: pool %d has that name", op, ErrExists, p.ID)
		}
		id = max(id, p.ID+1)
	}
	p := Pool{ID: id, Name: req.Name, Driver: req.Driver, Shared: true, SnapshotAt: req.SnapshotAt,
		SnapshotKeep: req.SnapshotKeep, CreatedAt: e.now(), Snapshots: drv.Info().Snapshots}
	if p.SnapshotKeep == 0 {
		p.SnapshotKeep = 7
	}
	if req.Shared != nil {
		p.Shared = *req.Shared
	}
	if req.Device != "" {
		if req.ConfirmFormat != req.Device {
			return Pool{}, fmt.Errorf("%s: %w: formatting %s erases everything on it; to go ahead, send confirm_format equal to %q", op, ErrInvalid, req.Device, req.Device)
		}
		if err := pool.CheckDevice(ctx, req.Device); err != nil {
			return Pool{}, fmt.Errorf("%s: %w", op, poolErr(err))
		}
		for _, q := range pools {
			if q.Device == req.Device {
				return Pool{}, fmt.Errorf("%s: %w: pool %d is on %s", op, ErrInUse, q.ID, req.Device)
			}
		}
		p.Device = req.Device
		p.Path = filepath.Join(e.cfg.PoolsDir, strconv.Itoa(id))
	} else {
		path, err := cleanAbs(req.Path)
		if err != nil {
			return Pool{}, fmt.Errorf("%s: %w", op, err)
		}
		fi, err := os.Stat(path)
		if err != nil || !fi.IsDir() {
			return Pool{}, fmt.Errorf("%s: %w: %s is not an existing directory; make it first or give a device", op, ErrInvalid, path)
		}
		for _, q := range pools {
			if within(path, q.Path) || within(q.Path, path) {
				return Pool{}, fmt.Errorf("%s: %w: %s overlaps pool %d at %s", op, ErrInUse, path, q.ID, q.Path)
			}
		}
		p.Path = path
	}
	spec, err := drv.Create(ctx, p.spec())
	if err != nil {
		return Pool{}, fmt.Errorf("%s: %w", op, poolErr(err))
	}
	p.UUID = spec.UUID
	p.State = PoolReady
	if err := e.store.Put(bucketPools, poolKey(id), p); err != nil {
		drv.Close(ctx, spec)
		return Pool{}, fmt.Errorf("%s: %w", op, err)
	}
	e.openPool(ctx, p)
	e.log.Info("pool created", "pool", id, "driver", p.Driver, "path", p.Path, "device", p.Device, "by", u.Name)
	e.poolsChanged()
	return e.poolRecord(id)
}

// poolErr maps the pool package's sentinels onto the engine's.
func poolErr(err error) error {
	switch {
	case errors.Is(err, pool.ErrInUse):
		return fmt.Errorf("%w: %v", ErrInUse, err)
	case errors.Is(err, pool.ErrInvalid), errors.Is(err, pool.ErrNotSupported):
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	case errors.Is(err, pool.ErrNotFound):
		return fmt.Errorf("%w: %v", ErrNotFound, err)
	case errors.Is(err, pool.ErrExists):
		return fmt.Errorf("%w: %v", ErrExists, err)
	}
	return err
}

// cleanAbs checks that path is absolute and free of "..", and cleans it.
func cleanAbs(path string) (string, error) {
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("%w: path %q must be absolute", ErrInvalid, path)
	}
	for _, part := range strings.Split(path, "/") {
		if part == ".." {
			return "", fmt.Errorf("%w: path %q must not contain \"..\"", ErrInvalid, path)
		}
	}
	return filepath.Clean(path), nil
}

// within reports whether path is dir or below it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

func checkSchedule(at string, keep int) error {
	if at != "" && !timeOfDay.MatchString(at) {
		return fmt.Errorf("%w: time %q must be HH:MM (24-hour), like 03:00", ErrInvalid, at)
	}
	if keep < 0 || keep > 1000 {
		return fmt.Errorf("%w: keep must be between 1 and 1000", ErrInvalid)
	}
	return nil
}

// UpdatePool changes a pool's daily snapshot schedule. Only admins may.
func (e *Engine) UpdatePool(ctx context.Context, u User, idText string, upd PoolUpdate) (Pool, error) {
	op := fmt.Sprintf("update pool %s", idText)
	if err := requireAdmin(u, op); err != nil {
		return Pool{}, err
	}
	id, err := parsePoolID(idText)
	if err != nil {
		return Pool{}, err
	}
	var p Pool
	err = e.store.Update(func(tx *store.Tx) error {
		if err := tx.Get(bucketPools, poolKey(id), &p); err != nil {
			return fmt.Errorf("%s: %w", op, notFound(err))
		}
		if upd.SnapshotAt != nil {
			p.SnapshotAt = *upd.SnapshotAt
		}
		if upd.SnapshotKeep != nil {
			p.SnapshotKeep = *upd.SnapshotKeep
		}
		if err := checkSchedule(p.SnapshotAt, p.SnapshotKeep); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		if p.SnapshotAt != "" && !p.Snapshots {
			return fmt.Errorf("%s: %w: %s pools have no snapshots", op, ErrInvalid, p.Driver)
		}
		return tx.Put(bucketPools, poolKey(id), p)
	})
	return p, err
}

// DeletePool forgets an empty pool and unmounts what Cairn mounted; the data on its
// directory or device stays. Pool 0 cannot be deleted. Only admins may.
func (e *Engine) DeletePool(ctx context.Context, u User, idText string) error {
	op := fmt.Sprintf("delete pool %s", idText)
	if err := requireAdmin(u, op); err != nil {
		return err
	}
	id, err := parsePoolID(idText)
	if err != nil {
		return err
	}
	if id == 0 {
		return fmt.Errorf("%s: %w: pool 0 is the admin's data disk and always exists", op, ErrInvalid)
	}
	p, err := e.poolRecord(id)
	if err != nil {
		return err
	}
	images, err := store.List[Image](e.store, bucketImages)
	if err != nil {
		return err
	}
	n := 0
	for _, im := range images {
		if im.Node == "" && im.Pool == id {
			n++
		}
	}
	if n > 0 {
		return fmt.Errorf("%s: %w: it holds %d images; delete or move them first", op, ErrInUse, n)
	}
	if settings, _ := e.Settings(ctx, u); settings.BackupPool == id {
		return fmt.Errorf("%s: %w: it is the backup pool; choose another in the engine settings first", op, ErrInUse)
	}
	e.poolsMu.Lock()
	delete(e.pools, id)
	e.poolsMu.Unlock()
	if drv, err := pool.Lookup(p.Driver, e.cfg.Runner); err == nil && p.State == PoolReady {
		if err := drv.Close(ctx, p.spec()); err != nil {
			e.log.Warn("close pool failed", "pool", id, "err", err)
		}
	}
	if err := e.store.Delete(bucketPools, poolKey(id)); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	e.log.Info("pool deleted", "pool", id, "by", u.Name)
	e.poolsChanged()
	return nil
}

// SharedPools lists the pools that compute nodes mount over NFS.
func (e *Engine) SharedPools() []Pool {
	pools, _ := store.List[Pool](e.store, bucketPools)
	return slices.DeleteFunc(pools, func(p Pool) bool { return !p.Shared || p.State != PoolReady })
}

// poolsChanged tells the supervisor that the set of shared pools changed, so it can
// update the NFS exports.
func (e *Engine) poolsChanged() {
	if e.cfg.PoolsChanged != nil {
		e.cfg.PoolsChanged(e.SharedPools())
	}
}

// poolExports are the shared pools as compute nodes mount them.
func (e *Engine) poolExports() []PoolExport {
	var out []PoolExport
	for _, p := range e.SharedPools() {
		out = append(out, PoolExport{ID: p.ID, Path: p.Path})
	}
	return out
}
