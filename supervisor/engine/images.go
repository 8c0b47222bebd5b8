package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/cairn-os/cairn/supervisor/filecopy"
	"github.com/cairn-os/cairn/supervisor/qimg"
	"github.com/cairn-os/cairn/supervisor/store"
)

const bucketImages = "images"

// MaxImageSize is the largest image Cairn creates or accepts: 64 TiB.
const MaxImageSize = 64 << 40

// imageOp names an operation on an image for error messages.
func imageOp(verb, id string) string { return fmt.Sprintf("%s image %q", verb, id) }

func (e *Engine) tool() qimg.Tool { return qimg.Tool{Runner: e.cfg.Runner} }

// Images lists the caller's images (admins: all).
func (e *Engine) Images(ctx context.Context, u User) ([]Image, error) {
	if err := requireUser(u, "list images"); err != nil {
		return nil, err
	}
	all, err := store.List[Image](e.store, bucketImages)
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	servers, err := store.List[Server](e.store, bucketServers)
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	var out []Image
	for _, im := range all {
		if canSee(u, im.Owner) {
			out = append(out, e.decorate(im, all, servers))
		}
	}
	return out, nil
}

// decorate fills in the servers that use an image, its children and its size on disk.
func (e *Engine) decorate(im Image, all []Image, servers []Server) Image {
	im.UsedBy = usedBy(im.ID, servers)
	for _, c := range all {
		if c.Backing == im.ID {
			im.Children = append(im.Children, c.ID)
		}
	}
	if im.Node == "" && im.State == ImageReady {
		im.ActualSize = fileBytes(im.Path)
	}
	return im
}

func usedBy(imageID string, servers []Server) []string {
	var ids []string
	for _, s := range servers {
		if s.CDROM == imageID || slices.ContainsFunc(s.Disks, func(d ServerDisk) bool { return d.Image == imageID }) {
			ids = append(ids, s.ID)
		}
	}
	return ids
}

// Image shows one image the caller may see, by ID or by name among theirs.
func (e *Engine) Image(ctx context.Context, u User, id string) (Image, error) {
	if err := requireUser(u, "show image"); err != nil {
		return Image{}, err
	}
	all, err := store.List[Image](e.store, bucketImages)
	if err != nil {
		return Image{}, err
	}
	servers, err := store.List[Server](e.store, bucketServers)
	if err != nil {
		return Image{}, err
	}
	im, err := findImage(all, u, id)
	if err != nil {
		return Image{}, err
	}
	return e.decorate(im, all, servers), nil
}

// findImage finds the image id (or, among the caller's own, the one named id).
// Images the caller may not see are "not found".
func findImage(all []Image, u User, id string) (Image, error) {
	for _, im := range all {
		if im.ID == id && canSee(u, im.Owner) {
			return im, nil
		}
	}
	for _, im := range all {
		if im.Name == id && im.Owner == u.ID {
			return im, nil
		}
	}
	return Image{}, fmt.Errorf("image %q: %w", id, ErrNotFound)
}

func (e *Engine) getImage(tx *store.Tx, u User, id string) (Image, error) {
	all, err := store.ListTx[Image](tx, bucketImages)
	if err != nil {
		return Image{}, err
	}
	return findImage(all, u, id)
}

// checkImageName refuses a bad name or one the owner already uses.
func checkImageName(tx *store.Tx, owner, name, except string) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("%w: image name %q: %s", ErrInvalid, name, nameRule)
	}
	all, err := store.ListTx[Image](tx, bucketImages)
	if err != nil {
		return err
	}
	for _, im := range all {
		if im.Owner == owner && im.Name == name && im.ID != except {
			return fmt.Errorf("%w: you already have an image named %q (%s)", ErrExists, name, im.ID)
		}
	}
	return nil
}

// imagePath is where image id of format f lives in pool p.
func imagePath(p Pool, id string, f qimg.Format) string {
	return filepath.Join(p.Path, "images", id+"."+f.Ext())
}

// poolFor resolves the pool of a request: the given one or pool 0; it must be ready.
func (e *Engine) poolFor(id *int) (Pool, error) {
	n := 0
	if id != nil {
		n = *id
	}
	p, err := e.poolRecord(n)
	if err != nil {
		return Pool{}, err
	}
	if p.State != PoolReady {
		return Pool{}, fmt.Errorf("pool %d: %w: it is unavailable: %s", n, ErrInvalid, p.Problem)
	}
	if _, err := e.openedPool(n); err != nil {
		return Pool{}, err
	}
	return p, nil
}

