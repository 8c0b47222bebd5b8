package engine

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cairn-os/cairn/supervisor/filecopy"
	"github.com/cairn-os/cairn/supervisor/pool"
	"github.com/cairn-os/cairn/supervisor/qimg"
	"github.com/cairn-os/cairn/supervisor/store"
)

const bucketBackups = "backups"

// manifestName is the file in a pool's root that records the pool's images when a
// snapshot is taken, so a rollback or a restore knows what the snapshot holds.
const manifestName = ".cairn-images.json"

// Backups lists the caller's image backups (admins: all), newest first; image
// filters by image ID when not empty.
func (e *Engine) Backups(ctx context.Context, u User, image string) ([]Backup, error) {
	if err := requireUser(u, "list backups"); err != nil {
		return nil, err
	}
	all, err := store.List[Backup](e.store, bucketBackups)
	if err != nil {
		return nil, fmt.Errorf("list backups: %w", err)
	}
	all = slices.DeleteFunc(all, func(b Backup) bool { return !canSee(u, b.Owner) || (image != "" && b.Image != image) })
	slices.SortFunc(all, func(a, b Backup) int { return b.CreatedAt.Compare(a.CreatedAt) })
	return all, nil
}

// Backup shows one backup.
func (e *Engine) Backup(ctx context.Context, u User, id string) (Backup, error) {
	if err := requireUser(u, "show backup"); err != nil {
		return Backup{}, err
	}
	var b Backup
	if err := e.store.Get(bucketBackups, id, &b); err != nil || !canSee(u, b.Owner) {
		return Backup{}, fmt.Errorf("backup %q: %w", id, ErrNotFound)
	}
	return b, nil
}

// BackupImage copies an image into the backup pool (reflink where the filesystem can,
// a copy of its data otherwise), as an operation. The image may be in use: a running server's
// disk is copied as it is at that moment (crash-consistent).
func (e *Engine) BackupImage(ctx context.Context, u User, id string) (Operation, error) {
	return e.backupImage(ctx, u, id, false)
}

func (e *Engine) backupImage(ctx context.Context, u User, id string, scheduled bool) (Operation, error) {
	op := imageOp("back up", id)
	if err := requireWriter(u, op); err != nil {
		return Operation{}, err
	}
	im, err := e.Image(ctx, u, id)
	if err != nil {
		return Operation{}, err
	}
	if im.Node != "" {
		return Operation{}, fmt.Errorf("%s: %w: it is on node %s's local storage, which is not backed up; back up its master", op, ErrInvalid, im.Node)
	}
	if im.State != ImageReady {
		return Operation{}, fmt.Errorf("%s: %w: the image is %s", op, ErrInUse, im.State)
	}
	st, _ := e.Settings(ctx, u)
	bp, err := e.poolFor(&st.BackupPool)
	if err != nil {
		return Operation{}, fmt.Errorf("%s: backup pool: %w", op, err)
	}
	b := Backup{
		ID: "b-" + randomHex(6), Image: im.ID, Name: im.Name, Owner: im.Owner, Pool: bp.ID,
		Format: im.Format, Backing: im.Backing, Scheduled: scheduled, CreatedAt: e.now(),
	}
	b.Path = filepath.Join(bp.Path, "backups", im.ID, b.ID+"."+qimg.Format(im.Format).Ext())
	return e.startOp(u.ID, "backup", im.ID, func(ctx context.Context, p progress) (string, error) {
		if err := os.MkdirAll(filepath.Dir(b.Path), 0o750); err != nil {
			return "", err
		}
		method, err := filecopy.Copy(ctx, im.Path, b.Path, p.Bytes("copying"))
		if err != nil {
			return "", err
		}
		b.Method, b.Size = string(method), fileBytes(b.Path)
		if err := e.store.Put(bucketBackups, b.ID, b); err != nil {
			os.Remove(b.Path)
			return "", err
		}
		e.log.Info("image backed up", "image", im.ID, "backup", b.ID, "method", method)
		return b.ID, nil
	}), nil
}

// DeleteBackup deletes a backup and its file.
func (e *Engine) DeleteBackup(ctx context.Context, u User, id string) error {
	op := fmt.Sprintf("delete backup %q", id)
	if err := requireWriter(u, op); err != nil {
		return err
	}
	b, err := e.Backup(ctx, u, id)
	if err != nil {
		return err
	}
	if err := requireOwnerOrAdmin(u, b.Owner, op); err != nil {
		return err
	}
	if err := e.store.Delete(bucketBackups, b.ID); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if err := os.Remove(b.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
		e.log.Warn("remove backup file failed", "backup", b.ID, "err", err)
	}
	os.Remove(filepath.Dir(b.Path))
	return nil
}

