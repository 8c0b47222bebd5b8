package image

import (
	"fmt"
	"os"
	"path/filepath"
)

// Cache is the builder's download and tree cache. It lives outside the clone
// ($CAIRN_CACHE, default ~/.cache/cairn), so that a fresh clone on the same machine
// downloads nothing:
//
//	apt/      apt's private package lists and state (never the host's)
//	debs/     the locked .deb files, named name_version_arch.deb
//	trees/    extracted root trees, keyed by a hash of the lock lines they hold
type Cache struct {
	Dir string
}

// DefaultCacheDir returns $CAIRN_CACHE, or ~/.cache/cairn.
func DefaultCacheDir() (string, error) {
	if d := os.Getenv("CAIRN_CACHE"); d != "" {
		return filepath.Abs(d)
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("cache folder: %w (set CAIRN_CACHE)", err)
	}
	return filepath.Join(home, ".cache", "cairn"), nil
}

// Path returns a path inside the cache.
func (c Cache) Path(elem ...string) string {
	return filepath.Join(append([]string{c.Dir}, elem...)...)
}

// TempDir makes a folder for a build's staging tree. It is inside the cache so that
// hard links into the cached trees work (they cannot cross filesystems).
func (c Cache) TempDir(prefix string) (string, error) {
	base := c.Path("tmp")
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", fmt.Errorf("staging folder: %w", err)
	}
	d, err := os.MkdirTemp(base, prefix+"-")
	if err != nil {
		return "", fmt.Errorf("staging folder: %w", err)
	}
	return d, os.Chmod(d, 0o755)
}
