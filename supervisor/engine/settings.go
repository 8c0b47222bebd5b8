package engine

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

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

// settingsTx reads the settings inside tx (the defaults when unreadable).
func (e *Engine) settingsTx(tx *store.Tx) Settings {
	st := DefaultSettings()
	tx.Get(bucketMeta, metaSettings, &st)
	return st
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
	if st.ExternalQuota < 0 || st.ExternalQuota > maxRange {
		return Settings{}, fmt.Errorf("%s: %w: external_quota must be between 0 and %d", op, ErrInvalid, maxRange)
	}
	dns, err := parseDNS(st.DNS)
	if err != nil {
		return Settings{}, fmt.Errorf("%s: %w", op, err)
	}
	st.DNS = dns
	r, err := parseRange(st.ExternalRange)
	if err != nil {
		return Settings{}, fmt.Errorf("%s: %w", op, err)
	}
	st.ExternalRange = r.String()
	var old Settings
	err = e.store.Update(func(tx *store.Tx) error {
		old = e.settingsTx(tx)
		if err := checkRangeChange(tx, r); err != nil {
			return err
		}
		return tx.Put(bucketMeta, metaSettings, st)
	})
	if err != nil {
		return Settings{}, fmt.Errorf("%s: %w", op, err)
	}
	e.log.Info("settings changed", "by", u.Name, "placement", st.Placement, "external_range", st.ExternalRange)
	if !slices.Equal(old.DNS, st.DNS) {
		e.syncNetworks(ctx)
	}
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
	conns, err := store.List[Connection](e.store, bucketConnections)
	if err != nil {
		return Usage{}, err
	}
	for _, c := range conns {
		if c.Owner == userID {
			us.Connections++
			if c.Kind != ConnInternal {
				us.ExternalAddresses++
			}
		}
	}
	st, _ := e.Settings(ctx, u)
	us.ExternalQuota = st.ExternalQuota
	return us, nil
}

// checkRangeChange refuses an external range that leaves out addresses connections
// hold, or that overlaps an internal network.
func checkRangeChange(tx *store.Tx, r addrRange) error {
	if !r.empty() {
		nets, err := store.ListTx[Network](tx, bucketNetworks)
		if err != nil {
			return err
		}
		for _, n := range nets {
			p, err := netip.ParsePrefix(n.Prefix)
			if err != nil {
				continue
			}
			if r.first.Compare(lastOf(p)) <= 0 && p.Masked().Addr().Compare(r.last) <= 0 {
				return fmt.Errorf("%w: external range %q overlaps network %d (%s)", ErrExists, r, n.ID, n.Prefix)
			}
		}
	}
	conns, err := store.ListTx[Connection](tx, bucketConnections)
	if err != nil {
		return err
	}
	var out []string
	for _, c := range conns {
		if a, ok := externalOf(c); ok && !r.contains(a) {
			out = append(out, fmt.Sprintf("%s (connection %s)", a, c.ID))
		}
	}
	if len(out) > 0 {
		return fmt.Errorf("%w: external range %q leaves out addresses in use: %s; delete those connections first or widen the range", ErrInUse, r, strings.Join(out, ", "))
	}
	return nil
}

// lastOf is the last address of an IPv4 prefix.
func lastOf(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
