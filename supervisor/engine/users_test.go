package engine

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestEnsureAdminFirstAndLaterBoot(t *testing.T) {
	ctx := context.Background()
	te := openTest(t, "", nil)
	if _, err := te.EnsureAdmin(ctx, "short"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("short first password: %v, want ErrInvalid", err)
	}
	created, err := te.EnsureAdmin(ctx, "first-boot-pw")
	if err != nil || !created {
		t.Fatalf("first boot: created=%v err=%v", created, err)
	}
	u, err := te.Authenticate(ctx, "admin", "first-boot-pw")
	if err != nil || u.Role != RoleAdmin || u.Name != "admin" {
		t.Fatalf("authenticate: %+v, %v", u, err)
	}
	dir := te.dir
	te.Close()

	// A reboot hands the password from the boot config again, maybe a new one: the
	// stored one stays.
	te = openTest(t, dir, nil)
	created, err = te.EnsureAdmin(ctx, "second-boot-pw")
	if err != nil || created {
		t.Fatalf("later boot: created=%v err=%v", created, err)
	}
	if _, err := te.Authenticate(ctx, "admin", "first-boot-pw"); err != nil {
		t.Fatalf("first password after reboot: %v", err)
	}
	_, wrong := te.Authenticate(ctx, "admin", "second-boot-pw")
	_, unknown := te.Authenticate(ctx, "nobody", "second-boot-pw")
	if !errors.Is(wrong, ErrUnauthorized) || !errors.Is(unknown, ErrUnauthorized) {
		t.Fatalf("wrong password: %v; unknown user: %v; want ErrUnauthorized", wrong, unknown)
	}
	if wrong.Error() != unknown.Error() {
		t.Fatalf("wrong password and unknown user differ: %q vs %q", wrong, unknown)
	}
}

func TestSessionsSurviveReopenAndExpire(t *testing.T) {
	ctx := context.Background()
	te := openTest(t, "", nil)
	admin := te.admin(t)
	s, err := te.CreateSession(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.ID) < 43 || s.CSRF == "" || s.CSRF == s.ID {
		t.Fatalf("session %+v: want a 32-byte ID and a separate CSRF token", s)
	}
	dir, c := te.dir, te.clock
	te.Close()
	te = openTest(t, dir, c)
	u, got, err := te.SessionUser(ctx, s.ID)
	if err != nil || u.ID != admin.ID || got.CSRF != s.CSRF {
		t.Fatalf("session after reopen: %+v %+v %v", u, got, err)
	}
	if _, _, err := te.SessionUser(ctx, s.ID+"x"); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("unknown session: %v", err)
	}
	c.Advance(SessionLifetime + time.Second)
	if _, _, err := te.SessionUser(ctx, s.ID); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("expired session: %v, want ErrUnauthorized", err)
	}
	s2, _ := te.CreateSession(ctx, admin)
	if err := te.DeleteSession(ctx, s2.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := te.SessionUser(ctx, s2.ID); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("deleted session: %v", err)
	}
}

func TestTokens(t *testing.T) {
	ctx := context.Background()
	te := openTest(t, "", nil)
	admin := te.admin(t)
	bob := te.user(t, admin, "bob", RoleUser)
	ro := te.user(t, admin, "reader", RoleReadonly)

	tok, err := te.CreateToken(ctx, bob, "laptop")
	if err != nil {
		t.Fatal(err)
	}
	if len(tok.Secret) < 40 || tok.Secret[:6] != "cairn_" {
		t.Fatalf("secret %q", tok.Secret)
	}
	if _, err := te.CreateToken(ctx, bob, ""); !errors.Is(err, ErrInvalid) {
		t.Fatalf("token without name: %v", err)
	}
	if _, err := te.CreateToken(ctx, ro, "x"); !errors.Is(err, ErrForbidden) {
		t.Fatalf("readonly token: %v, want ErrForbidden", err)
	}
	u, err := te.TokenUser(ctx, tok.Secret)
	if err != nil || u.ID != bob.ID {
		t.Fatalf("token user = %+v, %v", u, err)
	}
	for _, bad := range []string{"", "cairn_", tok.Secret + "x", tok.Secret[6:]} {
		if _, err := te.TokenUser(ctx, bad); !errors.Is(err, ErrUnauthorized) {
			t.Errorf("secret %q: %v, want ErrUnauthorized", bad, err)
		}
	}
	list, _ := te.Tokens(ctx, bob)
	if len(list) != 1 || list[0].Secret != "" || list[0].LastUsed.IsZero() {
		t.Fatalf("tokens = %+v: want one, without secret, with last use", list)
	}
	if other, _ := te.Tokens(ctx, admin); len(other) != 0 {
		t.Fatalf("admin sees bob's tokens in its own list: %+v", other)
	}
	carol := te.user(t, admin, "carol", RoleUser)
	if err := te.DeleteToken(ctx, carol, tok.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("carol deleting bob's token: %v, want ErrNotFound", err)
	}
	// Tokens survive a restart; deleting the user deletes them.
	dir := te.dir
	te.Close()
	te = openTest(t, dir, nil)
	if _, err := te.TokenUser(ctx, tok.Secret); err != nil {
		t.Fatalf("token after reopen: %v", err)
	}
	if err := te.DeleteUser(ctx, admin, "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := te.TokenUser(ctx, tok.Secret); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("token of a deleted user: %v", err)
	}
}

