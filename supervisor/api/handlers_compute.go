package api

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/cairn-os/cairn/supervisor/console"
	"github.com/cairn-os/cairn/supervisor/engine"
)

// streamer is an answer the handler writes itself: a file download or a websocket.
type streamer func(w http.ResponseWriter, r *http.Request)

// uploadContentType is the body of an upload chunk: raw bytes at Upload-Offset.
const uploadContentType = "application/offset+octet-stream"

type deleteServerResponse struct {
	// Kept lists the disk images that were not deleted, and why.
	Kept []string `json:"kept,omitempty"`
}

type shutdownRequest struct {
	TimeoutSeconds int `json:"timeout_seconds"`
}

type migrateRequest struct {
	Node string `json:"node"`
}

type cdromRequest struct {
	Image string `json:"image"`
}

type resizeRequest struct {
	Size int64 `json:"size"`
}

type convertRequest struct {
	Format string `json:"format"`
	Name   string `json:"name"`
}

type rollbackRequest struct {
	Confirm string `json:"confirm"`
}

// cloneResponse is a linked clone (the new image, at once) or a full copy (the
// operation that makes it).
type cloneResponse struct {
	Image     *engine.Image     `json:"image,omitempty"`
	Operation *engine.Operation `json:"operation,omitempty"`
}

// decodeOptional reads a JSON body when there is one.
func decodeOptional(r *http.Request, v any) error {
	if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	return decodeJSON(r, v)
}

func id(r *http.Request) string { return r.PathValue("id") }

// Servers.

func (s *server) listServers(r *http.Request, c caller) (any, error) {
	return s.e.Servers(r.Context(), c.user)
}

func (s *server) createServer(r *http.Request, c caller) (any, error) {
	var req engine.ServerRequest
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	return s.e.CreateServer(r.Context(), c.user, req)
}

func (s *server) getServer(r *http.Request, c caller) (any, error) {
	return s.e.Server(r.Context(), c.user, id(r))
}

func (s *server) updateServer(r *http.Request, c caller) (any, error) {
	var upd engine.ServerUpdate
	if err := decodeJSON(r, &upd); err != nil {
		return nil, err
	}
	return s.e.UpdateServer(r.Context(), c.user, id(r), upd)
}

func (s *server) deleteServer(r *http.Request, c caller) (any, error) {
	disks := r.URL.Query().Get("disks")
	if disks != "" && disks != "keep" && disks != "delete" {
		return nil, fmt.Errorf("%w: disks must be keep or delete", engine.ErrInvalid)
	}
	kept, err := s.e.DeleteServer(r.Context(), c.user, id(r), disks == "delete")
	if err != nil {
		return nil, err
	}
	return deleteServerResponse{Kept: kept}, nil
}

func (s *server) startServer(r *http.Request, c caller) (any, error) {
	return s.e.StartServer(r.Context(), c.user, id(r))
}

func (s *server) shutdownServer(r *http.Request, c caller) (any, error) {
	var req shutdownRequest
	if err := decodeOptional(r, &req); err != nil {
		return nil, err
	}
	if req.TimeoutSeconds < 0 {
		return nil, fmt.Errorf("%w: timeout_seconds must not be negative", engine.ErrInvalid)
	}
	return s.e.ShutdownServer(r.Context(), c.user, id(r), time.Duration(req.TimeoutSeconds)*time.Second)
}

func (s *server) stopServer(r *http.Request, c caller) (any, error) {
	return s.e.StopServer(r.Context(), c.user, id(r))
}

func (s *server) rebootServer(r *http.Request, c caller) (any, error) {
	return s.e.RebootServer(r.Context(), c.user, id(r))
}

func (s *server) suspendServer(r *http.Request, c caller) (any, error) {
	return s.e.SuspendServer(r.Context(), c.user, id(r))
}

func (s *server) resumeServer(r *http.Request, c caller) (any, error) {
	return s.e.ResumeServer(r.Context(), c.user, id(r))
}

func (s *server) migrateServer(r *http.Request, c caller) (any, error) {
	var req migrateRequest
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	return s.e.MigrateServer(r.Context(), c.user, id(r), req.Node)
}

func (s *server) attachDisk(r *http.Request, c caller) (any, error) {
	var req engine.ServerDiskRequest
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	return s.e.AttachDisk(r.Context(), c.user, id(r), req)
}

func (s *server) detachDisk(r *http.Request, c caller) (any, error) {
	i, err := strconv.Atoi(r.PathValue("index"))
	if err != nil {
		return nil, fmt.Errorf("%w: the disk index is a number from 0", engine.ErrInvalid)
	}
	return s.e.DetachDisk(r.Context(), c.user, id(r), i)
}

