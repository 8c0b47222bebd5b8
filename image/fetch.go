package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// ErrStaleLock is returned when the mirror no longer has a locked package version
// (Debian drops superseded versions at each point release).
var ErrStaleLock = errors.New("the Debian mirror no longer has a locked package version: run `make lock` to re-pin configs/packages.lock")

// LockPackages resolves every role's package list against the mirrors and returns the lock.
func LockPackages(ctx context.Context, apt Apt, lists []PackageList) (Lock, error) {
	if err := apt.Update(ctx); err != nil {
		return Lock{}, err
	}
	byRole := map[string][]Package{}
	for _, l := range lists {
		pkgs, err := apt.Resolve(ctx, l.Install, l.Exclude)
		if err != nil {
			return Lock{}, fmt.Errorf("lock %s: %w", l.Role, err)
		}
		byRole[l.Role] = pkgs
	}
	return MergeRoles(byRole)
}

// Fetcher puts locked .deb files into the cache and checks them.
type Fetcher struct {
	Cache  Cache
	Apt    Apt
	Logger *slog.Logger
}

// Fetch returns the cached path of every package, downloading the missing ones. A
// cached file is checked against the lock's SHA-256 each time; a bad one is fetched
// again.
func (f Fetcher) Fetch(ctx context.Context, pkgs []Package) (map[string]string, error) {
	dir := f.Cache.Path("debs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("deb cache: %w", err)
	}
	paths := map[string]string{}
	var missing []Package
	for _, p := range pkgs {
		path := filepath.Join(dir, p.FileName())
		paths[p.Name] = path
		if err := checkSHA256(path, p.SHA256); err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				f.Logger.Warn("cached package is damaged, fetching it again", "package", p.Name, "err", err)
			}
			missing = append(missing, p)
		}
	}
	if len(missing) == 0 {
		f.Logger.Info("packages cached", "packages", len(pkgs))
		return paths, nil
	}
	f.Logger.Info("fetching packages", "missing", len(missing), "cached", len(pkgs)-len(missing))
	if err := f.download(ctx, dir, missing); err != nil {
		return nil, err
	}
	for _, p := range missing {
		if err := checkSHA256(paths[p.Name], p.SHA256); err != nil {
			return nil, fmt.Errorf("fetch %s %s: %w", p.Name, p.Version, err)
		}
	}
	return paths, nil
}

func (f Fetcher) download(ctx context.Context, dir string, pkgs []Package) error {
	if !f.Apt.hasLists() {
		if err := f.Apt.Update(ctx); err != nil {
			return err
		}
	}
	tmp, err := os.MkdirTemp(dir, ".download-")
	if err != nil {
		return fmt.Errorf("deb cache: %w", err)
	}
	defer os.RemoveAll(tmp)
	err = f.Apt.Download(ctx, tmp, pkgs)
	if err != nil && staleVersion(err) {
		// The lists may be older than the lock: refresh them once and retry.
		f.Logger.Info("package version not in the package lists, refreshing them")
		if uerr := f.Apt.Update(ctx); uerr != nil {
			return uerr
		}
		err = f.Apt.Download(ctx, tmp, pkgs)
		if err != nil && staleVersion(err) {
			return fmt.Errorf("fetch packages: %w (%v)", ErrStaleLock, err)
		}
	}
	if err != nil {
		return fmt.Errorf("fetch packages: %w", err)
	}
	for _, p := range pkgs {
		if err := os.Rename(filepath.Join(tmp, p.FileName()), filepath.Join(dir, p.FileName())); err != nil {
			return fmt.Errorf("fetch %s: %w", p.Name, err)
		}
	}
	return nil
}

// staleVersion recognises apt's answers for a version its lists do not have, or a
// file the mirror no longer serves.
func staleVersion(err error) bool {
	s := err.Error()
	for _, m := range []string{"was not found", "Unable to locate package", "404", "Not Found"} {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

func checkSHA256(path, want string) error {
	got, err := fileSHA256(path)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("%s: sha256 %s, locked %s", filepath.Base(path), got, want)
	}
	return nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
