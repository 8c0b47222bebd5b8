package images

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/ui/layout"
	"github.com/cairn-os/cairn/ui/static"
)

// What this file holds is shared with the Pools and Backups areas, which show the
// same engine messages, owner names and operation progress.

// UserLister lists the engine's users; only admins may, so UserNames asks only for them.
type UserLister interface {
	Users(ctx context.Context, u engine.User) ([]engine.User, error)
}

// OperationReader reads one operation, to show its progress on the page an action
// redirects to (?op=ID).
type OperationReader interface {
	Operation(ctx context.Context, u engine.User, id string) (engine.Operation, error)
}

// StatusOf is the HTTP status a page answers an engine error with: the engine's
// sentinels as the API maps them, 500 for anything else.
func StatusOf(err error) int {
	switch {
	case errors.Is(err, engine.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, engine.ErrExists), errors.Is(err, engine.ErrInUse), errors.Is(err, engine.ErrQuota):
		return http.StatusConflict
	case errors.Is(err, engine.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, engine.ErrUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, engine.ErrForbidden):
		return http.StatusForbidden
	}
	return http.StatusInternalServerError
}

// msgInternal is what a person reads when the engine failed in a way its message
// was not written for.
const msgInternal = "The engine could not do this. Try again in a moment; the engine's log says what failed."

// Message is what a person reads for err: the engine's own message, which says what
// to do, for the errors it means people to read; a general one otherwise (the caller
// logs those).
func Message(err error) string {
	if StatusOf(err) == http.StatusInternalServerError {
		return msgInternal
	}
	return err.Error()
}

// Refuse logs err when it is not one of the engine's sentinels, and returns the
// status and message to answer it with.
func Refuse(logger *slog.Logger, r *http.Request, op string, err error) (int, string) {
	status := StatusOf(err)
	if status == http.StatusInternalServerError {
		logger.Error(op, "method", r.Method, "path", r.URL.Path, "err", err)
	}
	return status, Message(err)
}

// UserNames maps user IDs to names for showing owners: every user for an admin,
// the viewer alone for anyone else (who only ever sees their own things).
func UserNames(ctx context.Context, svc UserLister, v layout.Viewer) map[string]string {
	names := map[string]string{v.User.ID: v.User.Name}
	if v.User.Role != engine.RoleAdmin {
		return names
	}
	users, err := svc.Users(ctx, v.User)
	if err != nil {
		return names
	}
	for _, u := range users {
		names[u.ID] = u.Name
	}
	return names
}

// OwnerName is the name of user id in names, or the ID when the user is gone.
func OwnerName(names map[string]string, id string) string {
	if n, ok := names[id]; ok && n != "" {
		return n
	}
	return id
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
