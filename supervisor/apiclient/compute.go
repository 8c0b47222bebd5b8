package apiclient

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/cairn-os/cairn/supervisor/engine"
)

// Servers lists the caller's servers (admins: all).
func (c *Client) Servers(ctx context.Context) ([]engine.Server, error) {
	return list[engine.Server](ctx, c, "/servers")
}

// Server shows a server by ID or name.
func (c *Client) Server(ctx context.Context, id string) (engine.Server, error) {
	return get[engine.Server](ctx, c, "/servers/"+esc(id))
}

// CreateServer creates a server (and starts it when req.Start is set).
func (c *Client) CreateServer(ctx context.Context, req engine.ServerRequest) (engine.Server, error) {
	var s engine.Server
	err := c.do(ctx, "POST", "/servers", c.auth, req, &s)
	return s, err
}

// UpdateServer changes a server's settings; sizes take effect at its next start.
func (c *Client) UpdateServer(ctx context.Context, id string, upd engine.ServerUpdate) (engine.Server, error) {
	var s engine.Server
	err := c.do(ctx, "PATCH", "/servers/"+esc(id), c.auth, upd, &s)
	return s, err
}

// DeleteServer deletes a shut-off server; with deleteDisks its disk images go too.
// It returns the disk images that were kept although deleteDisks asked otherwise,
// each with the reason.
func (c *Client) DeleteServer(ctx context.Context, id string, deleteDisks bool) ([]string, error) {
	disks := "keep"
	if deleteDisks {
		disks = "delete"
	}
	var resp struct {
		Kept []string `json:"kept"`
	}
	err := c.do(ctx, "DELETE", "/servers/"+esc(id)+"?disks="+disks, c.auth, nil, &resp)
	return resp.Kept, err
}

// ServerAction is one of the power actions that answer with the server: start,
// stop (force off), reboot, suspend and resume.
func (c *Client) ServerAction(ctx context.Context, id, action string) (engine.Server, error) {
	switch action {
	case "start", "stop", "reboot", "suspend", "resume":
	default:
		return engine.Server{}, fmt.Errorf("server action %q: use start, stop, reboot, suspend or resume", action)
	}
	var s engine.Server
	err := c.do(ctx, "POST", "/servers/"+esc(id)+"/"+action, c.auth, nil, &s)
	return s, err
}

// ShutdownServer presses the server's ACPI power button. The operation ends when
// the server is off, or fails when timeout (the engine's setting when 0) passes.
func (c *Client) ShutdownServer(ctx context.Context, id string, timeout time.Duration) (engine.Operation, error) {
	var op engine.Operation
	err := c.do(ctx, "POST", "/servers/"+esc(id)+"/shutdown", c.auth, map[string]int{"timeout_seconds": int(timeout / time.Second)}, &op)
	return op, err
}

// MigrateServer moves a running server to node without stopping it.
func (c *Client) MigrateServer(ctx context.Context, id, node string) (engine.Operation, error) {
	var op engine.Operation
	err := c.do(ctx, "POST", "/servers/"+esc(id)+"/migrate", c.auth, map[string]string{"node": node}, &op)
	return op, err
}

// AttachDisk attaches an image as a disk of a server.
func (c *Client) AttachDisk(ctx context.Context, id string, req engine.ServerDiskRequest) (engine.Server, error) {
	var s engine.Server
	err := c.do(ctx, "POST", "/servers/"+esc(id)+"/disks", c.auth, req, &s)
	return s, err
}

// DetachDisk detaches disk index of a server; the image stays.
func (c *Client) DetachDisk(ctx context.Context, id string, index int) (engine.Server, error) {
	var s engine.Server
	err := c.do(ctx, "DELETE", "/servers/"+esc(id)+"/disks/"+strconv.Itoa(index), c.auth, nil, &s)
	return s, err
}

// InsertCDROM puts an ISO image into a server's CD-ROM drive.
func (c *Client) InsertCDROM(ctx context.Context, id, image string) (engine.Server, error) {
	var s engine.Server
	err := c.do(ctx, "PUT", "/servers/"+esc(id)+"/cdrom", c.auth, map[string]string{"image": image}, &s)
	return s, err
}

// EjectCDROM empties a server's CD-ROM drive.
func (c *Client) EjectCDROM(ctx context.Context, id string) (engine.Server, error) {
	var s engine.Server
	err := c.do(ctx, "DELETE", "/servers/"+esc(id)+"/cdrom", c.auth, nil, &s)
	return s, err
}

// Images lists the caller's images (admins: all).
func (c *Client) Images(ctx context.Context) ([]engine.Image, error) {
	return list[engine.Image](ctx, c, "/images")
}

// Image shows an image by ID or name.
func (c *Client) Image(ctx context.Context, id string) (engine.Image, error) {
	return get[engine.Image](ctx, c, "/images/"+esc(id))
}