func TestUserRules(t *testing.T) {
	ctx := context.Background()
	te := openTest(t, "", nil)
	admin := te.admin(t)

	for _, name := range []string{"", "a", "Bob", "-bob", "bob smith", "bob/x", string(make([]byte, 65))} {
		if _, err := te.CreateUser(ctx, admin, name, "long-enough", RoleUser); !errors.Is(err, ErrInvalid) {
			t.Errorf("name %q: %v, want ErrInvalid", name, err)
		}
	}
	for _, name := range []string{"bo", "bob.smith", "b_o-b@example.org", "0x"} {
		if _, err := te.CreateUser(ctx, admin, name, "long-enough", RoleUser); err != nil {
			t.Errorf("name %q: %v", name, err)
		}
	}
	if _, err := te.CreateUser(ctx, admin, "dave", "short", RoleUser); !errors.Is(err, ErrInvalid) {
		t.Errorf("short password: %v", err)
	}
	if _, err := te.CreateUser(ctx, admin, "dave", "long-enough", "root"); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad role: %v", err)
	}
	if _, err := te.CreateUser(ctx, admin, "bo", "long-enough", RoleUser); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate: %v, want ErrExists", err)
	}

	bob := te.user(t, admin, "bob", RoleUser)
	ro := te.user(t, admin, "reader", RoleReadonly)
	for name, u := range map[string]User{"user": bob, "readonly": ro} {
		if _, err := te.CreateUser(ctx, u, "eve", "long-enough", RoleAdmin); !errors.Is(err, ErrForbidden) {
			t.Errorf("%s creates a user: %v", name, err)
		}
		if _, err := te.Users(ctx, u); !errors.Is(err, ErrForbidden) {
			t.Errorf("%s lists users: %v", name, err)
		}
		if err := te.DeleteUser(ctx, u, admin.ID); !errors.Is(err, ErrForbidden) {
			t.Errorf("%s deletes admin: %v", name, err)
		}
	}
	if got, err := te.User(ctx, bob, bob.ID); err != nil || got.Name != "bob" {
		t.Errorf("bob sees himself: %+v %v", got, err)
	}
	if _, err := te.User(ctx, bob, admin.ID); !errors.Is(err, ErrForbidden) {
		t.Errorf("bob sees admin: %v", err)
	}
	if got, err := te.User(ctx, admin, "bob"); err != nil || got.ID != bob.ID {
		t.Errorf("admin finds bob by name: %+v %v", got, err)
	}
	if _, err := te.User(ctx, admin, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown user: %v", err)
	}

	// The last admin can neither delete itself nor stop being admin.
	if err := te.DeleteUser(ctx, admin, admin.ID); !errors.Is(err, ErrInvalid) {
		t.Errorf("delete yourself: %v, want ErrInvalid", err)
	}
	if _, err := te.SetUserRole(ctx, admin, admin.ID, RoleUser); !errors.Is(err, ErrInUse) {
		t.Errorf("demote last admin: %v, want ErrInUse", err)
	}
	// With a second admin, the first can go.
	second := te.user(t, admin, "second", RoleAdmin)
	if err := te.DeleteUser(ctx, second, admin.ID); err != nil {
		t.Fatalf("second admin deletes the first: %v", err)
	}
	if _, err := te.Authenticate(ctx, "admin", "admin-password"); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("deleted admin still signs in: %v", err)
	}
	users, _ := te.Users(ctx, second)
	if len(users) != 7 {
		t.Errorf("users = %d, want 7", len(users))
	}
}
