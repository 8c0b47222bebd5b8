package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/cairn-os/cairn/supervisor/store"
)

// SessionLifetime is how long a browser login lasts.
const SessionLifetime = 12 * time.Hour

// sessionRecord is a session as stored: keyed by the SHA-256 of its ID, so the
// database alone does not let anyone sign in.
type sessionRecord struct {
	Session
	CSRFToken string `json:"csrf"`
}

func sessionKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

// CreateSession starts a browser session for u: a random 32-byte ID, a CSRF token,
// twelve hours. Sessions are stored and survive a restart of the engine.
func (e *Engine) CreateSession(ctx context.Context, u User) (Session, error) {
	if err := requireUser(u, "create session"); err != nil {
		return Session{}, err
	}
	now := e.now()
	s := Session{
		ID:        randomB64(32),
		UserID:    u.ID,
		CSRF:      randomB64(32),
		CreatedAt: now,
		ExpiresAt: now.Add(SessionLifetime),
	}
	if err := e.store.Put(bucketSessions, sessionKey(s.ID), sessionRecord{Session: s, CSRFToken: s.CSRF}); err != nil {
		return Session{}, fmt.Errorf("create session for %q: %w", u.Name, err)
	}
	return s, nil
}

// SessionUser returns the user and session of a session ID; ErrUnauthorized when the
// session is unknown or has expired.
func (e *Engine) SessionUser(ctx context.Context, id string) (User, Session, error) {
	fail := fmt.Errorf("session: %w: sign in again", ErrUnauthorized)
	if id == "" {
		return User{}, Session{}, fail
	}
	var rec sessionRecord
	var user userRecord
	err := e.store.View(func(tx *store.Tx) error {
		if err := tx.Get(bucketSessions, sessionKey(id), &rec); err != nil {
			return err
		}
		return tx.Get(bucketUsers, rec.UserID, &user)
	})
	if errors.Is(err, store.ErrNotFound) {
		return User{}, Session{}, fail
	}
	if err != nil {
		return User{}, Session{}, fmt.Errorf("session: %w", err)
	}
	if !e.now().Before(rec.ExpiresAt) {
		if err := e.store.Delete(bucketSessions, sessionKey(id)); err != nil {
			e.log.Warn("delete expired session failed", "err", err)
		}
		return User{}, Session{}, fail
	}
	s := rec.Session
	s.ID, s.CSRF = id, rec.CSRFToken
	return user.user(), s, nil
}

// DeleteSession ends a session (sign out). An unknown ID is not an error.
func (e *Engine) DeleteSession(ctx context.Context, id string) error {
	if err := e.store.Delete(bucketSessions, sessionKey(id)); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// pruneSessions removes expired sessions.
func (e *Engine) pruneSessions() error {
	now := e.now()
	expired := false
	err := e.store.View(func(tx *store.Tx) error {
		return tx.ForEach(bucketSessions, func(_ string, data []byte) error {
			var s sessionRecord
			if err := jsonUnmarshal(data, &s); err != nil {
				return err
			}
			expired = expired || !now.Before(s.ExpiresAt)
			return nil
		})
	})
	if err != nil || !expired {
		return err
	}
	return e.store.Update(func(tx *store.Tx) error {
		return deleteWhere(tx, bucketSessions, func(s sessionRecord) bool { return !now.Before(s.ExpiresAt) })
	})
}
