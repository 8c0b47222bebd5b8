package engine

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/cairn-os/cairn/supervisor/store"
	"golang.org/x/crypto/bcrypt"
)

// AdminName is the name of the user made on first boot.
const AdminName = "admin"

// userRecord is a user as stored, with the password hash that User keeps out of JSON.
type userRecord struct {
	User
	Hash []byte `json:"password_hash"`
}

func (r userRecord) user() User {
	u := r.User
	u.PasswordHash = r.Hash
	return u
}

var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._@-]{1,63}$`)

const nameRule = "a name is 2 to 64 characters of a-z, 0-9, '.', '_', '@' and '-', starting with a letter or digit"

func checkPassword(op, password string) error {
	if len(password) < 8 {
		return fmt.Errorf("%s: %w: the password must have at least 8 characters", op, ErrInvalid)
	}
	if len(password) > 72 {
		return fmt.Errorf("%s: %w: the password must have at most 72 bytes", op, ErrInvalid)
	}
	return nil
}

// EnsureAdmin makes the user "admin" (role admin) with password on first boot and
// reports true. On later boots it keeps what is stored, even when the admin changed
// or removed that account since, and reports false.
func (e *Engine) EnsureAdmin(ctx context.Context, password string) (bool, error) {
	created := false
	err := e.store.Update(func(tx *store.Tx) error {
		if tx.Has(bucketMeta, metaAdminLoaded) {
			return nil
		}
		if _, err := findUserByName(tx, AdminName); err == nil {
			return tx.Put(bucketMeta, metaAdminLoaded, true)
		}
		if err := checkPassword("create first admin", password); err != nil {
			return err
		}
		hash, err := bcrypt.GenerateFromPassword([]byte(password), e.cfg.BcryptCost)
		if err != nil {
			return fmt.Errorf("create first admin: %w", err)
		}
		rec := userRecord{User: User{ID: "u-" + randomHex(6), Name: AdminName, Role: RoleAdmin, CreatedAt: e.now()}, Hash: hash}
		if err := tx.Put(bucketUsers, rec.ID, rec); err != nil {
			return err
		}
		created = true
		return tx.Put(bucketMeta, metaAdminLoaded, true)
	})
	if err != nil {
		return false, err
	}
	if created {
		e.log.Info("first admin created", "user", AdminName)
	}
	return created, nil
}

// Authenticate checks a name and password. An unknown name and a wrong password give
// the same ErrUnauthorized and take the same time.
func (e *Engine) Authenticate(ctx context.Context, name, password string) (User, error) {
	var rec userRecord
	err := e.store.View(func(tx *store.Tx) error {
		var err error
		rec, err = findUserByName(tx, name)
		return err
	})
	hash := rec.Hash
	if err != nil {
		hash = e.dummyHash
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil || err != nil {
		return User{}, fmt.Errorf("sign in: %w: wrong user name or password", ErrUnauthorized)
	}
	return rec.user(), nil
}

func findUserByName(tx *store.Tx, name string) (userRecord, error) {
	var found userRecord
	err := tx.ForEach(bucketUsers, func(_ string, data []byte) error {
		if found.ID != "" {
			return nil
		}
		var rec userRecord
		if err := jsonUnmarshal(data, &rec); err != nil {
			return err
		}
		if rec.Name == name {
			found = rec
		}
		return nil
	})
	if err != nil {
		return userRecord{}, err
	}
	if found.ID == "" {
		return userRecord{}, fmt.Errorf("user %q: %w", name, ErrNotFound)
	}
	return found, nil
}

// findUser finds a user by ID or, failing that, by name.
func findUser(tx *store.Tx, idOrName string) (userRecord, error) {
	var rec userRecord
	if err := tx.Get(bucketUsers, idOrName, &rec); err == nil {
		return rec, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return rec, err
	}
	return findUserByName(tx, idOrName)
}

// Users lists all users, by name. Only admins may.
func (e *Engine) Users(ctx context.Context, u User) ([]User, error) {
	if err := requireAdmin(u, "list users"); err != nil {
		return nil, err
	}
	recs, err := store.List[userRecord](e.store, bucketUsers)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	users := make([]User, 0, len(recs))
	for _, r := range recs {
		users = append(users, r.User)
	}
	slices.SortFunc(users, func(a, b User) int { return strings.Compare(a.Name, b.Name) })
	return users, nil
}

// User returns one user by ID or name. Admins may see anyone, others themselves.
func (e *Engine) User(ctx context.Context, u User, id string) (User, error) {
	if err := requireUser(u, "show user"); err != nil {
		return User{}, err
	}
	var rec userRecord
	err := e.store.View(func(tx *store.Tx) error {
		var err error
		rec, err = findUser(tx, id)
		return err
	})
	if u.Role != RoleAdmin && (errors.Is(err, ErrNotFound) || err == nil && rec.ID != u.ID) {
		return User{}, fmt.Errorf("show user %q: %w: you can only see your own account", id, ErrForbidden)
	}
	if err != nil {
		return User{}, fmt.Errorf("show user %q: %w", id, err)
	}
	return rec.User, nil
}

// CreateUser makes a user. Only admins may.
func (e *Engine) CreateUser(ctx context.Context, u User, name, password string, role Role) (User, error) {
	op := fmt.Sprintf("create user %q", name)
	if err := requireAdmin(u, op); err != nil {
		return User{}, err
	}
	if !namePattern.MatchString(name) {
		return User{}, fmt.Errorf("%s: %w: %s", op, ErrInvalid, nameRule)
	}
	if err := checkPassword(op, password); err != nil {
		return User{}, err
	}
	switch role {
	case RoleAdmin, RoleUser, RoleReadonly:
	case "":
		role = RoleUser
	default:
		return User{}, fmt.Errorf("%s: %w: the role must be admin, user or readonly", op, ErrInvalid)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), e.cfg.BcryptCost)
	if err != nil {
		return User{}, fmt.Errorf("%s: %w", op, err)
	}
	rec := userRecord{User: User{ID: "u-" + randomHex(6), Name: name, Role: role, CreatedAt: e.now()}, Hash: hash}
	err = e.store.Update(func(tx *store.Tx) error {
		if _, err := findUserByName(tx, name); err == nil {
			return fmt.Errorf("%s: %w: choose another name", op, ErrExists)
		}
		return tx.Put(bucketUsers, rec.ID, rec)
	})
	if err != nil {
		return User{}, err
	}
	e.log.Info("user created", "user", name, "role", role, "by", u.Name)
	return rec.User, nil
}

// SetUserRole changes a user's role. Only admins may, and the last admin stays one.
func (e *Engine) SetUserRole(ctx context.Context, u User, id string, role Role) (User, error) {
	op := fmt.Sprintf("set role of user %q", id)
	if err := requireAdmin(u, op); err != nil {
		return User{}, err
	}
	switch role {
	case RoleAdmin, RoleUser, RoleReadonly:
	default:
		return User{}, fmt.Errorf("%s: %w: the role must be admin, user or readonly", op, ErrInvalid)
	}
	var rec userRecord
	err := e.store.Update(func(tx *store.Tx) error {
		var err error
		if rec, err = findUser(tx, id); err != nil {
			return fmt.Errorf("%s: %w", op, notFound(err))
		}
		if rec.Role == RoleAdmin && role != RoleAdmin {
			if err := checkOtherAdmin(tx, rec, op); err != nil {
				return err
			}
		}
		rec.Role = role
		return tx.Put(bucketUsers, rec.ID, rec)
	})
	if err != nil {
		return User{}, err
	}
	e.log.Info("user role changed", "user", rec.Name, "role", role, "by", u.Name)
	return rec.User, nil
}

// DeleteUser removes a user with their sessions and tokens. Only admins may; nobody
// removes themselves or the last admin.
func (e *Engine) DeleteUser(ctx context.Context, u User, id string) error {
	op := fmt.Sprintf("delete user %q", id)
	if err := requireAdmin(u, op); err != nil {
		return err
	}
	var rec userRecord
	err := e.store.Update(func(tx *store.Tx) error {
		var err error
		if rec, err = findUser(tx, id); err != nil {
			return fmt.Errorf("%s: %w", op, notFound(err))
		}
		if rec.ID == u.ID {
			return fmt.Errorf("%s: %w: you cannot delete yourself; sign in as another admin to do it", op, ErrInvalid)
		}
		if rec.Role == RoleAdmin {
			if err := checkOtherAdmin(tx, rec, op); err != nil {
				return err
			}
		}
		if err := deleteWhere(tx, bucketSessions, func(s sessionRecord) bool { return s.UserID == rec.ID }); err != nil {
			return err
		}
		if err := deleteWhere(tx, bucketTokens, func(t tokenRecord) bool { return t.UserID == rec.ID }); err != nil {
			return err
		}
		return tx.Delete(bucketUsers, rec.ID)
	})
	if err != nil {
		return err
	}
	e.log.Info("user deleted", "user", rec.Name, "by", u.Name)
	return nil
}

// checkOtherAdmin fails with ErrInUse when rec is the only admin.
func checkOtherAdmin(tx *store.Tx, rec userRecord, op string) error {
	users, err := store.ListTx[userRecord](tx, bucketUsers)
	if err != nil {
		return err
	}
	for _, o := range users {
		if o.Role == RoleAdmin && o.ID != rec.ID {
			return nil
		}
	}
	return fmt.Errorf("%s: %w: %q is the last admin; make another user admin first", op, ErrInUse, rec.Name)
}

// deleteWhere removes the values of bucket for which match is true.
func deleteWhere[T any](tx *store.Tx, bucket string, match func(T) bool) error {
	var keys []string
	err := tx.ForEach(bucket, func(key string, data []byte) error {
		var v T
		if err := jsonUnmarshal(data, &v); err != nil {
			return err
		}
		if match(v) {
			keys = append(keys, key)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := tx.Delete(bucket, k); err != nil {
			return err
		}
	}
	return nil
}