// CreateImage creates an empty image, or with req.Upload starts an upload that
// UploadChunk or Upload fill.
func (c *Client) CreateImage(ctx context.Context, req engine.ImageRequest) (engine.Image, error) {
	var im engine.Image
	err := c.do(ctx, "POST", "/images", c.auth, req, &im)
	return im, err
}

// UpdateImage renames an image, marks it master or not, or sets its backup schedule.
func (c *Client) UpdateImage(ctx context.Context, id string, upd engine.ImageUpdate) (engine.Image, error) {
	var im engine.Image
	err := c.do(ctx, "PATCH", "/images/"+esc(id), c.auth, upd, &im)
	return im, err
}

// DeleteImage deletes an image.
func (c *Client) DeleteImage(ctx context.Context, id string) error {
	return c.do(ctx, "DELETE", "/images/"+esc(id), c.auth, nil, nil)
}

// ImageInfo is qemu-img's view of an image and its backing chain.
func (c *Client) ImageInfo(ctx context.Context, id string) (engine.ImageInfo, error) {
	return get[engine.ImageInfo](ctx, c, "/images/"+esc(id)+"/info")
}

// ResizeImage grows an image to size bytes.
func (c *Client) ResizeImage(ctx context.Context, id string, size int64) (engine.Image, error) {
	var im engine.Image
	err := c.do(ctx, "POST", "/images/"+esc(id)+"/resize", c.auth, map[string]int64{"size": size}, &im)
	return im, err
}

// ConvertImage converts an image into a new image of format, named name (the
// engine chooses when empty).
func (c *Client) ConvertImage(ctx context.Context, id, format, name string) (engine.Operation, error) {
	var op engine.Operation
	err := c.do(ctx, "POST", "/images/"+esc(id)+"/convert", c.auth, map[string]string{"format": format, "name": name}, &op)
	return op, err
}

// CloneResult is a linked clone (Image, made at once) or a full copy (Operation,
// whose Result is the new image when it succeeds).
type CloneResult struct {
	Image     *engine.Image     `json:"image,omitempty"`
	Operation *engine.Operation `json:"operation,omitempty"`
}

// CloneImage clones a master into a linked child, or makes a full copy.
func (c *Client) CloneImage(ctx context.Context, id string, req engine.CloneRequest) (CloneResult, error) {
	var r CloneResult
	err := c.do(ctx, "POST", "/images/"+esc(id)+"/clone", c.auth, req, &r)
	return r, err
}

// FlattenImage makes a child independent of its master.
func (c *Client) FlattenImage(ctx context.Context, id string) (engine.Operation, error) {
	var op engine.Operation
	err := c.do(ctx, "POST", "/images/"+esc(id)+"/flatten", c.auth, nil, &op)
	return op, err
}

// BackupImage backs an image up into the backup pool.
func (c *Client) BackupImage(ctx context.Context, id string) (engine.Operation, error) {
	var op engine.Operation
	err := c.do(ctx, "POST", "/images/"+esc(id)+"/backup", c.auth, nil, &op)
	return op, err
}

// Backups lists the caller's backups, of one image when image is not empty.
func (c *Client) Backups(ctx context.Context, image string) ([]engine.Backup, error) {
	path := "/backups"
	if image != "" {
		path += "?image=" + url.QueryEscape(image)
	}
	return list[engine.Backup](ctx, c, path)
}

// Backup shows a backup.
func (c *Client) Backup(ctx context.Context, id string) (engine.Backup, error) {
	return get[engine.Backup](ctx, c, "/backups/"+esc(id))
}

// DeleteBackup deletes a backup.
func (c *Client) DeleteBackup(ctx context.Context, id string) error {
	return c.do(ctx, "DELETE", "/backups/"+esc(id), c.auth, nil, nil)
}

// RestoreBackup restores a backup: as a new image when req.Name is set, otherwise in
// place over its image (or req.Image).
func (c *Client) RestoreBackup(ctx context.Context, id string, req engine.RestoreRequest) (engine.Operation, error) {
	var op engine.Operation
	err := c.do(ctx, "POST", "/backups/"+esc(id)+"/restore", c.auth, req, &op)
	return op, err
}

// Pools lists the storage pools with their usage.
func (c *Client) Pools(ctx context.Context) ([]engine.Pool, error) {
	return list[engine.Pool](ctx, c, "/pools")
}

// Pool shows a pool by number.
func (c *Client) Pool(ctx context.Context, id int) (engine.Pool, error) {
	return get[engine.Pool](ctx, c, "/pools/"+strconv.Itoa(id))
}

// CreatePool adds a storage pool (admins only).
func (c *Client) CreatePool(ctx context.Context, req engine.PoolRequest) (engine.Pool, error) {
	var p engine.Pool
	err := c.do(ctx, "POST", "/pools", c.auth, req, &p)
	return p, err
}

