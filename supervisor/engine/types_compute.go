package engine

import "time"

// PoolState says whether a pool can be used.
type PoolState string

// The states of a pool.
const (
	PoolReady PoolState = "ready"
	// PoolUnavailable pools are recorded but could not be opened (device missing,
	// driver not supported on this host); Problem says why.
	PoolUnavailable PoolState = "unavailable"
)

// Pool is a numbered storage pool. Pool 0 is the admin's data disk; every pool is at
// <pools dir>/<id> on every node, so backing-file paths mean the same everywhere.
type Pool struct {
	ID     int       `json:"id"`
	Name   string    `json:"name"`
	Driver string    `json:"driver"`
	Path   string    `json:"path"`
	Device string    `json:"device,omitempty"`
	UUID   string    `json:"uuid,omitempty"`
	State  PoolState `json:"state"`
	// Problem says what is wrong when State is unavailable.
	Problem string `json:"problem,omitempty"`
	// Shared pools are exported over NFS to the compute nodes.
	Shared    bool `json:"shared"`
	Snapshots bool `json:"snapshots"`
	// SnapshotAt is the daily snapshot time ("03:00", local time of the admin);
	// empty means no daily snapshots.
	SnapshotAt string `json:"snapshot_at,omitempty"`
	// SnapshotKeep is how many daily snapshots are kept.
	SnapshotKeep int       `json:"snapshot_keep,omitempty"`
	CreatedAt    time.Time `json:"created_at"`

	// Usage, filled in when the pool is listed.
	TotalBytes uint64 `json:"total_bytes"`
	UsedBytes  uint64 `json:"used_bytes"`
	FreeBytes  uint64 `json:"free_bytes"`
	// ImageBytes is what the images in the pool take, by owner (user ID).
	ImageBytesByOwner map[string]uint64 `json:"image_bytes_by_owner,omitempty"`
}

// PoolRequest creates a pool: on an existing directory (Path) or on a block device
// (Device) that Cairn formats — then ConfirmFormat must repeat the device's path.
type PoolRequest struct {
	Name          string `json:"name"`
	Driver        string `json:"driver"`
	Path          string `json:"path,omitempty"`
	Device        string `json:"device,omitempty"`
	ConfirmFormat string `json:"confirm_format,omitempty"`
	Shared        *bool  `json:"shared,omitempty"`
	SnapshotAt    string `json:"snapshot_at,omitempty"`
	SnapshotKeep  int    `json:"snapshot_keep,omitempty"`
}

// PoolUpdate changes a pool's snapshot schedule.
type PoolUpdate struct {
	SnapshotAt   *string `json:"snapshot_at,omitempty"`
	SnapshotKeep *int    `json:"snapshot_keep,omitempty"`
}

// PoolSnapshot is a snapshot of a whole pool.
type PoolSnapshot struct {
	Pool      int       `json:"pool"`
	Name      string    `json:"name"`
	Daily     bool      `json:"daily"`
	CreatedAt time.Time `json:"created_at"`
	// Images are the caller's images (an admin's: all) that the snapshot holds, by
	// name, as they were when it was taken: what can be restored from it. Empty for a
	// snapshot that Cairn did not take (it has no image list).
	Images []SnapshotImage `json:"images"`
}

// SnapshotImage is an image as a pool snapshot holds it.
type SnapshotImage struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Owner       string `json:"owner"`
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtual_size"`
	// Deleted is true when the image is no longer in Cairn: it can be restored only as
	// a new image.
	Deleted bool `json:"deleted"`
}

// ImageState says what can be done with an image.
type ImageState string

// The states of an image.
const (
	ImageReady     ImageState = "ready"
	ImageUploading ImageState = "uploading"
	// ImageBusy images are being written by an operation (copy, conversion,
	// restore); they cannot be used until it ends.
	ImageBusy ImageState = "busy"
)

