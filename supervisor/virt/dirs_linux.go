package virt

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
)

// QemuUser is the user (and group) Debian's libvirt runs qemu as (qemu.conf's
// default).
const QemuUser = "libvirt-qemu"

// PrepareDirs makes the console directory and the log directory (with their
// parents) and hands both to QemuUser, mode 0750:
//
//   - libvirt makes the serial console's socket itself and passes it to qemu, but
//     qemu makes the VNC socket, as QemuUser: it must be able to write in
//     consoleDir, or the domain fails to start with "Failed to bind socket …:
//     Permission denied".
//   - virtlogd (root) writes the serial log; were qemu to write it itself (qemu.conf
//     stdio_handler = "file"), it would need logDir too.
//
// Root, which the supervisor runs as, can still use both; other users cannot reach
// the sockets, which give full control of the guest's console. It needs root.
func PrepareDirs(consoleDir, logDir string) error {
	u, err := user.Lookup(QemuUser)
	if err != nil {
		return fmt.Errorf("prepare console directories: look up user %s (the user qemu runs as): %w", QemuUser, err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return fmt.Errorf("prepare console directories: user %s has uid %q: %w", QemuUser, u.Uid, err)
	}
	gid := -1
	if g, err := user.LookupGroup(QemuUser); err == nil {
		gid, _ = strconv.Atoi(g.Gid)
	}
	if gid < 0 {
		gid, _ = strconv.Atoi(u.Gid)
	}
	for _, dir := range []string{consoleDir, logDir} {
		if err := checkPath("console directory", dir); err != nil {
			return fmt.Errorf("prepare console directories: %w", err)
		}
		dir = filepath.Clean(dir)
		// Parents made here are open to all (0755) so that qemu can reach dir.
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return fmt.Errorf("prepare console directory: %w", err)
		}
		if err := reachable(filepath.Dir(dir)); err != nil {
			return fmt.Errorf("prepare console directory %s: %w", dir, err)
		}
		if err := os.Mkdir(dir, 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("prepare console directory: %w", err)
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			return fmt.Errorf("prepare console directory: %w", err)
		}
		// MkdirAll's mode is masked by the umask and leaves an existing directory
		// as it was.
		if err := os.Chmod(dir, 0o750); err != nil {
			return fmt.Errorf("prepare console directory: %w", err)
		}
	}
	return nil
}

// reachable checks that every directory from / to dir lets other users (qemu)
// pass through.
func reachable(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("%w: qemu (user %s) cannot reach it: %s is mode %o; let others through it (chmod o+x %s)", ErrInvalid, QemuUser, d, fi.Mode().Perm(), d)
		}
		if d == "/" {
			return nil
		}
	}
}
