// Package enginetest opens a real engine for the tests of the packages around it (the
// web console's areas, the CLI), so that each does not set one up by hand.
package enginetest

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/cairn-os/cairn/supervisor/engine"
)

// AdminPassword is the password of the admin that Open creates.
const AdminPassword = "admin-password"

// Open opens an engine on a fresh state directory (pool 0 is a dir pool in it), with
// a quiet log and cheap password hashing, closes it when the test ends, and returns
// it with its admin.
func Open(t testing.TB) (*engine.Engine, engine.User) {
	t.Helper()
	ctx := context.Background()
	e, err := engine.Open(ctx, engine.Config{StateDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	if _, err := e.EnsureAdmin(ctx, AdminPassword); err != nil {
		t.Fatal(err)
	}
	admin, err := e.Authenticate(ctx, engine.AdminName, AdminPassword)
	if err != nil {
		t.Fatal(err)
	}
	return e, admin
}

// User creates a user with role; its password is name + "-password".
func User(t testing.TB, e *engine.Engine, admin engine.User, name string, role engine.Role) engine.User {
	t.Helper()
	u, err := e.CreateUser(context.Background(), admin, name, name+"-password", role)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