func (s *server) insertCDROM(r *http.Request, c caller) (any, error) {
	var req cdromRequest
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.Image == "" {
		return nil, fmt.Errorf("%w: name the ISO image to insert; DELETE ejects", engine.ErrInvalid)
	}
	return s.e.SetCDROM(r.Context(), c.user, id(r), req.Image)
}

func (s *server) ejectCDROM(r *http.Request, c caller) (any, error) {
	return s.e.SetCDROM(r.Context(), c.user, id(r), "")
}

func (s *server) serverConsole(r *http.Request, c caller) (any, error) {
	kind := console.Kind(r.PathValue("kind"))
	t, _, err := s.e.ConsoleTarget(r.Context(), c.user, id(r), kind)
	if err != nil {
		return nil, err
	}
	return streamer(func(w http.ResponseWriter, r *http.Request) { console.Bridge(w, r, t, kind, s.log) }), nil
}

// Images.

func (s *server) listImages(r *http.Request, c caller) (any, error) {
	return s.e.Images(r.Context(), c.user)
}

func (s *server) createImage(r *http.Request, c caller) (any, error) {
	var req engine.ImageRequest
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	return s.e.CreateImage(r.Context(), c.user, req)
}

func (s *server) getImage(r *http.Request, c caller) (any, error) {
	return s.e.Image(r.Context(), c.user, id(r))
}

func (s *server) updateImage(r *http.Request, c caller) (any, error) {
	var upd engine.ImageUpdate
	if err := decodeJSON(r, &upd); err != nil {
		return nil, err
	}
	return s.e.UpdateImage(r.Context(), c.user, id(r), upd)
}

func (s *server) deleteImage(r *http.Request, c caller) (any, error) {
	return nil, s.e.DeleteImage(r.Context(), c.user, id(r))
}

func (s *server) imageInfo(r *http.Request, c caller) (any, error) {
	return s.e.ImageInfo(r.Context(), c.user, id(r))
}

