// Package store is the engine's embedded state store: one bbolt file
// (<state>/cairn.db) holding JSON values by key in named buckets. It knows nothing of
// users or nodes; the engine gives the buckets their meaning.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrNotFound is returned when a key (or its bucket) does not exist.
var ErrNotFound = errors.New("not found")

// FileName is the name of the database file in the state directory.
const FileName = "cairn.db"

// Store is an open state store. It is safe for concurrent use: reads run in
// parallel, writes one at a time.
type Store struct {
	db *bolt.DB
}

// Open opens (or creates) the database at path. Another process holding the file
// makes Open fail after a second instead of waiting forever.
func Open(path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the database file.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

// Path is the database file's path.
func (s *Store) Path() string { return s.db.Path() }

// View runs fn in a read-only transaction.
func (s *Store) View(fn func(tx *Tx) error) error {
	return s.db.View(func(btx *bolt.Tx) error { return fn(&Tx{tx: btx}) })
}

// Update runs fn in a read-write transaction. If fn returns an error nothing it did
// is kept; otherwise all of it is committed at once.
func (s *Store) Update(fn func(tx *Tx) error) error {
	return s.db.Update(func(btx *bolt.Tx) error { return fn(&Tx{tx: btx}) })
}

// Get reads the value of key in bucket into v.
func (s *Store) Get(bucket, key string, v any) error {
	return s.View(func(tx *Tx) error { return tx.Get(bucket, key, v) })
}

// Put stores v as the value of key in bucket.
func (s *Store) Put(bucket, key string, v any) error {
	return s.Update(func(tx *Tx) error { return tx.Put(bucket, key, v) })
}

// Delete removes key from bucket; a missing key is not an error.
func (s *Store) Delete(bucket, key string) error {
	return s.Update(func(tx *Tx) error { return tx.Delete(bucket, key) })
}

// List returns all values of bucket, in key order.
func List[T any](s *Store, bucket string) ([]T, error) {
	var out []T
	err := s.View(func(tx *Tx) error {
		var err error
		out, err = ListTx[T](tx, bucket)
		return err
	})
	return out, err
}

// ListTx returns all values of bucket, in key order, within a transaction.
func ListTx[T any](tx *Tx, bucket string) ([]T, error) {
	out := []T{}
	err := tx.ForEach(bucket, func(key string, data []byte) error {
		var v T
		if err := json.Unmarshal(data, &v); err != nil {
			return fmt.Errorf("decode %s/%s: %w", bucket, key, err)
		}
		out = append(out, v)
		return nil
	})
	return out, err
}

// Tx is a transaction: read-only in View, read-write in Update.
type Tx struct {
	tx *bolt.Tx
}

// Get reads the value of key in bucket into v; ErrNotFound when it is not there.
func (t *Tx) Get(bucket, key string, v any) error {
	b := t.tx.Bucket([]byte(bucket))
	if b == nil {
		return fmt.Errorf("get %s/%s: %w", bucket, key, ErrNotFound)
	}
	data := b.Get([]byte(key))
	if data == nil {
		return fmt.Errorf("get %s/%s: %w", bucket, key, ErrNotFound)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode %s/%s: %w", bucket, key, err)
	}
	return nil
}

// Has reports whether key exists in bucket.
func (t *Tx) Has(bucket, key string) bool {
	b := t.tx.Bucket([]byte(bucket))
	return b != nil && b.Get([]byte(key)) != nil
}

// Put stores v, encoded as JSON, as the value of key in bucket, creating the bucket
// when needed.
func (t *Tx) Put(bucket, key string, v any) error {
	if key == "" {
		return fmt.Errorf("put %s: empty key", bucket)
	}
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s/%s: %w", bucket, key, err)
	}
	b, err := t.tx.CreateBucketIfNotExists([]byte(bucket))
	if err != nil {
		return fmt.Errorf("put %s/%s: %w", bucket, key, err)
	}
	if err := b.Put([]byte(key), data); err != nil {
		return fmt.Errorf("put %s/%s: %w", bucket, key, err)
	}
	return nil
}

// Delete removes key from bucket; a missing key or bucket is not an error.
func (t *Tx) Delete(bucket, key string) error {
	b := t.tx.Bucket([]byte(bucket))
	if b == nil {
		return nil
	}
	if err := b.Delete([]byte(key)); err != nil {
		return fmt.Errorf("delete %s/%s: %w", bucket, key, err)
	}
	return nil
}

// ForEach calls fn with each key and raw JSON value of bucket, in key order. The
// value is only valid during the call. A missing bucket has no keys.
func (t *Tx) ForEach(bucket string, fn func(key string, data []byte) error) error {
	b := t.tx.Bucket([]byte(bucket))
	if b == nil {
		return nil
	}
	return b.ForEach(func(k, v []byte) error {
		if v == nil { // a nested bucket
			return nil
		}
		return fn(string(k), v)
	})
}