// RestoreBackup restores a backup: as a new image when req.Name is set, otherwise
// in place over the image it was taken of (or req.Image), whose servers must be off.
func (e *Engine) RestoreBackup(ctx context.Context, u User, id string, req RestoreRequest) (Operation, error) {
	op := fmt.Sprintf("restore backup %q", id)
	if err := requireWriter(u, op); err != nil {
		return Operation{}, err
	}
	b, err := e.Backup(ctx, u, id)
	if err != nil {
		return Operation{}, err
	}
	src := restoreSource{path: b.Path, format: qimg.Format(b.Format), backing: b.Backing, name: b.Name, image: b.Image}
	return e.restore(ctx, u, op, "restore", src, req)
}

// restoreSource is a file to restore an image from: a backup or a file in a snapshot.
type restoreSource struct {
	path    string
	format  qimg.Format
	backing string
	name    string
	image   string
	pool    *int
}

func (e *Engine) restore(ctx context.Context, u User, op, kind string, src restoreSource, req RestoreRequest) (Operation, error) {
	if req.Name != "" {
		pid := src.pool
		if pid == nil {
			if im, err := e.Image(ctx, u, src.image); err == nil {
				pid = &im.Pool
			}
		}
		p, err := e.poolFor(pid)
		if err != nil {
			return Operation{}, fmt.Errorf("%s: %w", op, err)
		}
		if src.backing != "" {
			if _, err := e.Image(ctx, u, src.backing); err != nil {
				return Operation{}, fmt.Errorf("%s: %w: its master %s is gone", op, ErrInvalid, src.backing)
			}
		}
		dst, err := e.newImageRecord(u, op, req.Name, p, src.format, "")
		if err != nil {
			return Operation{}, err
		}
		dst.Backing = src.backing
		if err := e.store.Put(bucketImages, dst.ID, dst); err != nil {
			e.dropImage(dst)
			return Operation{}, err
		}
		return e.startOp(u.ID, kind, dst.ID, func(ctx context.Context, p progress) (string, error) {
			if _, err := filecopy.Copy(ctx, src.path, dst.Path, p.Bytes("copying")); err != nil {
				e.dropImage(dst)
				return "", err
			}
			os.Chmod(dst.Path, 0o640)
			if _, err := e.finishImage(ctx, dst); err != nil {
				e.dropImage(dst)
				return "", err
			}
			e.log.Info("image restored as new", "image", dst.ID, "from", src.path)
			return dst.ID, nil
		}), nil
	}
	target := req.Image
	if target == "" {
		target = src.image
	}
	im, err := e.lockImage(u, target, op, lockWrite)
	if err != nil {
		return Operation{}, err
	}
	if im.Node != "" || qimg.Format(im.Format) != src.format {
		e.unlockImage(im)
		return Operation{}, fmt.Errorf("%s: %w: image %s is %s, the copy is %s; restore it as a new image (give a name)", op, ErrInvalid, im.ID, im.Format, src.format)
	}
	return e.startOp(u.ID, kind, im.ID, func(ctx context.Context, p progress) (string, error) {
		defer e.unlockImage(im)
		if _, err := filecopy.CopyReplace(ctx, src.path, im.Path, p.Bytes("copying")); err != nil {
			return "", err
		}
		os.Chmod(im.Path, 0o640)
		err := e.store.Update(func(tx *store.Tx) error {
			var cur Image
			if err := tx.Get(bucketImages, im.ID, &cur); err != nil {
				return err
			}
			cur.Backing = src.backing
			return tx.Put(bucketImages, im.ID, cur)
		})
		e.log.Info("image restored in place", "image", im.ID, "from", src.path)
		return im.ID, err
	}), nil
}

// snapshotter returns pool id's snapshot ability.
func (e *Engine) snapshotter(id int, op string) (pool.Snapshotter, Pool, error) {
	p, err := e.poolRecord(id)
	if err != nil {
		return nil, Pool{}, err
	}
	opened, err := e.openedPool(id)
	if err != nil {
		return nil, Pool{}, fmt.Errorf("%s: %w", op, err)
	}
	s, ok := opened.(pool.Snapshotter)
	if !ok {
		return nil, Pool{}, fmt.Errorf("%s: %w: %s pools have no snapshots; back up images instead, or use a btrfs or zfs pool", op, ErrInvalid, p.Driver)
	}
	return s, p, nil
}