// CreateImage makes an empty image (req.Size bytes, any format but iso) or, with
// req.Upload, an image to be uploaded in pieces (req.Size is the file's size).
func (e *Engine) CreateImage(ctx context.Context, u User, req ImageRequest) (Image, error) {
	op := fmt.Sprintf("create image %q", req.Name)
	if err := requireWriter(u, op); err != nil {
		return Image{}, err
	}
	f, err := qimg.ParseFormat(req.Format)
	if err != nil {
		return Image{}, fmt.Errorf("%s: %w: %v", op, ErrInvalid, err)
	}
	if req.Size <= 0 || req.Size > MaxImageSize {
		return Image{}, fmt.Errorf("%s: %w: size must be between 1 byte and 64 TiB (in bytes)", op, ErrInvalid)
	}
	if !req.Upload {
		if f == qimg.ISO {
			return Image{}, fmt.Errorf("%s: %w: an ISO cannot be made empty; upload one instead", op, ErrInvalid)
		}
		if req.Size%512 != 0 {
			return Image{}, fmt.Errorf("%s: %w: size must be a multiple of 512 bytes", op, ErrInvalid)
		}
	}
	p, err := e.poolFor(req.Pool)
	if err != nil {
		return Image{}, fmt.Errorf("%s: %w", op, err)
	}
	if opened, err := e.openedPool(p.ID); err == nil && req.Upload {
		if us, err := opened.Usage(ctx); err == nil && uint64(req.Size) > us.FreeBytes {
			return Image{}, fmt.Errorf("%s: %w: pool %d has %d bytes free, the file has %d", op, ErrQuota, p.ID, us.FreeBytes, req.Size)
		}
	}
	im := Image{
		ID: "i-" + randomHex(6), Name: req.Name, Owner: u.ID, Format: string(f), Pool: p.ID,
		VirtualSize: req.Size, CreatedAt: e.now(),
	}
	im.Path = imagePath(p, im.ID, f)
	if req.Upload {
		im.State = ImageUploading
		im.Upload = &Upload{Size: req.Size}
	} else {
		im.State = ImageBusy
	}
	err = e.store.Update(func(tx *store.Tx) error {
		if err := checkImageName(tx, u.ID, req.Name, ""); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		return tx.Put(bucketImages, im.ID, im)
	})
	if err != nil {
		return Image{}, err
	}
	if req.Upload {
		f, err := os.OpenFile(uploadPath(im), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
		if err != nil {
			e.store.Delete(bucketImages, im.ID)
			return Image{}, fmt.Errorf("%s: %w", op, err)
		}
		f.Close()
		e.log.Info("upload started", "image", im.ID, "size", req.Size, "by", u.Name)
		return im, nil
	}
	if err := e.tool().Create(ctx, im.Path, f, req.Size); err != nil {
		e.store.Delete(bucketImages, im.ID)
		return Image{}, fmt.Errorf("%s: %w", op, qimgErr(err))
	}
	return e.finishImage(ctx, im)
}

// finishImage reads a new file's sizes and makes the image ready.
func (e *Engine) finishImage(ctx context.Context, im Image) (Image, error) {
	info, err := e.tool().Info(ctx, im.Path)
	if err != nil {
		return Image{}, fmt.Errorf("image %s: %w", im.ID, err)
	}
	im.VirtualSize, im.ActualSize = info.VirtualSize, info.ActualSize
	im.State, im.Upload = ImageReady, nil
	err = e.store.Update(func(tx *store.Tx) error {
		if !tx.Has(bucketImages, im.ID) {
			return fmt.Errorf("image %s: %w: it was deleted meanwhile", im.ID, ErrNotFound)
		}
		return tx.Put(bucketImages, im.ID, im)
	})
	return im, err
}

// qimgErr maps the qimg and filecopy sentinels onto the engine's.
func qimgErr(err error) error {
	switch {
	case errors.Is(err, qimg.ErrInvalid), errors.Is(err, qimg.ErrCorrupt):
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	case errors.Is(err, qimg.ErrExists):
		return fmt.Errorf("%w: %v", ErrExists, err)
	case errors.Is(err, qimg.ErrInUse):
		return fmt.Errorf("%w: %v", ErrInUse, err)
	}
	return err
}

func uploadPath(im Image) string {
	return filepath.Join(filepath.Dir(im.Path), "."+im.ID+".upload")
}

// UploadStatus says how far an upload is, so a client can resume from there. A chunk
// still being received (the client may have given up on it already) is waited for,
// so the offset is where the next chunk must start.
func (e *Engine) UploadStatus(ctx context.Context, u User, id string) (Image, error) {
	im, err := e.Image(ctx, u, id)
	if err != nil {
		return Image{}, err
	}
	e.uploadsMu.Lock()
	busy := e.uploading[im.ID]
	e.uploadsMu.Unlock()
	if busy != nil {
		select {
		case <-busy:
		case <-ctx.Done():
			return Image{}, ctx.Err()
		case <-time.After(30 * time.Second):
		}
		if im, err = e.Image(ctx, u, id); err != nil {
			return Image{}, err
		}
	}
	if im.State != ImageUploading {
		return Image{}, fmt.Errorf("%s: %w: the image is %s, not being uploaded", imageOp("upload to", id), ErrInvalid, im.State)
	}
	if fi, err := os.Stat(uploadPath(im)); err == nil {
		im.Upload.Offset = fi.Size()
	}
	return im, nil
}

// UploadChunk writes body at offset into an upload. offset must be where the upload
// stands (the client asks UploadStatus after an interruption and resumes from there).
// When the last byte is in, the file is checked with qemu-img: its format must be
// the one declared, and an image with a backing file or encryption is refused.
func (e *Engine) UploadChunk(ctx context.Context, u User, id string, offset int64, body io.Reader) (Image, error) {
	op := imageOp("upload to", id)
	if err := requireWriter(u, op); err != nil {
		return Image{}, err
	}
	cur, err := e.Image(ctx, u, id)
	if err != nil {
		return Image{}, err
	}
	id = cur.ID
	// One writer per upload at a time: two clients appending at once would interleave.
	e.uploadsMu.Lock()
	if e.uploading[id] != nil {
		e.uploadsMu.Unlock()
		return Image{}, fmt.Errorf("%s: %w: another upload to it is under way; ask where it stands (GET) and resume from there", op, ErrInUse)
	}
	done := make(chan struct{})
	e.uploading[id] = done
	e.uploadsMu.Unlock()
	defer func() {
		e.uploadsMu.Lock()
		delete(e.uploading, id)
		e.uploadsMu.Unlock()
		close(done)
	}()
	im := cur
	if im.State != ImageUploading {
		return Image{}, fmt.Errorf("%s: %w: the image is %s, not being uploaded", op, ErrInvalid, im.State)
	}
	if im.Owner != u.ID && u.Role != RoleAdmin {
		return Image{}, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	tmp := uploadPath(im)
	f, err := os.OpenFile(tmp, os.O_WRONLY, 0)
	if err != nil {
		return Image{}, fmt.Errorf("%s: %w", op, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Image{}, fmt.Errorf("%s: %w", op, err)
	}
	// The file's size is the truth: a chunk cut off by a dropped connection leaves
	// what arrived, and the client resumes from there.
	have := fi.Size()
	if offset != have {
		return Image{}, fmt.Errorf("%s: %w: the upload is at byte %d, not %d; resume from %d", op, ErrConflictOffset, have, offset, have)
	}
	remaining := im.Upload.Size - have
	n, copyErr := io.Copy(&writerAt{f, have}, io.LimitReader(body, remaining+1))
	if n > remaining {
		f.Truncate(im.Upload.Size)
		return Image{}, fmt.Errorf("%s: %w: the file is larger than the %d bytes announced", op, ErrInvalid, im.Upload.Size)
	}
	have += n
	if err := f.Sync(); err != nil {
		return Image{}, fmt.Errorf("%s: %w", op, err)
	}
	e.store.Update(func(tx *store.Tx) error {
		var cur Image
		if err := tx.Get(bucketImages, id, &cur); err != nil || cur.Upload == nil {
			return err
		}
		cur.Upload.Offset = have
		return tx.Put(bucketImages, id, cur)
	})
	im.Upload.Offset = have
	if copyErr != nil {
		// The client is probably gone; if not, 409 tells it where to resume.
		return im, fmt.Errorf("%s: %w: the chunk was cut off (%v); the upload is at byte %d, resume from there", op, ErrConflictOffset, copyErr, have)
	}
	if have < im.Upload.Size {
		return im, nil
	}
	f.Close()
	return e.finishUpload(ctx, im, tmp)
}

// ErrConflictOffset is an upload chunk sent for the wrong offset (HTTP 409).
var ErrConflictOffset = fmt.Errorf("%w: wrong upload offset", ErrExists)

type writerAt struct {
	f   *os.File
	off int64
}

func (w *writerAt) Write(p []byte) (int, error) {
	n, err := w.f.WriteAt(p, w.off)
	w.off += int64(n)
	return n, err
}

func (e *Engine) finishUpload(ctx context.Context, im Image, tmp string) (Image, error) {
	op := imageOp("finish upload of", im.ID)
	info, err := e.tool().Info(ctx, tmp)
	if err == nil {
		err = qimg.CheckUpload(info, qimg.Format(im.Format))
	}
	if err != nil {
		// The bytes are all there but unusable: drop the upload so nothing half-made stays.
		os.Remove(tmp)
		e.store.Delete(bucketImages, im.ID)
		return Image{}, fmt.Errorf("%s: %w: %v; the upload was discarded", op, ErrInvalid, err)
	}
	if err := os.Rename(tmp, im.Path); err != nil {
		return Image{}, fmt.Errorf("%s: %w", op, err)
	}
	im.Format = string(info.Format)
	e.log.Info("upload finished", "image", im.ID, "format", im.Format, "size", im.Upload.Size)
	return e.finishImage(ctx, im)
}

// ImageFile opens an image's file for download. Node-local images cannot be
// downloaded through the admin.
func (e *Engine) ImageFile(ctx context.Context, u User, id string) (*os.File, Image, error) {
	im, err := e.Image(ctx, u, id)
	if err != nil {
		return nil, Image{}, err
	}
	if im.State != ImageReady {
		return nil, Image{}, fmt.Errorf("%s: %w: it is %s", imageOp("download", id), ErrInvalid, im.State)
	}
	if im.Node != "" {
		return nil, Image{}, fmt.Errorf("%s: %w: it is on node %s's local storage; copy it to a pool first", imageOp("download", id), ErrInvalid, im.Node)
	}
	f, err := os.Open(im.Path)
	if err != nil {
		return nil, Image{}, fmt.Errorf("%s: %w", imageOp("download", id), err)
	}
	return f, im, nil
}

// ImageInfo shows an image with qemu-img's view of its file and backing chain.
func (e *Engine) ImageInfo(ctx context.Context, u User, id string) (ImageInfo, error) {
	im, err := e.Image(ctx, u, id)
	if err != nil {
		return ImageInfo{}, err
	}
	if im.State != ImageReady {
		return ImageInfo{Image: im}, nil
	}
	if im.Node != "" {
		conn, err := e.hypervisor(ctx, im.Node)
		if err != nil {
			return ImageInfo{}, err
		}
		capacity, alloc, err := conn.LocalInfo(ctx, e.cfg.LocalDir, filepath.Base(im.Path))
		if err != nil {
			return ImageInfo{}, fmt.Errorf("%s: %w", imageOp("inspect", id), err)
		}
		link := ChainLink{Path: im.Path, Format: im.Format, VirtualSize: int64(capacity), ActualSize: int64(alloc)}
		if m, err := e.Image(ctx, u, im.Backing); err == nil {
			link.BackingFile = m.Path
			return ImageInfo{Image: im, Chain: []ChainLink{link, {Path: m.Path, Format: m.Format, VirtualSize: m.VirtualSize, ActualSize: m.ActualSize}}}, nil
		}
		return ImageInfo{Image: im, Chain: []ChainLink{link}}, nil
	}
	chain, err := e.tool().Chain(ctx, im.Path)
	if err != nil {
		return ImageInfo{}, fmt.Errorf("%s: %w", imageOp("inspect", id), err)
	}
	out := ImageInfo{Image: im}
	for _, c := range chain {
		out.Chain = append(out.Chain, ChainLink{Path: c.Filename, Format: string(c.Format), VirtualSize: c.VirtualSize, ActualSize: c.ActualSize, BackingFile: c.BackingFile})
	}
	return out, nil
}

// UpdateImage renames an image, marks it master (read-only; only an image in a
// shared pool that no server uses) or not (only without children), or sets its
// backup schedule.
func (e *Engine) UpdateImage(ctx context.Context, u User, id string, upd ImageUpdate) (Image, error) {
	op := imageOp("update", id)
	if err := requireWriter(u, op); err != nil {
		return Image{}, err
	}
	var im Image
	err := e.store.Update(func(tx *store.Tx) error {
		var err error
		if im, err = e.getImage(tx, u, id); err != nil {
			return err
		}
		if upd.Name != nil {
			if err := checkImageName(tx, im.Owner, *upd.Name, im.ID); err != nil {
				return fmt.Errorf("%s: %w", op, err)
			}
			im.Name = *upd.Name
		}
		if upd.BackupAt != nil {
			im.BackupAt = *upd.BackupAt
		}
		if upd.BackupKeep != nil {
			im.BackupKeep = *upd.BackupKeep
		}
		if im.BackupAt != "" && im.BackupKeep == 0 {
			im.BackupKeep = 7
		}
		if err := checkSchedule(im.BackupAt, im.BackupKeep); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		if upd.Master != nil && *upd.Master != im.Master {
			if err := e.checkMasterChange(tx, im, *upd.Master); err != nil {
				return fmt.Errorf("%s: %w", op, err)
			}
			im.Master = *upd.Master
		}
		return tx.Put(bucketImages, im.ID, im)
	})
	if err != nil {
		return Image{}, err
	}
	if upd.Master != nil && im.Node == "" {
		// A master is read-only on disk too, so nothing writes to it by mistake.
		mode := os.FileMode(0o640)
		if im.Master {
			mode = 0o440
		}
		if err := os.Chmod(im.Path, mode); err != nil {
			e.log.Warn("chmod image failed", "image", im.ID, "err", err)
		}
	}
	return e.Image(ctx, u, im.ID)
}

func (e *Engine) checkMasterChange(tx *store.Tx, im Image, master bool) error {
	if im.State != ImageReady {
		return fmt.Errorf("%w: the image is %s", ErrInvalid, im.State)
	}
	if master {
		if im.Node != "" {
			return fmt.Errorf("%w: masters live on shared pools; this image is on node %s's local storage", ErrInvalid, im.Node)
		}
		if p, err := e.poolRecord(im.Pool); err == nil && !p.Shared {
			return fmt.Errorf("%w: masters live on shared pools; pool %d is not shared", ErrInvalid, im.Pool)
		}
		if im.Format == string(qimg.ISO) {
			return fmt.Errorf("%w: an ISO is read-only already; attach it as a CD-ROM", ErrInvalid)
		}
		servers, err := store.ListTx[Server](tx, bucketServers)
		if err != nil {
			return err
		}
		if ids := usedBy(im.ID, servers); len(ids) > 0 {
			return fmt.Errorf("%w: servers %v use it; detach it first (a master is read-only)", ErrInUse, ids)
		}
		return nil
	}
	children, err := e.dependents(tx, im.ID)
	if err != nil {
		return err
	}
	if len(children) > 0 {
		return fmt.Errorf("%w: %s depend on it; delete or flatten them first", ErrInUse, children)
	}
	return nil
}

// dependents lists the images and backups that need master id.
func (e *Engine) dependents(tx *store.Tx, id string) (string, error) {
	all, err := store.ListTx[Image](tx, bucketImages)
	if err != nil {
		return "", err
	}
	var kids []string
	for _, c := range all {
		if c.Backing == id {
			kids = append(kids, c.ID)
		}
	}
	backups, err := store.ListTx[Backup](tx, bucketBackups)
	if err != nil {
		return "", err
	}
	var bks []string
	for _, b := range backups {
		if b.Backing == id {
			bks = append(bks, b.ID)
		}
	}
	switch {
	case len(kids) > 0 && len(bks) > 0:
		return fmt.Sprintf("child images %v and backups %v", kids, bks), nil
	case len(kids) > 0:
		return fmt.Sprintf("child images %v", kids), nil
	case len(bks) > 0:
		return fmt.Sprintf("backups %v of its children", bks), nil
	}
	return "", nil
}

// ResizeImage grows an image to size bytes. Servers that use it must be shut off.
func (e *Engine) ResizeImage(ctx context.Context, u User, id string, size int64) (Image, error) {
	op := imageOp("resize", id)
	if err := requireWriter(u, op); err != nil {
		return Image{}, err
	}
	if size <= 0 || size > MaxImageSize || size%512 != 0 {
		return Image{}, fmt.Errorf("%s: %w: size must be a multiple of 512 bytes up to 64 TiB", op, ErrInvalid)
	}
	im, err := e.lockImage(u, id, op, lockWrite)
	if err != nil {
		return Image{}, err
	}
	defer e.unlockImage(im)
	if im.Node != "" {
		return Image{}, fmt.Errorf("%s: %w: it is on node %s's local storage; resize it from inside the guest's disk tools after copying it to a pool", op, ErrInvalid, im.Node)
	}
	if err := e.tool().Resize(ctx, im.Path, qimg.Format(im.Format), size); err != nil {
		return Image{}, fmt.Errorf("%s: %w", op, qimgErr(err))
	}
	e.unlockImage(im)
	return e.finishImage(ctx, im)
}

// lockKind is how an operation uses an image.
type lockKind int

const (
	// lockRead reads the image: servers may use it only while shut off; masters are fine.
	lockRead lockKind = iota
	// lockWrite changes the image: not a master, no running server.
	lockWrite
)

// lockImage checks that the image is ready and usable for the kind of work, and marks
// it busy until unlockImage.
func (e *Engine) lockImage(u User, id, op string, kind lockKind) (Image, error) {
	var im Image
	err := e.store.Update(func(tx *store.Tx) error {
		var err error
		if im, err = e.getImage(tx, u, id); err != nil {
			return err
		}
		if kind == lockWrite {
			if err := requireOwnerOrAdmin(u, im.Owner, op); err != nil {
				return err
			}
		}
		if im.State != ImageReady {
			return fmt.Errorf("%s: %w: the image is %s; wait for that to end", op, ErrInUse, im.State)
		}
		if kind == lockWrite && im.Master {
			return fmt.Errorf("%s: %w: it is a master (read-only); clone it, or unmark it first", op, ErrInvalid)
		}
		servers, err := store.ListTx[Server](tx, bucketServers)
		if err != nil {
			return err
		}
		for _, s := range servers {
			if slices.Contains(usedBy(im.ID, []Server{s}), s.ID) && s.State != ServerShutoff && s.State != ServerCrashed {
				return fmt.Errorf("%s: %w: server %s (%s) uses it and is %s; shut it off first", op, ErrInUse, s.Name, s.ID, s.State)
			}
		}
		im.State = ImageBusy
		return tx.Put(bucketImages, im.ID, im)
	})
	if err != nil {
		return Image{}, err
	}
	im.State = ImageReady
	return im, nil
}

// unlockImage makes a locked image ready again (it may have been deleted meanwhile).
func (e *Engine) unlockImage(im Image) {
	e.store.Update(func(tx *store.Tx) error {
		var cur Image
		if err := tx.Get(bucketImages, im.ID, &cur); err != nil {
			return nil
		}
		if cur.State == ImageBusy {
			cur.State = ImageReady
		}
		return tx.Put(bucketImages, im.ID, cur)
	})
}

func requireOwnerOrAdmin(u User, owner, op string) error {
	if u.Role == RoleAdmin || u.ID == owner {
		return nil
	}
	return fmt.Errorf("%s: %w: only its owner or an admin may change it", op, ErrForbidden)
}

// newImageRecord records a new busy image (for work that writes it) after checking
// the name; the caller finishes it or removes it.
func (e *Engine) newImageRecord(u User, op, name string, p Pool, f qimg.Format, node string) (Image, error) {
	im := Image{ID: "i-" + randomHex(6), Name: name, Owner: u.ID, Format: string(f), Pool: p.ID, State: ImageBusy, CreatedAt: e.now()}
	if node != "" {
		im.Pool, im.Node = -1, node
		im.Path = filepath.Join(e.cfg.LocalDir, im.ID+"."+f.Ext())
	} else {
		im.Path = imagePath(p, im.ID, f)
	}
	err := e.store.Update(func(tx *store.Tx) error {
		if err := checkImageName(tx, u.ID, name, ""); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		return tx.Put(bucketImages, im.ID, im)
	})
	return im, err
}

// dropImage removes a half-made image: its record and file.
func (e *Engine) dropImage(im Image) {
	os.Remove(im.Path)
	e.store.Delete(bucketImages, im.ID)
}

// ConvertImage converts an image into a new image of another format (V2V) in the
// same pool, as an operation.
func (e *Engine) ConvertImage(ctx context.Context, u User, id, format, name string) (Operation, error) {
	op := imageOp("convert", id)
	if err := requireWriter(u, op); err != nil {
		return Operation{}, err
	}
	f, err := qimg.ParseFormat(format)
	if err != nil {
		return Operation{}, fmt.Errorf("%s: %w: %v", op, ErrInvalid, err)
	}
	if f == qimg.ISO {
		return Operation{}, fmt.Errorf("%s: %w: nothing converts into an ISO; choose qcow2, raw, vmdk, vdi or vhdx", op, ErrInvalid)
	}
	src, err := e.lockImage(u, id, op, lockRead)
	if err != nil {
		return Operation{}, err
	}
	if src.Node != "" {
		e.unlockImage(src)
		return Operation{}, fmt.Errorf("%s: %w: it is on node %s's local storage", op, ErrInvalid, src.Node)
	}
	if name == "" {
		name = src.Name + "-" + string(f)
	}
	p, err := e.poolFor(&src.Pool)
	if err == nil {
		var dst Image
		dst, err = e.newImageRecord(u, op, name, p, f, "")
		if err == nil {
			return e.startOp(u.ID, "convert", src.ID, func(ctx context.Context, pr progress) (string, error) {
				defer e.unlockImage(src)
				if err := e.tool().Convert(ctx, src.Path, qimg.Format(src.Format), dst.Path, f, pr.Fraction("converting")); err != nil {
					e.dropImage(dst)
					return "", err
				}
				if _, err := e.finishImage(ctx, dst); err != nil {
					e.dropImage(dst)
					return "", err
				}
				return dst.ID, nil
			}), nil
		}
	}
	e.unlockImage(src)
	return Operation{}, err
}

// CloneImage makes a new image from id: a qcow2 child of a master through a backing
// file (instant; on a node's local storage when req.Node is set), or a full copy as
// an operation. It returns the new image (children) or the operation (copies).
func (e *Engine) CloneImage(ctx context.Context, u User, id string, req CloneRequest) (Image, *Operation, error) {
	op := imageOp("clone", id)
	if err := requireWriter(u, op); err != nil {
		return Image{}, nil, err
	}
	src, err := e.Image(ctx, u, id)
	if err != nil {
		return Image{}, nil, err
	}
	linked := src.Master
	if req.Linked != nil {
		linked = *req.Linked
	}
	if req.Name == "" {
		req.Name = src.Name + "-" + randomHex(2)
	}
	if linked {
		im, err := e.cloneLinked(ctx, u, src, req)
		return im, nil, err
	}
	if req.Node != "" {
		return Image{}, nil, fmt.Errorf("%s: %w: full copies go to a pool; only linked clones go to a node's local storage", op, ErrInvalid)
	}
	o, err := e.copyImage(ctx, u, src, req)
	if err != nil {
		return Image{}, nil, err
	}
	return Image{}, &o, nil
}

func (e *Engine) cloneLinked(ctx context.Context, u User, m Image, req CloneRequest) (Image, error) {
	op := imageOp("clone", m.ID)
	if !m.Master {
		return Image{}, fmt.Errorf("%s: %w: only a master can have linked children; mark it master first or make a full copy (linked: false)", op, ErrInvalid)
	}
	if m.State != ImageReady {
		return Image{}, fmt.Errorf("%s: %w: the master is %s", op, ErrInUse, m.State)
	}
	var p Pool
	node := req.Node
	if node == "" {
		pid := m.Pool
		if req.Pool != nil {
			pid = *req.Pool
		}
		var err error
		if p, err = e.poolFor(&pid); err != nil {
			return Image{}, fmt.Errorf("%s: %w", op, err)
		}
	} else {
		n, err := e.Node(ctx, u, node)
		if err != nil {
			return Image{}, fmt.Errorf("%s: %w", op, err)
		}
		if n.State != NodeReady {
			return Image{}, fmt.Errorf("%s: %w: node %s is %s", op, ErrInvalid, n.ID, n.State)
		}
		node = n.ID
	}
	child, err := e.newImageRecord(u, op, req.Name, p, qimg.QCOW2, node)
	if err != nil {
		return Image{}, err
	}
	child.Backing = m.ID
	child.VirtualSize = m.VirtualSize
	backingFmt := qimg.Format(m.Format).QemuName()
	if node != "" {
		conn, err := e.hypervisor(ctx, node)
		if err == nil {
			child.Path, err = conn.LocalCreateChild(ctx, e.cfg.LocalDir, filepath.Base(child.Path), m.Path, backingFmt)
		}
		if err != nil {
			e.store.Delete(bucketImages, child.ID)
			return Image{}, fmt.Errorf("%s on node %s: %w", op, node, err)
		}
		child.State = ImageReady
		if err := e.store.Put(bucketImages, child.ID, child); err != nil {
			return Image{}, err
		}
		e.log.Info("image cloned", "image", child.ID, "master", m.ID, "node", node, "by", u.Name)
		return child, nil
	}
	if err := e.store.Put(bucketImages, child.ID, child); err != nil {
		return Image{}, err
	}
	if err := e.tool().CreateChild(ctx, child.Path, m.Path, qimg.Format(m.Format)); err != nil {
		e.dropImage(child)
		return Image{}, fmt.Errorf("%s: %w", op, qimgErr(err))
	}
	im, err := e.finishImage(ctx, child)
	if err != nil {
		e.dropImage(child)
		return Image{}, err
	}
	e.log.Info("image cloned", "image", im.ID, "master", m.ID, "pool", im.Pool, "by", u.Name)
	return im, nil
}

func (e *Engine) copyImage(ctx context.Context, u User, src Image, req CloneRequest) (Operation, error) {
	op := imageOp("copy", src.ID)
	if src.Node != "" {
		return Operation{}, fmt.Errorf("%s: %w: it is on node %s's local storage", op, ErrInvalid, src.Node)
	}
	src, err := e.lockImage(u, src.ID, op, lockRead)
	if err != nil {
		return Operation{}, err
	}
	pid := src.Pool
	if req.Pool != nil {
		pid = *req.Pool
	}
	p, err := e.poolFor(&pid)
	if err != nil {
		e.unlockImage(src)
		return Operation{}, fmt.Errorf("%s: %w", op, err)
	}
	dst, err := e.newImageRecord(u, op, req.Name, p, qimg.Format(src.Format), "")
	if err != nil {
		e.unlockImage(src)
		return Operation{}, err
	}
	dst.Backing = src.Backing
	return e.startOp(u.ID, "copy", src.ID, func(ctx context.Context, pr progress) (string, error) {
		defer e.unlockImage(src)
		if _, err := filecopy.Copy(ctx, src.Path, dst.Path, pr.Bytes("copying")); err != nil {
			e.dropImage(dst)
			return "", err
		}
		os.Chmod(dst.Path, 0o640)
		if err := e.store.Put(bucketImages, dst.ID, dst); err != nil {
			e.dropImage(dst)
			return "", err
		}
		if _, err := e.finishImage(ctx, dst); err != nil {
			e.dropImage(dst)
			return "", err
		}
		return dst.ID, nil
	}), nil
}

// FlattenImage makes a child independent of its master, as an operation.
func (e *Engine) FlattenImage(ctx context.Context, u User, id string) (Operation, error) {
	op := imageOp("flatten", id)
	if err := requireWriter(u, op); err != nil {
		return Operation{}, err
	}
	im, err := e.lockImage(u, id, op, lockWrite)
	if err != nil {
		return Operation{}, err
	}
	if im.Backing == "" {
		e.unlockImage(im)
		return Operation{}, fmt.Errorf("%s: %w: it has no master to be flattened from", op, ErrInvalid)
	}
	if im.Node != "" {
		e.unlockImage(im)
		return Operation{}, fmt.Errorf("%s: %w: it is on node %s's local storage; flatten works on pool images", op, ErrInvalid, im.Node)
	}
	return e.startOp(u.ID, "flatten", im.ID, func(ctx context.Context, pr progress) (string, error) {
		defer e.unlockImage(im)
		if err := e.tool().Flatten(ctx, im.Path, pr.Fraction("flattening")); err != nil {
			return "", err
		}
		err := e.store.Update(func(tx *store.Tx) error {
			var cur Image
			if err := tx.Get(bucketImages, im.ID, &cur); err != nil {
				return err
			}
			cur.Backing = ""
			return tx.Put(bucketImages, im.ID, cur)
		})
		return im.ID, err
	}), nil
}

// DeleteImage deletes an image and its file. A master with children (or backups of
// children), an image a server uses, and an image under way are refused.
func (e *Engine) DeleteImage(ctx context.Context, u User, id string) error {
	op := imageOp("delete", id)
	if err := requireWriter(u, op); err != nil {
		return err
	}
	var im Image
	err := e.store.Update(func(tx *store.Tx) error {
		var err error
		if im, err = e.getImage(tx, u, id); err != nil {
			return err
		}
		if err := requireOwnerOrAdmin(u, im.Owner, op); err != nil {
			return err
		}
		if im.State == ImageBusy {
			return fmt.Errorf("%s: %w: an operation is using it; wait for it or cancel it", op, ErrInUse)
		}
		deps, err := e.dependents(tx, im.ID)
		if err != nil {
			return err
		}
		if deps != "" {
			return fmt.Errorf("%s: %w: it is a master and %s depend on it; delete or flatten them first", op, ErrInUse, deps)
		}
		servers, err := store.ListTx[Server](tx, bucketServers)
		if err != nil {
			return err
		}
		if ids := usedBy(im.ID, servers); len(ids) > 0 {
			return fmt.Errorf("%s: %w: servers %v use it; detach it or delete them first", op, ErrInUse, ids)
		}
		return tx.Delete(bucketImages, im.ID)
	})
	if err != nil {
		return err
	}
	if err := e.removeImageFile(ctx, im); err != nil {
		e.log.Warn("remove image file failed", "image", im.ID, "path", im.Path, "err", err)
	}
	e.log.Info("image deleted", "image", im.ID, "name", im.Name, "by", u.Name)
	return nil
}

func (e *Engine) removeImageFile(ctx context.Context, im Image) error {
	if im.Node != "" {
		conn, err := e.hypervisor(ctx, im.Node)
		if err != nil {
			return err
		}
		return conn.LocalDelete(ctx, e.cfg.LocalDir, filepath.Base(im.Path))
	}
	if im.State == ImageUploading {
		os.Remove(uploadPath(im))
	}
	if err := os.Remove(im.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
