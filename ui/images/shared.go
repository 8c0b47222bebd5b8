package images

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/ui/layout"
	"github.com/cairn-os/cairn/ui/static"
)

// What this file holds is shared with the Pools and Backups areas, which show the
// same engine messages, owner names and operation progress.

// OperationReader reads one operation, to show its progress on the page an action
// redirects to (?op=ID).
type OperationReader interface {
	Operation(ctx context.Context, u engine.User, id string) (engine.Operation, error)
}

// msgInternal is what a person reads when the engine failed in a way its message
// was not written for.
const msgInternal = "The engine could not do this. Try again in a moment; the engine's log says what failed."

// Message is what a person reads for err: the engine's own message, which says what
// to do, for the errors it means people to read; a general one otherwise (the caller
// logs those).
func Message(err error) string {
	if layout.StatusOf(err) == http.StatusInternalServerError {
		return msgInternal
	}
	return err.Error()
}

// Refuse logs err when it is not one of the engine's sentinels, and returns the
// status and message to answer it with.
func Refuse(logger *slog.Logger, r *http.Request, op string, err error) (int, string) {
	status := layout.StatusOf(err)
	if status == http.StatusInternalServerError {
		logger.Error(op, "method", r.Method, "path", r.URL.Path, "err", err)
	}
	return status, Message(err)
}

// CanWrite reports whether the viewer may change things (everyone but read-only users).
func CanWrite(v layout.Viewer) bool {
	return v.User.ID != "" && v.User.Role != engine.RoleReadonly
}

// IsAdmin reports whether the viewer is an admin.
func IsAdmin(v layout.Viewer) bool {
	return v.User.Role == engine.RoleAdmin
}

// Asset is the URL of one of the console's own static files: the content-hashed URL
// when the build embeds it, the plain one otherwise.
func Asset(name string) string {
	if p := static.Path(name); p != "" {
		return p
	}
	return static.Prefix + name
}

// Stylesheet is the storage areas' stylesheet, beside the console's app.css.
const Stylesheet = "storage.css"

// ReadOperation returns the operation named by the request's "op" query parameter,
// or nil when there is none or the viewer may not see it.
func ReadOperation(r *http.Request, svc OperationReader, u engine.User) *engine.Operation {
	id := r.URL.Query().Get("op")
	if id == "" {
		return nil
	}
	op, err := svc.Operation(r.Context(), u, id)
	if err != nil {
		return nil
	}
	return &op
}

// WithQuery returns path with one query parameter set: "/images?op=op-1".
func WithQuery(path, key, value string) string {
	return path + "?" + url.Values{key: {value}}.Encode()
}
