package layout

import (
	"context"
	"errors"
	"net/http"

	"github.com/cairn-os/cairn/supervisor/engine"
)

// StatusOf is THE status a page answers an engine error with, in every area of the
// console: the engine's sentinels as the API maps them, 500 for anything else.
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
	case errors.Is(err, engine.ErrUnavailable):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// UserLister lists the engine's users; only admins may, so UserNames asks only for them.
type UserLister interface {
	Users(ctx context.Context, u engine.User) ([]engine.User, error)
}

// UserNames maps user IDs to names for showing owners: every user for an admin,
// the viewer alone for anyone else (who only ever sees their own things).
func UserNames(ctx context.Context, svc UserLister, v Viewer) map[string]string {
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
