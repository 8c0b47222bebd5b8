package pool

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairn-os/cairn/supervisor/hostcmd"
)

// btrfsPool is an opened btrfs pool. Its snapshots are read-only subvolumes in
// <Path>/.snapshots/<name>.
type btrfsPool struct {
	spec Spec
	run  hostcmd.Runner
	// mu keeps a rollback from running beside a snapshot or a deletion.
	mu sync.Mutex
}

var (
	_ Pool        = (*btrfsPool)(nil)
	_ Snapshotter = (*btrfsPool)(nil)
)

// Spec returns the pool's spec.
func (p *btrfsPool) Spec() Spec { return p.spec }

// Usage returns the space of the pool's file system.
func (p *btrfsPool) Usage(ctx context.Context) (Usage, error) { return statUsage(p.spec.Path) }

func (p *btrfsPool) snapshotPath(name string) string {
	return filepath.Join(p.spec.Path, snapshotsDir, name)
}

// Snapshot makes a read-only snapshot of the pool's subvolume.
func (p *btrfsPool) Snapshot(ctx context.Context, name string) error {
	if err := checkSnapshotName(name); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	snap := p.snapshotPath(name)
	if _, err := os.Lstat(snap); err == nil {
		return fmt.Errorf("snapshot %s of pool %s: %w; choose another name or delete the old one", name, p.spec.Path, ErrExists)
	}
	if err := os.Mkdir(filepath.Dir(snap), 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("snapshot %s of pool %s: %w", name, p.spec.Path, err)
	}
	if _, err := p.run.Run(ctx, "btrfs", "subvolume", "snapshot", "-r", p.spec.Path, snap); err != nil {
		return fmt.Errorf("snapshot %s of pool %s: %w", name, p.spec.Path, err)
	}
	return nil
}

// Snapshots lists the pool's snapshots, oldest first, with the creation times btrfs
// recorded.
func (p *btrfsPool) Snapshots(ctx context.Context) ([]Snapshot, error) {
	entries, err := os.ReadDir(filepath.Join(p.spec.Path, snapshotsDir))
	if errors.Is(err, os.ErrNotExist) {
		return []Snapshot{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list snapshots of pool %s: %w", p.spec.Path, err)
	}
	type snap struct {
		Snapshot
		id uint64
	}
	var snaps []snap
	for _, e := range entries {
		if !e.IsDir() || checkSnapshotName(e.Name()) != nil {
			continue // not made by Snapshot
		}
		var st unix.Stat_t
		if unix.Stat(p.snapshotPath(e.Name()), &st) != nil || st.Ino != btrfsRootIno {
			continue
		}
		out, err := p.run.Run(ctx, "btrfs", "subvolume", "show", p.snapshotPath(e.Name()))
		if err != nil {
			return nil, fmt.Errorf("list snapshots of pool %s: %w", p.spec.Path, err)
		}
		created, id, err := parseSubvolumeShow(string(out))
		if err != nil {
			return nil, fmt.Errorf("list snapshots of pool %s: snapshot %s: %w", p.spec.Path, e.Name(), err)
		}
		snaps = append(snaps, snap{Snapshot{Name: e.Name(), CreatedAt: created}, id})
	}
	// Creation times have whole seconds; subvolume IDs grow, and order snapshots
	// taken within one second.
	slices.SortFunc(snaps, func(a, b snap) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.id, b.id)
	})
	list := make([]Snapshot, len(snaps))
	for i, s := range snaps {
		list[i] = s.Snapshot
	}
	return list, nil
}

// parseSubvolumeShow reads the creation time and the subvolume ID from the output
// of `btrfs subvolume show`.
func parseSubvolumeShow(out string) (time.Time, uint64, error) {
	var created time.Time
	var id uint64
	var haveTime, haveID bool
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch strings.TrimSpace(k) {
		case "Creation time":
			t, err := time.Parse("2006-01-02 15:04:05 -0700", v)
			if err != nil {
				return time.Time{}, 0, fmt.Errorf("creation time %q: %w", v, err)
			}
			created, haveTime = t, true
		case "Subvolume ID":
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return time.Time{}, 0, fmt.Errorf("subvolume ID %q: %w", v, err)
			}
			id, haveID = n, true
		}
	}
	if !haveTime || !haveID {
		return time.Time{}, 0, errors.New("btrfs subvolume show printed no creation time or subvolume ID")
	}
	return created, id, nil
}

// existing returns the path of the snapshot name, or ErrNotFound.
func (p *btrfsPool) existing(name string) (string, error) {
	if err := checkSnapshotName(name); err != nil {
		return "", err
	}
	snap := p.snapshotPath(name)
	var st unix.Stat_t
	if err := unix.Lstat(snap, &st); err != nil || st.Ino != btrfsRootIno {
		return "", fmt.Errorf("snapshot %s of pool %s: %w", name, p.spec.Path, ErrNotFound)
	}
	return snap, nil
}

// DeleteSnapshot deletes the snapshot's subvolume.
func (p *btrfsPool) DeleteSnapshot(ctx context.Context, name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	snap, err := p.existing(name)
	if err != nil {
		return err
	}
	if _, err := p.run.Run(ctx, "btrfs", "subvolume", "delete", snap); err != nil {
		return fmt.Errorf("delete snapshot %s of pool %s: %w", name, p.spec.Path, err)
	}
	return nil
}

// SnapshotPath returns where the file rel is inside the snapshot.
func (p *btrfsPool) SnapshotPath(name, rel string) (string, error) {
	snap, err := p.existing(name)
	if err != nil {
		return "", err
	}
	path, err := pathIn(snap, rel)
	if err != nil {
		return "", fmt.Errorf("file %s in snapshot %s of pool %s: %w", rel, name, p.spec.Path, err)
	}
	return path, nil
}

// Rollback makes the pool's content the snapshot's by reflinking the snapshot's
// files into the mounted pool and deleting what the snapshot lacks (syncTree): the
// mount and the NFS export stay, and .snapshots is left alone. A subvolume cannot be
// swapped for its snapshot without unmounting it, which NFS clients would notice.
func (p *btrfsPool) Rollback(ctx context.Context, name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	snap, err := p.existing(name)
	if err != nil {
		return err
	}
	if err := syncTree(ctx, snap, p.spec.Path, map[string]bool{snapshotsDir: true}); err != nil {
		return fmt.Errorf("roll pool %s back to snapshot %s: %w (the pool may be partly rolled back; run the rollback again)", p.spec.Path, name, err)
	}
	return nil
}
