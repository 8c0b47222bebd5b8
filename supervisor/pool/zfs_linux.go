package pool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cairn-os/cairn/supervisor/hostcmd"
)

func init() {
	Register("zfs", func(r hostcmd.Runner) Driver {
		return &zfsDriver{run: r, lookPath: exec.LookPath, moduleDir: filepath.Join(sysModule, "zfs")}
	})
}

// zfsDriver makes pools that are zfs datasets, mounted at the pool's path. It needs
// OpenZFS: Debian's zfs-fuse lacks the options and properties this driver uses.
//
// It runs zfs and zpool through the Runner, with the commands that
// github.com/mistifyio/go-zfs would run, rather than through go-zfs itself: go-zfs
// starts programs with exec.Cmd.Run, and under the supervisor (PID 1, which reaps
// every child with wait4(-1)) that loses their exit status; it also offers no way to
// record commands in tests.
type zfsDriver struct {
	run       hostcmd.Runner
	lookPath  func(string) (string, error)
	moduleDir string // /sys/module/zfs

	once   sync.Once
	supErr error
}

var _ Driver = (*zfsDriver)(nil)

// Info returns what zfs pools can do. Reflink is false: block cloning exists only
// from OpenZFS 2.2 on, when the pool has the feature enabled.
func (d *zfsDriver) Info() Info {
	return Info{Driver: "zfs", Snapshots: true, Devices: true}
}

// Supported checks for the zfs kernel module and the zfs and zpool programs, once.
func (d *zfsDriver) Supported(ctx context.Context) error {
	d.once.Do(func() {
		var missing []string
		if _, err := os.Stat(d.moduleDir); err != nil {
			missing = append(missing, "no zfs kernel module ("+d.moduleDir+")")
		}
		var progs []string
		for _, p := range []string{"zfs", "zpool"} {
			if _, err := d.lookPath(p); err != nil {
				progs = append(progs, p)
			}
		}
		if len(progs) > 0 {
			missing = append(missing, strings.Join(progs, " and ")+" not on PATH")
		}
		if len(missing) > 0 {
			d.supErr = fmt.Errorf("zfs: %w: %s; zfs pools need OpenZFS (Debian's zfs-fuse is not compatible), use btrfs here", ErrNotSupported, strings.Join(missing, "; "))
		}
	})
	return d.supErr
}