// Image is a disk file in a pool, or a child image on one node's local storage.
type Image struct {
	ID     string     `json:"id"`
	Name   string     `json:"name"`
	Owner  string     `json:"owner"`
	Format string     `json:"format"`
	State  ImageState `json:"state"`
	// Pool is the pool the image is in; -1 when it is on a node's local storage.
	Pool int `json:"pool"`
	// Node is the node whose local storage holds the image; empty in a pool.
	Node string `json:"node,omitempty"`
	// Path is the file's absolute path, the same on every node that can reach it.
	Path        string `json:"path"`
	VirtualSize int64  `json:"virtual_size"`
	ActualSize  int64  `json:"actual_size"`
	// Master images are read-only and are cloned into children.
	Master bool `json:"master"`
	// Backing is the ID of the master a child image was cloned from.
	Backing string `json:"backing,omitempty"`
	// BackupAt is the daily backup time ("02:00"); empty means none scheduled.
	BackupAt   string `json:"backup_at,omitempty"`
	BackupKeep int    `json:"backup_keep,omitempty"`
	// Upload is the progress of an upload while State is uploading.
	Upload    *Upload   `json:"upload,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// UsedBy lists the servers that use the image, filled in when it is shown.
	UsedBy []string `json:"used_by,omitempty"`
	// Children lists the images cloned from this master, filled in when it is shown.
	Children []string `json:"children,omitempty"`
}

// Upload is where a resumable upload stands.
type Upload struct {
	Size   int64 `json:"size"`
	Offset int64 `json:"offset"`
}

// ImageRequest creates an empty image (Size set) or starts an upload (Upload set:
// then Size is the file's size in bytes).
type ImageRequest struct {
	Name   string `json:"name"`
	Pool   *int   `json:"pool,omitempty"`
	Format string `json:"format"`
	Size   int64  `json:"size"`
	Upload bool   `json:"upload,omitempty"`
}

// CloneRequest makes an image from another: a qcow2 child of a master (Linked, the
// default for masters) or a full copy. Node puts a child on that node's local storage.
type CloneRequest struct {
	Name   string `json:"name"`
	Pool   *int   `json:"pool,omitempty"`
	Node   string `json:"node,omitempty"`
	Linked *bool  `json:"linked,omitempty"`
}

// ImageUpdate changes an image: its name, the master mark, its backup schedule.
type ImageUpdate struct {
	Name       *string `json:"name,omitempty"`
	Master     *bool   `json:"master,omitempty"`
	BackupAt   *string `json:"backup_at,omitempty"`
	BackupKeep *int    `json:"backup_keep,omitempty"`
}

// ImageInfo is qemu-img's view of an image file and its backing chain.
type ImageInfo struct {
	Image Image       `json:"image"`
	Chain []ChainLink `json:"chain"`
}

// ChainLink is one file of a backing chain.
type ChainLink struct {
	Path        string `json:"path"`
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtual_size"`
	ActualSize  int64  `json:"actual_size"`
	BackingFile string `json:"backing_file,omitempty"`
}

// ServerState is the state of a server, as libvirt reports it.
type ServerState string

// The states of a server.
const (
	ServerShutoff  ServerState = "shutoff"
	ServerRunning  ServerState = "running"
	ServerPaused   ServerState = "paused"
	ServerStopping ServerState = "shutdown"
	ServerCrashed  ServerState = "crashed"
	// ServerUnknown servers are on a node the engine cannot reach.
	ServerUnknown ServerState = "unknown"
)

// Disk buses of a server.
const (
	BusVirtio = "virtio"
	BusSCSI   = "scsi"
	BusIDE    = "ide"
)

// MaxDisks is how many disks a server can have.
const MaxDisks = 4

// ServerDisk is one disk of a server.
type ServerDisk struct {
	Image string `json:"image"`
	Bus   string `json:"bus"`
}

// ServerNIC is one network interface of a server: a connection's, bridged to its
// network, or (without Connection) a placeholder with user-mode networking.
type ServerNIC struct {
	MAC   string `json:"mac"`
	Model string `json:"model"`
	// Connection, Kind and Network name the connection attached; Address is the
	// server's address on the interface and External its mapped external address.
	Connection string         `json:"connection,omitempty"`
	Kind       ConnectionKind `json:"kind,omitempty"`
	Network    int            `json:"network,omitempty"`
	Address    string         `json:"address,omitempty"`
	External   string         `json:"external,omitempty"`
}

// Server is a KVM virtual machine.
type Server struct {
	ID        string       `json:"id"`
	UUID      string       `json:"uuid"`
	Name      string       `json:"name"`
	Owner     string       `json:"owner"`
	VCPUs     int          `json:"vcpus"`
	MemoryMiB int          `json:"memory_mib"`
	Disks     []ServerDisk `json:"disks"`
	// CDROM is the ISO image in the CD-ROM drive; empty for an empty drive.
	CDROM     string      `json:"cdrom,omitempty"`
	NICs      []ServerNIC `json:"nics"`
	Boot      []string    `json:"boot"`
	Autostart bool        `json:"autostart"`
	// LockNode keeps the server on that node.
	LockNode string `json:"lock_node,omitempty"`
	// Stopped is set when someone shut the server down or forced it off, so that
	// autostart leaves it off; starting it clears it.
	Stopped bool `json:"stopped,omitempty"`
	// Node is where the server runs or last ran.
	Node      string      `json:"node,omitempty"`
	State     ServerState `json:"state"`
	Reason    string      `json:"reason,omitempty"`
	CreatedAt time.Time   `json:"created_at"`
	StateAt   time.Time   `json:"state_at"`
}

// ServerRequest creates a server. Each disk names an existing image, or a master to
// clone (Clone set: a child is made for the server, on Node's local storage when
// CloneNode is given).
type ServerRequest struct {
	Name      string              `json:"name"`
	VCPUs     int                 `json:"vcpus"`
	MemoryMiB int                 `json:"memory_mib"`
	Disks     []ServerDiskRequest `json:"disks"`
	CDROM     string              `json:"cdrom,omitempty"`
	NICs      int                 `json:"nics"`
	// Connections are attached as the server's first NICs, in order.
	Connections []string `json:"connections,omitempty"`
	Boot        []string `json:"boot,omitempty"`
	Autostart   bool     `json:"autostart"`
	LockNode    string   `json:"lock_node,omitempty"`
	Start       bool     `json:"start"`
}

