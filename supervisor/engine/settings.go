package engine

import (
	"context"
	"fmt"

	"github.com/cairn-os/cairn/supervisor/store"
)

const metaSettings = "settings"

// Settings returns the engine's adjustable settings (the defaults until an admin
// changes them).
func (e *Engine) Settings(ctx context.Context, u User) (Settings, error) {
	st := DefaultSettings()
	if err := e.store.Get(bucketMeta, metaSettings, &st); err != nil && !isNotFound(err) {
		return DefaultSettings(), fmt.Errorf("read settings: %w", err)
	}
	return st, nil
}

// UpdateSettings replaces the engine's settings. Only admins may.
func (e *Engine) UpdateSettings(ctx context.Context, u User, st Settings) (Settings, error) {
	op := "update engine settings"
	if err := requireAdmin(u, op); err != nil {
		return Settings{}, err
	}
	if st.Placement != "disperse" && st.Placement != "pack" {
		return Settings{}, fmt.Errorf("%s: %w: placement must be disperse or pack", op, ErrInvalid)
	}
	if st.CPUOvercommit < 1 || st.CPUOvercommit > 32 {
		return Settings{}, fmt.Errorf("%s: %w: cpu_overcommit must be between 1 and 32 vCPUs per CPU", op, ErrInvalid)
	}
	if st.MemoryOvercommit < 0.1 || st.MemoryOvercommit > 4 {
		return Settings{}, fmt.Errorf("%s: %w: memory_overcommit must be between 0.1 and 4", op, ErrInvalid)
	}
	if st.ShutdownTimeoutSeconds < 5 || st.ShutdownTimeoutSeconds > 3600 {
		return Settings{}, fmt.Errorf("%s: %w: shutdown_timeout_seconds must be between 5 and 3600", op, ErrInvalid)
	}
	if p, err := e.poolRecord(st.BackupPool); err != nil || p.State != PoolReady {
		return Settings{}, fmt.Errorf("%s: %w: backup_pool %d is not a ready pool", op, ErrInvalid, st.BackupPool)
	}
	if err := e.store.Update(func(tx *store.Tx) error { return tx.Put(bucketMeta, metaSettings, st) }); err != nil {
		return Settings{}, fmt.Errorf("%s: %w", op, err)
	}
	e.log.Info("settings changed", "by", u.Name, "placement", st.Placement)
	return st, nil
}

// UsageOf reports what a user's images and servers take; users see their own,
// admins anyone's.
func (e *Engine) UsageOf(ctx context.Context, u User, userID string) (Usage, error) {
	op := fmt.Sprintf("usage of user %q", userID)
	if err := requireUser(u, op); err != nil {
		return Usage{}, err
	}
	if userID == "" || userID == "me" {
		userID = u.ID
	}
	if !canSee(u, userID) {
		return Usage{}, fmt.Errorf("%s: %w", op, ErrForbidden)
	}
	images, err := store.List[Image](e.store, bucketImages)
	if err != nil {
		return Usage{}, err
	}
	servers, err := store.List[Server](e.store, bucketServers)
	if err != nil {
		return Usage{}, err
	}
	us := Usage{User: userID, BytesByPool: map[string]int64{}}
	for _, im := range images {
		if im.Owner != userID {
			continue
		}
		us.Images++
		if im.Node != "" {
			continue
		}
		b := fileBytes(im.Path)
		us.Bytes += uint64(b)
		us.BytesByPool[fmt.Sprint(im.Pool)] += b
	}
	for _, s := range servers {
		if s.Owner == userID {
			us.Servers++
		}
	}
	return us, nil
}
