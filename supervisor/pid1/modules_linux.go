package pid1

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/u-root/u-root/pkg/kmodule"
	"golang.org/x/sys/unix"
)

// LoadModules loads kernel modules and the modules they need, resolved from
// modules.dep in /lib/modules/$(uname -r) (or /usr/lib/modules). Built-in modules
// (modules.builtin) and loaded ones (/proc/modules) are skipped. A name may carry
// parameters: "kvm_intel nested=1". It never stops at a failure: it returns one error
// per module that could not be loaded, for the caller to log.
func LoadModules(logger *slog.Logger, names []string) []error {
	if len(names) == 0 {
		return nil
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return []error{fmt.Errorf("load modules: uname: %w", err)}
	}
	release := unix.ByteSliceToString(u.Release[:])
	dir := filepath.Join("/lib/modules", release)
	if _, err := os.Stat(dir); err != nil {
		dir = filepath.Join("/usr/lib/modules", release)
	}
	return loadModules(logger, dir, "/proc/modules", names, insmod)
}

// loadModules is LoadModules on a given tree, with insmod replaceable for tests.
func loadModules(logger *slog.Logger, dir, procModules string, names []string, insmod func(path, params string) error) []error {
	ix := newModuleIndex(dir)
	var errs []error
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		// Without modules.dep only built-in and loaded modules can be satisfied.
		errs = append(errs, fmt.Errorf("load modules: %w", err))
	} else {
		if err := ix.parseModulesDep(f); err != nil {
			errs = append(errs, fmt.Errorf("load modules: %s: %w", f.Name(), err))
		}
		f.Close()
	}
	for _, p := range []string{filepath.Join(dir, "modules.builtin"), procModules} {
		if f, err := os.Open(p); err == nil {
			if err := ix.parseNames(f); err != nil {
				errs = append(errs, fmt.Errorf("load modules: %s: %w", p, err))
			}
			f.Close()
		}
	}
	for _, name := range names {
		err := ix.load(name, func(path, params string) error {
			if err := insmod(path, params); err != nil {
				return err
			}
			logger.Debug("module loaded", "module", modName(path), "path", path)
			return nil
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("load module %s: %w", name, err))
		}
	}
	return errs
}

// insmod loads one module file; kmodule decompresses .xz, .gz and .zst files and
// uses finit_module for plain ones. A module that is already in the kernel (loaded by
// someone else meanwhile) counts as loaded.
func insmod(path, params string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := kmodule.FileInit(f, params, 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}