var zfsDatasetName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.:-]*(/[A-Za-z0-9_.:-]+)+$`)

// checkDataset returns ErrInvalid unless s.Dataset is a dataset inside a zpool.
func checkDataset(s Spec) error {
	if len(s.Dataset) > 255 || !zfsDatasetName.MatchString(s.Dataset) {
		return fmt.Errorf("zfs dataset %q: %w: give a dataset inside a zpool, such as tank/cairn-3 (letters, digits, '_', '.', ':', '-')", s.Dataset, ErrInvalid)
	}
	return nil
}

// zpoolOf returns the zpool's name of a dataset.
func zpoolOf(dataset string) string {
	name, _, _ := strings.Cut(dataset, "/")
	return name
}

// Create makes a zfs pool: with a Device, a new zpool on it (its GUID is the spec's
// UUID); then the dataset, with s.Path as its mountpoint. The dataset is unmounted
// at the end, as Create leaves nothing mounted.
func (d *zfsDriver) Create(ctx context.Context, s Spec) (_ Spec, err error) {
	if err := d.Supported(ctx); err != nil {
		return Spec{}, err
	}
	if err := checkPath(s); err != nil {
		return Spec{}, err
	}
	if err := checkDataset(s); err != nil {
		return Spec{}, err
	}
	s.Driver = "zfs"
	zp := zpoolOf(s.Dataset)
	var rev reverter
	defer rev.fail(&err)
	if s.Device != "" {
		if err := CheckDevice(ctx, s.Device); err != nil {
			return Spec{}, err
		}
		// -f: the engine asked the user to confirm the format. -m none: only the
		// dataset is mounted, at the pool's path.
		if _, err := d.run.Run(ctx, "zpool", "create", "-f", "-m", "none", zp, s.Device); err != nil {
			return Spec{}, fmt.Errorf("create zpool %s on %s: %w", zp, s.Device, err)
		}
		rev.add("create zpool "+zp, func() error {
			_, err := d.run.Run(context.Background(), "zpool", "destroy", "-f", zp)
			return err
		})
		out, err := d.run.Run(ctx, "zpool", "get", "-H", "-p", "-o", "value", "guid", zp)
		if err != nil {
			return Spec{}, fmt.Errorf("create zpool %s: %w", zp, err)
		}
		s.UUID = strings.TrimSpace(string(out))
	} else if _, err := d.run.Run(ctx, "zpool", "list", "-H", "-o", "name", zp); err != nil {
		return Spec{}, fmt.Errorf("create zfs pool %s: %w: zpool %s is not imported (%v); import it, or give a device to make one", s.Path, ErrNotFound, zp, err)
	}
	if _, err := d.run.Run(ctx, "zfs", "list", "-H", "-o", "name", s.Dataset); err == nil {
		return Spec{}, fmt.Errorf("create zfs pool %s: dataset %s: %w; choose another dataset", s.Path, s.Dataset, ErrExists)
	}
	created, err := prepareMountpoint(s.Path)
	if err != nil {
		return Spec{}, err
	}
	if created {
		rev.add("make folder "+s.Path, func() error { return removeDir(s.Path) })
	}
	if _, err := d.run.Run(ctx, "zfs", "create", "-p", "-o", "mountpoint="+s.Path, s.Dataset); err != nil {
		return Spec{}, fmt.Errorf("create zfs dataset %s: %w", s.Dataset, err)
	}
	rev.add("create dataset "+s.Dataset, func() error {
		_, err := d.run.Run(context.Background(), "zfs", "destroy", "-r", s.Dataset)
		return err
	})
	if _, err := d.run.Run(ctx, "zfs", "unmount", s.Dataset); err != nil {
		return Spec{}, fmt.Errorf("unmount new zfs dataset %s: %w", s.Dataset, err)
	}
	rev.success()
	return s, nil
}

// zfsProps reads properties of a dataset.
func (d *zfsDriver) zfsProps(ctx context.Context, dataset string, props ...string) (map[string]string, error) {
	out, err := d.run.Run(ctx, "zfs", "get", "-H", "-p", "-o", "property,value", strings.Join(props, ","), dataset)
	if err != nil {
		return nil, fmt.Errorf("zfs dataset %s: %w", dataset, err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if k, v, ok := strings.Cut(line, "\t"); ok {
			m[k] = v
		}
	}
	return m, nil
}

// Open imports the zpool when the pool has its own device and it is not imported
// (by GUID, which survives device renames), checks that the dataset's mountpoint is
// the pool's path, and mounts the dataset.
func (d *zfsDriver) Open(ctx context.Context, s Spec) (Pool, error) {
	if err := d.Supported(ctx); err != nil {
		return nil, err
	}
	if err := checkPath(s); err != nil {
		return nil, err
	}
	if err := checkDataset(s); err != nil {
		return nil, err
	}
	s.Driver = "zfs"
	zp := zpoolOf(s.Dataset)
	if hasDevice(s) {
		if _, err := d.run.Run(ctx, "zpool", "list", "-H", "-o", "name", zp); err != nil {
			which := zp
			if s.UUID != "" {
				which = s.UUID
			}
			if _, err := d.run.Run(ctx, "zpool", "import", "-N", which); err != nil {
				return nil, fmt.Errorf("open pool %s: import zpool %s: %w; attach the pool's disk", s.Path, which, err)
			}
		}
	}
	props, err := d.zfsProps(ctx, s.Dataset, "mountpoint", "mounted")
	if err != nil {
		return nil, fmt.Errorf("open pool %s: %w", s.Path, err)
	}
	if props["mountpoint"] != s.Path {
		return nil, fmt.Errorf("open pool %s: %w: dataset %s has mountpoint %q; set it (zfs set mountpoint=%s %s)", s.Path, ErrInvalid, s.Dataset, props["mountpoint"], s.Path, s.Dataset)
	}
	if props["mounted"] != "yes" {
		if _, err := d.run.Run(ctx, "zfs", "mount", s.Dataset); err != nil {
			return nil, fmt.Errorf("open pool %s: mount dataset %s: %w", s.Path, s.Dataset, err)
		}
	}
	return &zfsPool{spec: s, run: d.run}, nil
}

// Close unmounts the dataset.
func (d *zfsDriver) Close(ctx context.Context, s Spec) error {
	if err := checkDataset(s); err != nil {
		return err
	}
	props, err := d.zfsProps(ctx, s.Dataset, "mounted")
	if err != nil {
		return fmt.Errorf("close pool %s: %w", s.Path, err)
	}
	if props["mounted"] != "yes" {
		return nil
	}
	if out, err := d.run.Run(ctx, "zfs", "unmount", s.Dataset); err != nil {
		if strings.Contains(string(out)+err.Error(), "busy") {
			return fmt.Errorf("unmount pool at %s: %w: files in it are open (running servers, an NFS export); stop them and try again", s.Path, ErrInUse)
		}
		return fmt.Errorf("unmount pool at %s: %w", s.Path, err)
	}
	return nil
}

// zfsPool is an opened zfs pool. Its snapshots are <dataset>@<name>, readable at
// <Path>/.zfs/snapshot/<name>.
type zfsPool struct {
	spec Spec
	run  hostcmd.Runner
	mu   sync.Mutex
}

var (
	_ Pool        = (*zfsPool)(nil)
	_ Snapshotter = (*zfsPool)(nil)
)

// Spec returns the pool's spec.
func (p *zfsPool) Spec() Spec { return p.spec }

// Usage returns the space of the dataset as statfs sees it.
func (p *zfsPool) Usage(ctx context.Context) (Usage, error) { return statUsage(p.spec.Path) }

// Snapshot makes the snapshot <dataset>@<name>.
func (p *zfsPool) Snapshot(ctx context.Context, name string) error {
	if err := checkSnapshotName(name); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	snaps, err := p.Snapshots(ctx)
	if err != nil {
		return err
	}
	if slices.ContainsFunc(snaps, func(s Snapshot) bool { return s.Name == name }) {
		return fmt.Errorf("snapshot %s of pool %s: %w; choose another name or delete the old one", name, p.spec.Path, ErrExists)
	}
	if _, err := p.run.Run(ctx, "zfs", "snapshot", p.spec.Dataset+"@"+name); err != nil {
		return fmt.Errorf("snapshot %s of pool %s: %w", name, p.spec.Path, err)
	}
	return nil
}

// Snapshots lists the dataset's snapshots, oldest first.
func (p *zfsPool) Snapshots(ctx context.Context) ([]Snapshot, error) {
	out, err := p.run.Run(ctx, "zfs", "list", "-H", "-p", "-t", "snapshot", "-o", "name,creation", "-s", "creation", "-d", "1", p.spec.Dataset)
	if err != nil {
		return nil, fmt.Errorf("list snapshots of pool %s: %w", p.spec.Path, err)
	}
	snaps := []Snapshot{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		full, created, ok := strings.Cut(line, "\t")
		name, isOurs := strings.CutPrefix(full, p.spec.Dataset+"@")
		if !ok || !isOurs {
			continue
		}
		secs, err := strconv.ParseInt(strings.TrimSpace(created), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("list snapshots of pool %s: creation time %q of %s: %w", p.spec.Path, created, full, err)
		}
		snaps = append(snaps, Snapshot{Name: name, CreatedAt: time.Unix(secs, 0).UTC()})
	}
	return snaps, nil
}

// existing returns ErrNotFound unless the dataset has the snapshot name.
func (p *zfsPool) existing(ctx context.Context, name string) error {
	if err := checkSnapshotName(name); err != nil {
		return err
	}
	snaps, err := p.Snapshots(ctx)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(snaps, func(s Snapshot) bool { return s.Name == name }) {
		return fmt.Errorf("snapshot %s of pool %s: %w", name, p.spec.Path, ErrNotFound)
	}
	return nil
}

// DeleteSnapshot destroys <dataset>@<name>.
func (p *zfsPool) DeleteSnapshot(ctx context.Context, name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.existing(ctx, name); err != nil {
		return err
	}
	if _, err := p.run.Run(ctx, "zfs", "destroy", p.spec.Dataset+"@"+name); err != nil {
		return fmt.Errorf("delete snapshot %s of pool %s: %w", name, p.spec.Path, err)
	}
	return nil
}

func (p *zfsPool) snapshotDir(name string) string {
	return filepath.Join(p.spec.Path, ".zfs", "snapshot", name)
}

// SnapshotPath returns <Path>/.zfs/snapshot/<name>/<rel>; zfs mounts the snapshot
// there when it is first read.
func (p *zfsPool) SnapshotPath(name, rel string) (string, error) {
	if err := checkSnapshotName(name); err != nil {
		return "", err
	}
	snap := p.snapshotDir(name)
	if _, err := os.Stat(snap); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("snapshot %s of pool %s: %w", name, p.spec.Path, ErrNotFound)
		}
		return "", fmt.Errorf("snapshot %s of pool %s: %w", name, p.spec.Path, err)
	}
	path, err := pathIn(snap, rel)
	if err != nil {
		return "", fmt.Errorf("file %s in snapshot %s of pool %s: %w", rel, name, p.spec.Path, err)
	}
	return path, nil
}

// Rollback copies the snapshot's files from <Path>/.zfs/snapshot/<name> into the
// mounted dataset and deletes what the snapshot lacks (syncTree; clones where the
// pool has block cloning). It does not use `zfs rollback -r`, which destroys every
// later snapshot, where the contract keeps them.
func (p *zfsPool) Rollback(ctx context.Context, name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.existing(ctx, name); err != nil {
		return err
	}
	if err := syncTree(ctx, p.snapshotDir(name), p.spec.Path, map[string]bool{".zfs": true}); err != nil {
		return fmt.Errorf("roll pool %s back to snapshot %s: %w (the pool may be partly rolled back; run the rollback again)", p.spec.Path, name, err)
	}
	return nil
}