// PoolSnapshots lists a pool's snapshots, oldest first.
func (e *Engine) PoolSnapshots(ctx context.Context, u User, poolID string) ([]PoolSnapshot, error) {
	op := fmt.Sprintf("list snapshots of pool %s", poolID)
	if err := requireUser(u, op); err != nil {
		return nil, err
	}
	id, err := parsePoolID(poolID)
	if err != nil {
		return nil, err
	}
	sn, _, err := e.snapshotter(id, op)
	if err != nil {
		return nil, err
	}
	list, err := sn.Snapshots(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	images, err := store.List[Image](e.store, bucketImages)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	current := make(map[string]bool, len(images))
	for _, im := range images {
		current[im.ID] = true
	}
	out := []PoolSnapshot{}
	for _, s := range list {
		ps := PoolSnapshot{Pool: id, Name: s.Name, Daily: strings.HasPrefix(s.Name, "daily-"), CreatedAt: s.CreatedAt, Images: []SnapshotImage{}}
		held, err := readManifest(sn, s.Name)
		if err != nil {
			// Not taken by Cairn (made by hand on the pool's disk): listed, with
			// nothing to restore from it one image at a time.
			e.log.Debug("snapshot without an image list", "pool", id, "snapshot", s.Name, "err", err)
		}
		for _, im := range held {
			if !canSee(u, im.Owner) {
				continue
			}
			ps.Images = append(ps.Images, SnapshotImage{
				ID: im.ID, Name: im.Name, Owner: im.Owner, Format: im.Format, VirtualSize: im.VirtualSize,
				Deleted: !current[im.ID],
			})
		}
		slices.SortFunc(ps.Images, func(a, b SnapshotImage) int {
			return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(a.ID, b.ID))
		})
		out = append(out, ps)
	}
	return out, nil
}

// SnapshotPool takes a snapshot of a whole pool now. Only admins may.
func (e *Engine) SnapshotPool(ctx context.Context, u User, poolID string) (PoolSnapshot, error) {
	op := fmt.Sprintf("snapshot pool %s", poolID)
	if err := requireAdmin(u, op); err != nil {
		return PoolSnapshot{}, err
	}
	id, err := parsePoolID(poolID)
	if err != nil {
		return PoolSnapshot{}, err
	}
	return e.snapshotPool(ctx, id, "manual-"+e.now().Format("20060102-150405"))
}

func (e *Engine) snapshotPool(ctx context.Context, id int, name string) (PoolSnapshot, error) {
	op := fmt.Sprintf("snapshot pool %d", id)
	sn, p, err := e.snapshotter(id, op)
	if err != nil {
		return PoolSnapshot{}, err
	}
	if err := e.writeManifest(p); err != nil {
		return PoolSnapshot{}, fmt.Errorf("%s: %w", op, err)
	}
	if err := sn.Snapshot(ctx, name); err != nil {
		return PoolSnapshot{}, fmt.Errorf("%s: %w", op, poolErr(err))
	}
	e.log.Info("pool snapshot taken", "pool", id, "snapshot", name)
	return PoolSnapshot{Pool: id, Name: name, Daily: strings.HasPrefix(name, "daily-"), CreatedAt: e.now()}, nil
}

// writeManifest records the pool's images in its root, to be caught by the snapshot.
func (e *Engine) writeManifest(p Pool) error {
	images, err := store.List[Image](e.store, bucketImages)
	if err != nil {
		return err
	}
	images = slices.DeleteFunc(images, func(im Image) bool { return im.Node != "" || im.Pool != p.ID || im.State != ImageReady })
	data, err := json.MarshalIndent(images, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(p.Path, manifestName+".tmp")
	if err := os.WriteFile(tmp, data, 0o640); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(p.Path, manifestName))
}

// readManifest reads the images a snapshot holds.
func readManifest(sn pool.Snapshotter, name string) ([]Image, error) {
	path, err := sn.SnapshotPath(name, manifestName)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s has no image list (%w); it was not taken by Cairn", name, err)
	}
	var images []Image
	return images, json.Unmarshal(data, &images)
}

