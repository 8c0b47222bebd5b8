package images

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/ui/layout"
)

// ChunkContentType is the body of an upload chunk: raw bytes at Upload-Offset, as
// the API takes them.
const ChunkContentType = "application/offset+octet-stream"

// OffsetHeader carries the position of a chunk's first byte in the file.
const OffsetHeader = "Upload-Offset"

// UploadAnswer is the JSON the upload routes answer with: where the upload stands,
// or why it was refused (Error), with the offset to resume from when there is one.
type UploadAnswer struct {
	ID     string `json:"id,omitempty"`
	Name   string `json:"name,omitempty"`
	State  string `json:"state,omitempty"`
	Offset int64  `json:"offset"`
	Size   int64  `json:"size,omitempty"`
	Error  string `json:"error,omitempty"`
}

func answerOf(im engine.Image) UploadAnswer {
	a := UploadAnswer{ID: im.ID, Name: im.Name, State: string(im.State)}
	if im.Upload != nil {
		a.Offset, a.Size = im.Upload.Offset, im.Upload.Size
	}
	return a
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// StartUpload serves POST /images/upload: a form with name, format, pool (a number;
// pool 0 when empty) and size (the file's size in bytes) records the image, ready to
// receive the file; the answer is JSON {id, offset}.
func (h *Handlers) StartUpload(w http.ResponseWriter, r *http.Request) {
	v, _ := layout.ViewerFrom(r.Context())
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, UploadAnswer{Error: "The upload form could not be read. Reload the page and try again."})
		return
	}
	f := r.PostForm
	size, err := strconv.ParseInt(f.Get("size"), 10, 64)
	if err != nil || size <= 0 {
		writeJSON(w, http.StatusBadRequest, UploadAnswer{Error: "Send the file's size in bytes (size), 1 or more."})
		return
	}
	req := engine.ImageRequest{Name: strings.TrimSpace(f.Get("name")), Format: f.Get("format"), Size: size, Upload: true}
	if p := f.Get("pool"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, UploadAnswer{Error: "Choose a pool from the list."})
			return
		}
		req.Pool = &n
	}
	im, err := h.svc.CreateImage(r.Context(), v.User, req)
	if err != nil {
		status, msg := Refuse(h.logger, r, "start upload", err)
		writeJSON(w, status, UploadAnswer{Error: msg})
		return
	}
	h.logger.Info("upload started", "image", im.ID, "size", size, "user", v.User.Name)
	writeJSON(w, http.StatusCreated, answerOf(im))
}

// UploadStatus serves GET /images/{id}/upload: where the upload stands, to resume
// from. An upload that has finished meanwhile answers state "ready".
func (h *Handlers) UploadStatus(w http.ResponseWriter, r *http.Request) {
	v, _ := layout.ViewerFrom(r.Context())
	id := r.PathValue("id")
	im, err := h.svc.UploadStatus(r.Context(), v.User, id)
	if errors.Is(err, engine.ErrInvalid) {
		// Not uploading any more: the last chunk went in but its answer was lost.
		if done, err2 := h.svc.Image(r.Context(), v.User, id); err2 == nil && done.State == engine.ImageReady {
			im, err = done, nil
		}
	}
	if err != nil {
		status, msg := Refuse(h.logger, r, "read upload", err)
		writeJSON(w, status, UploadAnswer{ID: id, Error: msg})
		return
	}
	writeJSON(w, http.StatusOK, answerOf(im))
}

// UploadChunk serves PATCH /images/{id}/upload: the body (ChunkContentType) is the
// file's bytes from the offset in the Upload-Offset header on, which must be where
// the upload stands. A wrong offset is 409 with the offset to resume from. When the
// last byte is in, the engine checks the file; its refusal (a wrong format, a
// backing file…) is 400 and the upload is discarded.
func (h *Handlers) UploadChunk(w http.ResponseWriter, r *http.Request) {
	v, _ := layout.ViewerFrom(r.Context())
	id := r.PathValue("id")
	off, ok := parseOffset(r.Header.Get(OffsetHeader))
	if !ok {
		writeJSON(w, http.StatusBadRequest, UploadAnswer{ID: id, Error: "Send the chunk's position in the file as " + OffsetHeader + ": <bytes>; GET this URL tells where the upload stands."})
		return
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != ChunkContentType {
		writeJSON(w, http.StatusUnsupportedMediaType, UploadAnswer{ID: id, Error: "Send the chunk's bytes as Content-Type: " + ChunkContentType + "."})
		return
	}
	im, err := h.svc.UploadChunk(r.Context(), v.User, id, off, r.Body)
	if err == nil {
		if im.State == engine.ImageReady {
			h.logger.Info("upload finished", "image", im.ID, "user", v.User.Name)
		}
		writeJSON(w, http.StatusOK, answerOf(im))
		return
	}
	status := layout.StatusOf(err)
	if status == http.StatusBadRequest {
		// A chunk re-sent after the answer to the last one was lost (browsers re-send
		// on a broken connection by themselves): the image is whole already.
		if done, err2 := h.svc.Image(r.Context(), v.User, id); err2 == nil && done.State == engine.ImageReady {
			writeJSON(w, http.StatusOK, answerOf(done))
			return
		}
	}
	a := UploadAnswer{ID: id, Error: Message(err)}
	if status == http.StatusInternalServerError && im.Upload != nil {
		// The body stopped part way (a dropped connection): what arrived is kept.
		h.logger.Warn("upload chunk cut off", "image", id, "offset", im.Upload.Offset, "err", err)
		status = http.StatusConflict
		a.Error = fmt.Sprintf("The chunk was cut off; the upload is at byte %d. Send the rest from there.", im.Upload.Offset)
	} else if status == http.StatusInternalServerError {
		h.logger.Error("upload chunk", "image", id, "err", err)
	}
	if status == http.StatusConflict {
		a.Offset = -1
		if cur, err := h.svc.UploadStatus(r.Context(), v.User, id); err == nil && cur.Upload != nil {
			a.Offset, a.Size, a.State = cur.Upload.Offset, cur.Upload.Size, string(cur.State)
		}
	}
	writeJSON(w, status, a)
}

// parseOffset reads an Upload-Offset header strictly: decimal digits only.
func parseOffset(s string) (int64, bool) {
	if s == "" || len(s) > 19 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// Download serves GET /images/{id}/download: the image's file, with ranges, so a
// browser can resume a broken download.
func (h *Handlers) Download(w http.ResponseWriter, r *http.Request) {
	v, _ := layout.ViewerFrom(r.Context())
	f, im, err := h.svc.ImageFile(r.Context(), v.User, r.PathValue("id"))
	if err != nil {
		h.fail(w, r, "download image", err)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		h.fail(w, r, "download image", fmt.Errorf("download image %s: %w", im.ID, err))
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/octet-stream")
	hd.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": FileName(im)}))
	// A strong validator, so that a resumed download (If-Range) only continues the
	// same file.
	hd.Set("ETag", fmt.Sprintf(`"%x-%x"`, fi.Size(), fi.ModTime().UnixNano()))
	hd.Set("Cache-Control", "private, no-cache")
	http.ServeContent(w, r, "", fi.ModTime(), f)
}

// FileName is the name a downloaded image is saved under: its name and the format's
// extension ("debian-12.qcow2", "disk.img").
func FileName(im engine.Image) string {
	ext := im.Format
	if ext == "raw" {
		ext = "img"
	}
	return im.Name + "." + ext
}
