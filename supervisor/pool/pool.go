// Package pool holds Cairn's storage pool drivers. A pool is a directory that keeps VM
// images, at the same path (<pools dir>/<n>) on every node, so that a qcow2 backing
// file's path means the same everywhere. Pool 0 is the `pools/0` btrfs subvolume on the
// admin's data disk (see supervisor/datadisk); more pools live on a block device that
// Cairn formats, or on an existing directory.
//
// Drivers ("dir", "btrfs", "zfs") register themselves in a registry (after Incus) and
// have small interfaces (after Tailscale): every pool has a Spec and a Usage; pools
// that can snapshot also implement Snapshotter. A driver checks its prerequisites once
// and reports ErrNotSupported with the reason.
//
// Layouts:
//   - dir: the files live in Path. With a Device, the device is formatted ext4 and its
//     root is mounted at Path.
//   - btrfs: Path is the root of a btrfs subvolume. On an existing btrfs directory it
//     is a subvolume made with `btrfs subvolume create`; with a Device, the new file
//     system's top level (subvolume 5) is mounted at Path, so no second, private mount
//     is needed. Snapshots are read-only subvolumes in Path/.snapshots/<name>: a
//     snapshot of a subvolume leaves nested subvolumes out, so snapshots never contain
//     each other.
//   - zfs: Path is the mountpoint of Dataset; snapshots are Dataset@name.
//
// Create never leaves anything mounted: the engine calls Open next, and at every boot.
package pool

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Errors that the engine maps to HTTP statuses. Errors wrap them with the operation,
// the object and what to do.
var (
	// ErrNotSupported means the driver cannot run on this host; the wrapping error
	// says what is missing.
	ErrNotSupported = errors.New("not supported on this host")
	// ErrInUse means a device or pool is busy: mounted, open, or Cairn's own disk.
	ErrInUse = errors.New("in use")
	// ErrInvalid means a request that can never work as given: a bad name or path.
	ErrInvalid = errors.New("invalid")
	// ErrNotFound means a snapshot or file that does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists means a snapshot of that name exists already.
	ErrExists = errors.New("already exists")
)

// Spec says where a pool is. The engine stores it and hands it back to Open at every
// boot.
type Spec struct {
	// Driver is the driver's name: "dir", "btrfs" or "zfs".
	Driver string `json:"driver"`
	// Path is where the pool's files live: a mount point, a directory, or a zfs
	// dataset's mountpoint. It must be absolute.
	Path string `json:"path"`
	// Device is an optional block device that Create formats and Open mounts, such as
	// /dev/sdb. Open prefers UUID, since device names can change between boots.
	Device string `json:"device,omitempty"`
	// UUID is the file system's UUID (zfs: the zpool's GUID), filled in by Create.
	UUID string `json:"uuid,omitempty"`
	// Dataset is the zfs dataset ("tank/cairn/3").
	Dataset string `json:"dataset,omitempty"`
}

// Usage is the space of the file system that holds a pool. Pools that share a file
// system (pool 0 and the engine's state on the data disk) report the same numbers.
type Usage struct {
	TotalBytes uint64 `json:"total_bytes"`
	UsedBytes  uint64 `json:"used_bytes"`
	FreeBytes  uint64 `json:"free_bytes"`
}

// Info is what a driver can do.
type Info struct {
	// Driver is the driver's name.
	Driver string `json:"driver"`
	// Snapshots means the driver's pools implement Snapshotter.
	Snapshots bool `json:"snapshots"`
	// Reflink means copies inside a pool share blocks until written (cheap clones).
	Reflink bool `json:"reflink"`
	// Devices means the driver can format and mount a block device.
	Devices bool `json:"devices"`
}

// Pool is an opened pool.
type Pool interface {
	// Spec returns the pool's spec; Device is the device the pool was found on.
	Spec() Spec
	// Usage returns the space of the pool's file system.
	Usage(ctx context.Context) (Usage, error)
}

// Snapshot is a read-only copy of a whole pool at one moment.
type Snapshot struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// Snapshotter is the optional ability of pools whose driver can snapshot (btrfs, zfs).
type Snapshotter interface {
	// Snapshot makes a read-only, atomic snapshot of the pool named name.
	Snapshot(ctx context.Context, name string) error
	// Snapshots lists the pool's snapshots, oldest first.
	Snapshots(ctx context.Context) ([]Snapshot, error)
	// DeleteSnapshot deletes one snapshot.
	DeleteSnapshot(ctx context.Context, name string) error
	// SnapshotPath returns where the file rel (relative to the pool's root) is inside
	// the snapshot name, for restoring one image by copying it out. The file must
	// exist there.
	SnapshotPath(name, rel string) (string, error)
	// Rollback makes the pool's content the snapshot's, while the pool stays mounted
	// and exported (NFS clients keep their mount). Later snapshots are kept. Files
	// are replaced, not rewritten in place: a program that holds one open keeps the
	// old content, so stop the servers that use the pool first.
	Rollback(ctx context.Context, name string) error
}

// Driver makes and opens pools of one kind.
type Driver interface {
	// Info returns what the driver can do.
	Info() Info
	// Supported reports, with ErrNotSupported and the reason, whether the driver can
	// run on this host. It checks once.
	Supported(ctx context.Context) error
	// Create makes a new pool: formats s.Device if given (after CheckDevice), and
	// makes the directory, subvolume or dataset. It returns the spec with UUID filled
	// in, and leaves nothing mounted. A failure undoes the steps that were done.
	Create(ctx context.Context, s Spec) (Spec, error)
	// Open mounts the pool's device (found by UUID) at Path if it is not mounted,
	// checks the layout, and returns the pool. It is called at every boot.
	Open(ctx context.Context, s Spec) (Pool, error)
	// Close unmounts what Open mounted. A pool on an existing directory is left as it
	// is.
	Close(ctx context.Context, s Spec) error
}

// SafeRel checks a path relative to a pool's root and returns it cleaned. Absolute
// paths, paths with a ".." element and paths that name the root itself are ErrInvalid.
func SafeRel(rel string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("path %q in pool: %w: %s; give a path relative to the pool such as images/disk.qcow2", rel, ErrInvalid, why)
	}
	switch {
	case rel == "":
		return bad("it is empty")
	case strings.ContainsRune(rel, 0):
		return bad("it contains a NUL byte")
	case filepath.IsAbs(rel):
		return bad("it is absolute")
	}
	for _, el := range strings.Split(rel, "/") {
		if el == ".." {
			return bad(`it has a ".." element`)
		}
	}
	c := filepath.Clean(rel)
	if c == "." {
		return bad("it names the pool's root, not a file")
	}
	return c, nil
}

var snapshotName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// checkSnapshotName returns ErrInvalid unless name is a valid snapshot name.
func checkSnapshotName(name string) error {
	if !snapshotName.MatchString(name) {
		return fmt.Errorf("snapshot name %q: %w: use 1 to 63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit", name, ErrInvalid)
	}
	return nil
}

// checkPath returns ErrInvalid unless the spec's Path is absolute and clean.
func checkPath(s Spec) error {
	if s.Path == "" || !filepath.IsAbs(s.Path) || filepath.Clean(s.Path) != s.Path || s.Path == "/" {
		return fmt.Errorf("pool path %q: %w: give an absolute, clean path such as /var/lib/cairn/pools/3", s.Path, ErrInvalid)
	}
	return nil
}