// DeletePoolSnapshot deletes a pool snapshot. Only admins may.
func (e *Engine) DeletePoolSnapshot(ctx context.Context, u User, poolID, name string) error {
	op := fmt.Sprintf("delete snapshot %q of pool %s", name, poolID)
	if err := requireAdmin(u, op); err != nil {
		return err
	}
	id, err := parsePoolID(poolID)
	if err != nil {
		return err
	}
	sn, _, err := e.snapshotter(id, op)
	if err != nil {
		return err
	}
	if err := sn.DeleteSnapshot(ctx, name); err != nil {
		return fmt.Errorf("%s: %w", op, poolErr(err))
	}
	return nil
}

// RestoreFromSnapshot restores one image from a pool snapshot: in place (its servers
// shut off) or, with req.Name, as a new image (also for an image deleted since).
func (e *Engine) RestoreFromSnapshot(ctx context.Context, u User, poolID, name string, req RestoreRequest) (Operation, error) {
	op := fmt.Sprintf("restore image %q from snapshot %q of pool %s", req.Image, name, poolID)
	if err := requireWriter(u, op); err != nil {
		return Operation{}, err
	}
	id, err := parsePoolID(poolID)
	if err != nil {
		return Operation{}, err
	}
	sn, _, err := e.snapshotter(id, op)
	if err != nil {
		return Operation{}, err
	}
	images, err := readManifest(sn, name)
	if err != nil {
		return Operation{}, fmt.Errorf("%s: %w: %v", op, ErrNotFound, err)
	}
	i := slices.IndexFunc(images, func(im Image) bool { return im.ID == req.Image && canSee(u, im.Owner) })
	if i < 0 {
		return Operation{}, fmt.Errorf("%s: %w: the snapshot has no image %q of yours", op, ErrNotFound, req.Image)
	}
	im := images[i]
	path, err := sn.SnapshotPath(name, filepath.Join("images", filepath.Base(im.Path)))
	if err != nil {
		return Operation{}, fmt.Errorf("%s: %w", op, poolErr(err))
	}
	src := restoreSource{path: path, format: qimg.Format(im.Format), backing: im.Backing, name: im.Name, image: im.ID, pool: &id}
	if req.Name == "" {
		if _, err := e.Image(ctx, u, im.ID); err != nil {
			return Operation{}, fmt.Errorf("%s: %w: the image was deleted since; restore it as a new image (give a name)", op, ErrInvalid)
		}
	}
	return e.restore(ctx, u, op, "restore", src, req)
}