// UpdatePool changes a pool's snapshot schedule (admins only).
func (c *Client) UpdatePool(ctx context.Context, id int, upd engine.PoolUpdate) (engine.Pool, error) {
	var p engine.Pool
	err := c.do(ctx, "PATCH", "/pools/"+strconv.Itoa(id), c.auth, upd, &p)
	return p, err
}

// DeletePool forgets an empty pool (admins only).
func (c *Client) DeletePool(ctx context.Context, id int) error {
	return c.do(ctx, "DELETE", "/pools/"+strconv.Itoa(id), c.auth, nil, nil)
}

// PoolSnapshots lists a pool's snapshots.
func (c *Client) PoolSnapshots(ctx context.Context, id int) ([]engine.PoolSnapshot, error) {
	return list[engine.PoolSnapshot](ctx, c, "/pools/"+strconv.Itoa(id)+"/snapshots")
}

// SnapshotPool snapshots a pool now (admins only).
func (c *Client) SnapshotPool(ctx context.Context, id int) (engine.PoolSnapshot, error) {
	var sn engine.PoolSnapshot
	err := c.do(ctx, "POST", "/pools/"+strconv.Itoa(id)+"/snapshots", c.auth, nil, &sn)
	return sn, err
}

// DeletePoolSnapshot deletes a pool snapshot (admins only).
func (c *Client) DeletePoolSnapshot(ctx context.Context, id int, name string) error {
	return c.do(ctx, "DELETE", "/pools/"+strconv.Itoa(id)+"/snapshots/"+esc(name), c.auth, nil, nil)
}

// RestoreFromSnapshot restores one image (req.Image, by ID) from a pool snapshot,
// in place or, with req.Name, as a new image.
func (c *Client) RestoreFromSnapshot(ctx context.Context, id int, snapshot string, req engine.RestoreRequest) (engine.Operation, error) {
	var op engine.Operation
	err := c.do(ctx, "POST", "/pools/"+strconv.Itoa(id)+"/snapshots/"+esc(snapshot)+"/restore", c.auth, req, &op)
	return op, err
}

// RollbackPool rolls a whole pool back to a snapshot; confirm must be the pool's
// name (admins only).
func (c *Client) RollbackPool(ctx context.Context, id int, snapshot, confirm string) (engine.Pool, error) {
	var p engine.Pool
	err := c.do(ctx, "POST", "/pools/"+strconv.Itoa(id)+"/snapshots/"+esc(snapshot)+"/rollback", c.auth, map[string]string{"confirm": confirm}, &p)
	return p, err
}

// Operations lists the caller's operations, newest first.
func (c *Client) Operations(ctx context.Context) ([]engine.Operation, error) {
	return list[engine.Operation](ctx, c, "/operations")
}

// Operation shows an operation.
func (c *Client) Operation(ctx context.Context, id string) (engine.Operation, error) {
	return get[engine.Operation](ctx, c, "/operations/"+esc(id))
}

// WaitOperation shows an operation once it has ended, or when d has passed (the
// engine waits a minute at most): look at its State.
func (c *Client) WaitOperation(ctx context.Context, id string, d time.Duration) (engine.Operation, error) {
	ctx, cancel := context.WithTimeout(ctx, d+c.timeout)
	defer cancel()
	var op engine.Operation
	err := c.doWith(ctx, c.stream, "GET", "/operations/"+esc(id)+"?wait="+url.QueryEscape(d.String()), c.auth, nil, &op)
	return op, err
}

// CancelOperation cancels a running operation and shows it once it has stopped.
func (c *Client) CancelOperation(ctx context.Context, id string) (engine.Operation, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute+c.timeout)
	defer cancel()
	var op engine.Operation
	err := c.doWith(ctx, c.stream, "POST", "/operations/"+esc(id)+"/cancel", c.auth, nil, &op)
	return op, err
}

// Settings shows the engine's settings.
func (c *Client) Settings(ctx context.Context) (engine.Settings, error) {
	return get[engine.Settings](ctx, c, "/engine/settings")
}

// PutSettings replaces the engine's settings (admins only).
func (c *Client) PutSettings(ctx context.Context, st engine.Settings) (engine.Settings, error) {
	var out engine.Settings
	err := c.do(ctx, "PUT", "/engine/settings", c.auth, st, &out)
	return out, err
}

// Usage shows what a user's images and servers take: the caller's when user is
// empty, otherwise the user with that ID.
func (c *Client) Usage(ctx context.Context, user string) (engine.Usage, error) {
	if user == "" {
		return get[engine.Usage](ctx, c, "/usage")
	}
	return get[engine.Usage](ctx, c, "/users/"+esc(user)+"/usage")
}