// ServerDiskRequest is one disk of a new server.
type ServerDiskRequest struct {
	Image string `json:"image"`
	Bus   string `json:"bus,omitempty"`
	// Clone makes a qcow2 child of Image (a master) for this server.
	Clone bool `json:"clone,omitempty"`
	// CloneNode puts the child on that node's local storage instead of the master's pool.
	CloneNode string `json:"clone_node,omitempty"`
}

// ServerUpdate changes a server's settings; sizes take effect at its next start.
type ServerUpdate struct {
	Name      *string   `json:"name,omitempty"`
	VCPUs     *int      `json:"vcpus,omitempty"`
	MemoryMiB *int      `json:"memory_mib,omitempty"`
	Boot      *[]string `json:"boot,omitempty"`
	Autostart *bool     `json:"autostart,omitempty"`
	LockNode  *string   `json:"lock_node,omitempty"`
}

// OperationState is where a long piece of work stands.
type OperationState string

// The states of an operation.
const (
	OpRunning   OperationState = "running"
	OpSucceeded OperationState = "succeeded"
	OpFailed    OperationState = "failed"
	OpCanceled  OperationState = "canceled"
)

// Operation is long work (upload, conversion, copy, backup, restore, shutdown)
// with progress, cancel and a clear end state.
type Operation struct {
	ID       string         `json:"id"`
	Owner    string         `json:"owner"`
	Kind     string         `json:"kind"`
	Target   string         `json:"target"`
	State    OperationState `json:"state"`
	Progress float64        `json:"progress"`
	Message  string         `json:"message,omitempty"`
	Error    string         `json:"error,omitempty"`
	// Result is the ID of what the operation made (a new image, a backup).
	Result    string    `json:"result,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	EndedAt   time.Time `json:"ended_at,omitzero"`
}

// Backup is a copy of one image, kept in the backup pool.
type Backup struct {
	ID     string `json:"id"`
	Image  string `json:"image"`
	Name   string `json:"name"`
	Owner  string `json:"owner"`
	Pool   int    `json:"pool"`
	Path   string `json:"path"`
	Format string `json:"format"`
	// Backing is the master the image was a child of; the backup needs it.
	Backing   string    `json:"backing,omitempty"`
	Size      int64     `json:"size"`
	Method    string    `json:"method"`
	Scheduled bool      `json:"scheduled"`
	CreatedAt time.Time `json:"created_at"`
}

// RestoreRequest restores a backup or one image from a pool snapshot: in place (the
// image's servers shut off) or, with Name set, as a new image.
type RestoreRequest struct {
	Image string `json:"image,omitempty"`
	Name  string `json:"name,omitempty"`
}

// Settings are the engine's adjustable settings.
type Settings struct {
	// Placement is "disperse" (spread servers over nodes, the default) or "pack".
	Placement string `json:"placement"`
	// CPUOvercommit is how many vCPUs one host CPU may carry.
	CPUOvercommit float64 `json:"cpu_overcommit"`
	// MemoryOvercommit is how much of a node's memory servers may be given (1.0: all).
	MemoryOvercommit float64 `json:"memory_overcommit"`
	// BackupPool is the pool image backups go to.
	BackupPool int `json:"backup_pool"`
	// ShutdownTimeoutSeconds is how long an ACPI shutdown may take before the
	// engine offers to force the server off.
	ShutdownTimeoutSeconds int `json:"shutdown_timeout_seconds"`
	// ExternalRange is the uplink's range of external addresses that external-IP and
	// mapping connections take ("198.51.100.10-198.51.100.40" or "198.51.100.0/28");
	// empty means none. It must lie in the uplink's subnet.
	ExternalRange string `json:"external_range"`
	// ExternalQuota is how many external addresses one user may hold.
	ExternalQuota int `json:"external_quota"`
	// DNS are the name servers DHCP hands out on networks that name none.
	DNS []string `json:"dns"`
}

// DefaultSettings are the settings of a new engine.
func DefaultSettings() Settings {
	return Settings{Placement: "disperse", CPUOvercommit: 4, MemoryOvercommit: 1, BackupPool: 0, ShutdownTimeoutSeconds: 120,
		ExternalQuota: 4, DNS: []string{}}
}

// Usage is what one user's images take, per pool.
type Usage struct {
	User        string `json:"user"`
	Images      int    `json:"images"`
	Servers     int    `json:"servers"`
	Connections int    `json:"connections"`
	// ExternalAddresses are the user's external-IP and mapping connections, out of
	// ExternalQuota.
	ExternalAddresses int              `json:"external_addresses"`
	ExternalQuota     int              `json:"external_quota"`
	Bytes             uint64           `json:"bytes"`
	BytesByPool       map[string]int64 `json:"bytes_by_pool"`
}
