package engine

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/cairn-os/cairn/supervisor/store"
)

// TokenPrefix starts every API token secret, so that a leaked one is recognisable.
const TokenPrefix = "cairn_"

// lastUsedEvery limits how often a token's LastUsed is written.
const lastUsedEvery = time.Minute

// tokenRecord is a token as stored: the hash of the secret, never the secret.
type tokenRecord struct {
	Token
	SecretHash []byte `json:"hash"`
}

func tokenHash(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

// CreateToken makes an API token for u. The secret ("cairn_" and 32 random bytes) is
// in the returned Token only; the engine keeps its SHA-256.
func (e *Engine) CreateToken(ctx context.Context, u User, name string) (Token, error) {
	op := fmt.Sprintf("create token %q", name)
	if err := requireWriter(u, op); err != nil {
		return Token{}, err
	}
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 64 || strings.ContainsFunc(name, unicode.IsControl) {
		return Token{}, fmt.Errorf("%s: %w: give the token a name of 1 to 64 printable characters", op, ErrInvalid)
	}
	secret := TokenPrefix + randomB64(32)
	t := Token{ID: "t-" + randomHex(6), UserID: u.ID, Name: name, CreatedAt: e.now()}
	if err := e.store.Put(bucketTokens, t.ID, tokenRecord{Token: t, SecretHash: tokenHash(secret)}); err != nil {
		return Token{}, fmt.Errorf("%s: %w", op, err)
	}
	e.log.Info("token created", "token", t.ID, "user", u.Name)
	t.Secret = secret
	return t, nil
}

// TokenUser returns the user whose API token secret this is; ErrUnauthorized when no
// token matches. Every stored hash is compared in constant time.
func (e *Engine) TokenUser(ctx context.Context, secret string) (User, error) {
	fail := fmt.Errorf("api token: %w: the token is unknown or was deleted; create a new one", ErrUnauthorized)
	if !strings.HasPrefix(secret, TokenPrefix) {
		return User{}, fail
	}
	want := tokenHash(secret)
	var match tokenRecord
	var user userRecord
	err := e.store.View(func(tx *store.Tx) error {
		err := tx.ForEach(bucketTokens, func(_ string, data []byte) error {
			var t tokenRecord
			if err := jsonUnmarshal(data, &t); err != nil {
				return err
			}
			if subtle.ConstantTimeCompare(t.SecretHash, want) == 1 {
				match = t
			}
			return nil
		})
		if err != nil || match.ID == "" {
			return err
		}
		return tx.Get(bucketUsers, match.UserID, &user)
	})
	if err != nil && !isNotFound(err) {
		return User{}, fmt.Errorf("api token: %w", err)
	}
	if err != nil || match.ID == "" {
		return User{}, fail
	}
	if now := e.now(); now.Sub(match.LastUsed) > lastUsedEvery {
		err := e.store.Update(func(tx *store.Tx) error {
			var t tokenRecord
			if err := tx.Get(bucketTokens, match.ID, &t); err != nil {
				return err
			}
			t.LastUsed = now
			return tx.Put(bucketTokens, t.ID, t)
		})
		if err != nil && !isNotFound(err) {
			e.log.Warn("record token use failed", "token", match.ID, "err", err)
		}
	}
	return user.user(), nil
}

// Tokens lists u's own tokens, without secrets.
func (e *Engine) Tokens(ctx context.Context, u User) ([]Token, error) {
	if err := requireUser(u, "list tokens"); err != nil {
		return nil, err
	}
	recs, err := store.List[tokenRecord](e.store, bucketTokens)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	out := []Token{}
	for _, r := range recs {
		if r.UserID == u.ID {
			out = append(out, r.Token)
		}
	}
	slices.SortFunc(out, func(a, b Token) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

// DeleteToken deletes one of u's tokens (admins may delete anyone's).
func (e *Engine) DeleteToken(ctx context.Context, u User, id string) error {
	op := fmt.Sprintf("delete token %q", id)
	if err := requireWriter(u, op); err != nil {
		return err
	}
	err := e.store.Update(func(tx *store.Tx) error {
		var t tokenRecord
		if err := tx.Get(bucketTokens, id, &t); err != nil {
			return fmt.Errorf("%s: %w", op, notFound(err))
		}
		if t.UserID != u.ID && u.Role != RoleAdmin {
			// Someone else's token does not exist, as far as this user can tell.
			return fmt.Errorf("%s: %w", op, ErrNotFound)
		}
		return tx.Delete(bucketTokens, id)
	})
	if err != nil {
		return err
	}
	e.log.Info("token deleted", "token", id, "by", u.Name)
	return nil
}