func (s *server) downloadImage(r *http.Request, c caller) (any, error) {
	f, im, err := s.e.ImageFile(r.Context(), c.user, id(r))
	if err != nil {
		return nil, err
	}
	return streamer(func(w http.ResponseWriter, r *http.Request) {
		defer f.Close()
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename=%q`, im.Name+"."+extOf(im.Path)))
		// ServeContent answers Range requests, so an interrupted download resumes; the
		// file's own time (not the image's) lets If-Range see an in-place restore.
		mod := im.CreatedAt
		if fi, err := f.Stat(); err == nil {
			mod = fi.ModTime()
		}
		http.ServeContent(w, r, "", mod, f)
	}), nil
}

func extOf(path string) string {
	for i := len(path) - 1; i >= 0 && path[i] != '/'; i-- {
		if path[i] == '.' {
			return path[i+1:]
		}
	}
	return "img"
}

func (s *server) uploadStatus(r *http.Request, c caller) (any, error) {
	return s.e.UploadStatus(r.Context(), c.user, id(r))
}

func (s *server) uploadChunk(r *http.Request, c caller) (any, error) {
	off, err := strconv.ParseInt(r.Header.Get("Upload-Offset"), 10, 64)
	if err != nil || off < 0 {
		return nil, fmt.Errorf("%w: send the chunk's position as Upload-Offset: <bytes>; GET this URL tells where the upload stands", engine.ErrInvalid)
	}
	im, err := s.e.UploadChunk(r.Context(), c.user, id(r), off, r.Body)
	if err != nil {
		return nil, err
	}
	return im, nil
}

func (s *server) resizeImage(r *http.Request, c caller) (any, error) {
	var req resizeRequest
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	return s.e.ResizeImage(r.Context(), c.user, id(r), req.Size)
}

func (s *server) convertImage(r *http.Request, c caller) (any, error) {
	var req convertRequest
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	return s.e.ConvertImage(r.Context(), c.user, id(r), req.Format, req.Name)
}

func (s *server) cloneImage(r *http.Request, c caller) (any, error) {
	var req engine.CloneRequest
	if err := decodeOptional(r, &req); err != nil {
		return nil, err
	}
	im, op, err := s.e.CloneImage(r.Context(), c.user, id(r), req)
	if err != nil {
		return nil, err
	}
	if op != nil {
		return cloneResponse{Operation: op}, nil
	}
	return cloneResponse{Image: &im}, nil
}

func (s *server) flattenImage(r *http.Request, c caller) (any, error) {
	return s.e.FlattenImage(r.Context(), c.user, id(r))
}

func (s *server) backupImage(r *http.Request, c caller) (any, error) {
	return s.e.BackupImage(r.Context(), c.user, id(r))
}

// Backups.

func (s *server) listBackups(r *http.Request, c caller) (any, error) {
	return s.e.Backups(r.Context(), c.user, r.URL.Query().Get("image"))
}

func (s *server) getBackup(r *http.Request, c caller) (any, error) {
	return s.e.Backup(r.Context(), c.user, id(r))
}

func (s *server) deleteBackup(r *http.Request, c caller) (any, error) {
	return nil, s.e.DeleteBackup(r.Context(), c.user, id(r))
}

func (s *server) restoreBackup(r *http.Request, c caller) (any, error) {
	var req engine.RestoreRequest
	if err := decodeOptional(r, &req); err != nil {
		return nil, err
	}
	return s.e.RestoreBackup(r.Context(), c.user, id(r), req)
}

// Pools.

func (s *server) listPools(r *http.Request, c caller) (any, error) {
	return s.e.Pools(r.Context(), c.user)
}

func (s *server) createPool(r *http.Request, c caller) (any, error) {
	var req engine.PoolRequest
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	return s.e.CreatePool(r.Context(), c.user, req)
}

func (s *server) getPool(r *http.Request, c caller) (any, error) {
	return s.e.Pool(r.Context(), c.user, id(r))
}

func (s *server) updatePool(r *http.Request, c caller) (any, error) {
	var upd engine.PoolUpdate
	if err := decodeJSON(r, &upd); err != nil {
		return nil, err
	}
	return s.e.UpdatePool(r.Context(), c.user, id(r), upd)
}

func (s *server) deletePool(r *http.Request, c caller) (any, error) {
	return nil, s.e.DeletePool(r.Context(), c.user, id(r))
}

func (s *server) listSnapshots(r *http.Request, c caller) (any, error) {
	return s.e.PoolSnapshots(r.Context(), c.user, id(r))
}

func (s *server) createSnapshot(r *http.Request, c caller) (any, error) {
	return s.e.SnapshotPool(r.Context(), c.user, id(r))
}

func (s *server) deleteSnapshot(r *http.Request, c caller) (any, error) {
	return nil, s.e.DeletePoolSnapshot(r.Context(), c.user, id(r), r.PathValue("name"))
}

func (s *server) restoreFromSnapshot(r *http.Request, c caller) (any, error) {
	var req engine.RestoreRequest
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	return s.e.RestoreFromSnapshot(r.Context(), c.user, id(r), r.PathValue("name"), req)
}

func (s *server) rollbackPool(r *http.Request, c caller) (any, error) {
	var req rollbackRequest
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	if err := s.e.RollbackPool(r.Context(), c.user, id(r), r.PathValue("name"), req.Confirm); err != nil {
		return nil, err
	}
	return s.e.Pool(r.Context(), c.user, id(r))
}

// Operations, settings, usage.

func (s *server) listOperations(r *http.Request, c caller) (any, error) {
	return s.e.Operations(r.Context(), c.user)
}

// maxWait is the longest a GET of an operation waits for its end.
const maxWait = time.Minute

func (s *server) getOperation(r *http.Request, c caller) (any, error) {
	if w := r.URL.Query().Get("wait"); w != "" {
		d, err := time.ParseDuration(w)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("%w: wait is a duration like 30s", engine.ErrInvalid)
		}
		ctx, cancel := context.WithTimeout(r.Context(), min(d, maxWait))
		defer cancel()
		return s.e.WaitOperation(ctx, c.user, id(r))
	}
	return s.e.Operation(r.Context(), c.user, id(r))
}

func (s *server) cancelOperation(r *http.Request, c caller) (any, error) {
	return s.e.CancelOperation(r.Context(), c.user, id(r))
}

func (s *server) getSettings(r *http.Request, c caller) (any, error) {
	return s.e.Settings(r.Context(), c.user)
}

func (s *server) putSettings(r *http.Request, c caller) (any, error) {
	var st engine.Settings
	if err := decodeJSON(r, &st); err != nil {
		return nil, err
	}
	return s.e.UpdateSettings(r.Context(), c.user, st)
}

func (s *server) myUsage(r *http.Request, c caller) (any, error) {
	return s.e.UsageOf(r.Context(), c.user, "")
}

func (s *server) userUsage(r *http.Request, c caller) (any, error) {
	return s.e.UsageOf(r.Context(), c.user, id(r))
}