// RollbackPool makes a whole pool's content what it was at a snapshot. It is
// refused while a server that uses one of the pool's images runs; confirm must be
// the pool's name. Images made since the snapshot are gone afterwards, and images
// deleted since are back.
func (e *Engine) RollbackPool(ctx context.Context, u User, poolID, name, confirm string) error {
	op := fmt.Sprintf("roll pool %s back to %q", poolID, name)
	if err := requireAdmin(u, op); err != nil {
		return err
	}
	id, err := parsePoolID(poolID)
	if err != nil {
		return err
	}
	sn, p, err := e.snapshotter(id, op)
	if err != nil {
		return err
	}
	if confirm != p.Name {
		return fmt.Errorf("%s: %w: this replaces everything in the pool with the snapshot; to go ahead, send confirm equal to the pool's name %q", op, ErrInvalid, p.Name)
	}
	then, err := readManifest(sn, name)
	if err != nil {
		return fmt.Errorf("%s: %w: %v", op, ErrNotFound, err)
	}
	e.rollbackMu.Lock()
	defer e.rollbackMu.Unlock()
	all, err := store.List[Image](e.store, bucketImages)
	if err != nil {
		return err
	}
	servers, err := store.List[Server](e.store, bucketServers)
	if err != nil {
		return err
	}
	inPool := func(im Image) bool { return im.Node == "" && im.Pool == id }
	for _, im := range all {
		if !inPool(im) && !slices.ContainsFunc(then, func(t Image) bool { return t.ID == im.Backing }) {
			continue
		}
		if im.State != ImageReady {
			return fmt.Errorf("%s: %w: image %s is %s; wait for it", op, ErrInUse, im.ID, im.State)
		}
		for _, sid := range usedBy(im.ID, servers) {
			i := slices.IndexFunc(servers, func(s Server) bool { return s.ID == sid })
			if servers[i].State != ServerShutoff && servers[i].State != ServerCrashed {
				return fmt.Errorf("%s: %w: server %s (%s) uses image %s and is %s; shut it off first", op, ErrInUse, servers[i].Name, sid, im.ID, servers[i].State)
			}
			if !slices.ContainsFunc(then, func(t Image) bool { return t.ID == im.ID }) && inPool(im) {
				return fmt.Errorf("%s: %w: image %s was made after the snapshot and server %s uses it; detach it first", op, ErrInUse, im.ID, sid)
			}
		}
		if inPool(im) && !slices.ContainsFunc(then, func(t Image) bool { return t.ID == im.ID }) {
			var kids []string
			for _, c := range all {
				if c.Backing == im.ID {
					kids = append(kids, c.ID)
				}
			}
			if len(kids) > 0 {
				return fmt.Errorf("%s: %w: master %s was made after the snapshot and %v depend on it", op, ErrInUse, im.ID, kids)
			}
		}
	}
	if err := sn.Rollback(ctx, name); err != nil {
		return fmt.Errorf("%s: %w", op, poolErr(err))
	}
	// The records follow the files: what the snapshot holds is back, the rest is gone.
	err = e.store.Update(func(tx *store.Tx) error {
		for _, im := range all {
			if inPool(im) && !slices.ContainsFunc(then, func(t Image) bool { return t.ID == im.ID }) {
				if err := tx.Delete(bucketImages, im.ID); err != nil {
					return err
				}
			}
		}
		for _, im := range then {
			im.UsedBy, im.Children = nil, nil
			if err := tx.Put(bucketImages, im.ID, im); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	e.log.Warn("pool rolled back", "pool", id, "snapshot", name, "by", u.Name)
	return nil
}

// RunSchedules takes the daily pool snapshots and image backups when their time has
// come, and prunes old ones, until ctx ends.
func (e *Engine) RunSchedules(ctx context.Context) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		e.CheckSchedules(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// CheckSchedules makes one pass over the schedules.
func (e *Engine) CheckSchedules(ctx context.Context) {
	now := e.cfg.Now().Local()
	due := func(at string) bool { return at != "" && now.Format("15:04") >= at }
	today := now.Format("20060102")
	pools, _ := store.List[Pool](e.store, bucketPools)
	for _, p := range pools {
		if !due(p.SnapshotAt) || p.State != PoolReady {
			continue
		}
		sn, _, err := e.snapshotter(p.ID, "daily snapshot")
		if err != nil {
			continue
		}
		list, err := sn.Snapshots(ctx)
		if err != nil {
			continue
		}
		name := "daily-" + today
		if !slices.ContainsFunc(list, func(s pool.Snapshot) bool { return s.Name == name }) {
			if _, err := e.snapshotPool(ctx, p.ID, name); err != nil {
				e.log.Error("daily snapshot failed", "pool", p.ID, "err", err)
				continue
			}
			list, _ = sn.Snapshots(ctx)
		}
		var daily []pool.Snapshot
		for _, s := range list {
			if strings.HasPrefix(s.Name, "daily-") {
				daily = append(daily, s)
			}
		}
		slices.SortFunc(daily, func(a, b pool.Snapshot) int { return strings.Compare(a.Name, b.Name) })
		for len(daily) > max(p.SnapshotKeep, 1) {
			if err := sn.DeleteSnapshot(ctx, daily[0].Name); err != nil {
				e.log.Warn("prune snapshot failed", "pool", p.ID, "snapshot", daily[0].Name, "err", err)
				break
			}
			e.log.Info("old daily snapshot pruned", "pool", p.ID, "snapshot", daily[0].Name)
			daily = daily[1:]
		}
	}
	images, _ := store.List[Image](e.store, bucketImages)
	backups, _ := store.List[Backup](e.store, bucketBackups)
	for _, im := range images {
		if !due(im.BackupAt) || im.State != ImageReady || im.Node != "" {
			continue
		}
		var mine []Backup
		for _, b := range backups {
			if b.Image == im.ID && b.Scheduled {
				mine = append(mine, b)
			}
		}
		slices.SortFunc(mine, func(a, b Backup) int { return a.CreatedAt.Compare(b.CreatedAt) })
		done := slices.ContainsFunc(mine, func(b Backup) bool { return b.CreatedAt.Local().Format("20060102") == today })
		owner, err := e.userByID(im.Owner)
		if err != nil {
			continue
		}
		if !done {
			if _, err := e.backupImage(ctx, owner, im.ID, true); err != nil {
				e.log.Error("scheduled backup failed", "image", im.ID, "err", err)
			}
			continue
		}
		for len(mine) > max(im.BackupKeep, 1) {
			if err := e.DeleteBackup(ctx, owner, mine[0].ID); err != nil {
				break
			}
			mine = mine[1:]
		}
	}
}
