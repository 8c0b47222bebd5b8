package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/cairn-os/cairn/supervisor/qimg"
	"github.com/cairn-os/cairn/supervisor/store"
	"github.com/cairn-os/cairn/supervisor/virt"
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
		var capacity, alloc uint64
		err := e.onNode(ctx, im.Node, func(c *virt.Conn) error {
			var err error
			capacity, alloc, err = c.LocalInfo(ctx, e.cfg.LocalDir, filepath.Base(im.Path))
			return err
		})
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
		return e.onNode(ctx, im.Node, func(c *virt.Conn) error {
			return c.LocalDelete(ctx, e.cfg.LocalDir, filepath.Base(im.Path))
		})
	}
	if im.State == ImageUploading {
		os.Remove(uploadPath(im))
	}
	if err := os.Remove(im.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
