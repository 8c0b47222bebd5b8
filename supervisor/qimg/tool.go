package qimg

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cairn-os/cairn/supervisor/filecopy"
	"github.com/cairn-os/cairn/supervisor/hostcmd"
)

// Tool runs qemu-img.
type Tool struct {
	// Runner runs the short commands (info, create, resize, check); nil means
	// hostcmd.Exec. Convert and Flatten stream qemu-img's progress and so start it
	// through hostcmd.Start themselves.
	Runner hostcmd.Runner
	// Bin is the qemu-img program; empty means "qemu-img" on PATH.
	Bin string
}

func (t Tool) bin() string {
	if t.Bin == "" {
		return "qemu-img"
	}
	return t.Bin
}

func (t Tool) run(ctx context.Context, op string, args ...string) ([]byte, error) {
	r := t.Runner
	if r == nil {
		r = hostcmd.Exec{}
	}
	out, err := r.Run(ctx, t.bin(), args...)
	if err != nil {
		return out, explain(op, err, string(out))
	}
	return out, nil
}

// explain wraps a failed qemu-img run with what the user can do about it.
func explain(op string, err error, output string) error {
	if isLockError(output) {
		return fmt.Errorf("%s: %w: another program holds the image, probably a running VM; stop it first (%v)", op, ErrInUse, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// isLockError recognises qemu's image locking refusal: `Failed to get "write" lock`,
// `Failed to get shared "write" lock`.
func isLockError(output string) bool {
	return strings.Contains(output, "Failed to get") && strings.Contains(output, "lock")
}

// checkSize refuses a size that qemu-img would refuse or round.
func checkSize(op string, size int64) error {
	if size <= 0 || size%512 != 0 {
		return fmt.Errorf("%s: size %d: %w: give a size in bytes above 0 and a multiple of 512 (10 GiB is 10737418240)", op, size, ErrInvalid)
	}
	return nil
}

// mustNotExist fails with ErrExists when path exists.
func mustNotExist(op, path string) error {
	_, err := os.Lstat(path)
	switch {
	case err == nil:
		return fmt.Errorf("%s: %w: choose another name or delete %s first", op, ErrExists, path)
	case errors.Is(err, fs.ErrNotExist):
		return nil
	default:
		return fmt.Errorf("%s: %w", op, err)
	}
}

// commit moves a finished temporary image to its name, never over an existing file.
func commit(op string, tmp *filecopy.Temp) error {
	// Commit fails with ErrExists if someone made the file while we wrote ours.
	if err := tmp.Commit(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// Create makes an empty image of size bytes (sparse: it takes almost no space). The
// size must be above 0 and a multiple of 512; an ISO cannot be created empty; an
// existing file is never overwritten.
func (t Tool) Create(ctx context.Context, path string, f Format, size int64) error {
	path, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	op := fmt.Sprintf("create %s image %s", f, path)
	if err := f.check(); err != nil {
		return fmt.Errorf("create image %s: %w", path, err)
	}
	if f == ISO {
		return fmt.Errorf("%s: %w: an ISO cannot be created empty; upload one, or create a raw or qcow2 disk", op, ErrInvalid)
	}
	if err := checkSize(op, size); err != nil {
		return err
	}
	if err := mustNotExist(op, path); err != nil {
		return err
	}
	tmp, err := filecopy.NewTemp(path)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	defer tmp.Remove()
	if _, err := t.run(ctx, op, "create", "-q", "-f", f.QemuName(), tmp.Path, strconv.FormatInt(size, 10)); err != nil {
		return err
	}
	return commit(op, tmp)
}

// CreateChild makes a qcow2 image at path that reads every block it has not written
// from backing (an absolute path, of format backingFmt) and has backing's size. It is
// instant whatever the size; the backing file must then never change.
func (t Tool) CreateChild(ctx context.Context, path, backing string, backingFmt Format) error {
	path, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	op := fmt.Sprintf("create child image %s of %s", path, backing)
	if !filepath.IsAbs(backing) {
		return fmt.Errorf("%s: backing file %q: %w: give it as an absolute path", op, backing, ErrInvalid)
	}
	if err := backingFmt.check(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if _, err := os.Stat(backing); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if err := mustNotExist(op, path); err != nil {
		return err
	}
	tmp, err := filecopy.NewTemp(path)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	defer tmp.Remove()
	if _, err := t.run(ctx, op, "create", "-q", "-f", string(QCOW2), "-b", backing, "-F", backingFmt.QemuName(), tmp.Path); err != nil {
		return err
	}
	return commit(op, tmp)
}

// Resize grows an image to size bytes. Shrinking is refused (it would cut off the end
// of the disk and whatever the guest keeps there), as are ISOs and the formats
// qemu-img cannot resize (vmdk, vdi, vhdx: convert them to qcow2 first). Growing to
// the current size does nothing.
func (t Tool) Resize(ctx context.Context, path string, f Format, size int64) error {
	path, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	op := fmt.Sprintf("resize image %s to %d bytes", path, size)
	if err := f.check(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	switch f {
	case ISO:
		return fmt.Errorf("%s: %w: an ISO is read-only installer media; its size is that of its contents", op, ErrInvalid)
	case VMDK, VDI, VHDX:
		return fmt.Errorf("%s: %w: qemu-img cannot resize %s images; convert it to qcow2 first", op, ErrInvalid, f)
	}
	if err := checkSize(op, size); err != nil {
		return err
	}
	in, err := t.Info(ctx, path)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if in.Format.QemuName() != f.QemuName() {
		return fmt.Errorf("%s: %w: the file is %s, not %s", op, ErrInvalid, in.Format, f)
	}
	switch {
	case size < in.VirtualSize:
		return fmt.Errorf("%s: %w: shrinking from %d bytes would lose the data at the end of the disk; give a size of at least %d", op, ErrInvalid, in.VirtualSize, in.VirtualSize)
	case size == in.VirtualSize:
		return nil
	}
	_, err = t.run(ctx, op, "resize", "-q", "-f", f.QemuName(), path, strconv.FormatInt(size, 10))
	return err
}

// checkResult is `qemu-img check --output=json`.
type checkResult struct {
	CheckErrors int `json:"check-errors"`
	Corruptions int `json:"corruptions"`
	Leaks       int `json:"leaks"`
}

// Check verifies an image's metadata with `qemu-img check`. Corruption fails with
// ErrCorrupt; leaked clusters (space lost after a crash, harmless to the data) do not.
// Raw images and ISOs have no metadata: for them Check only sees that the file exists.
func (t Tool) Check(ctx context.Context, path string, f Format) error {
	path, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	op := "check image " + path
	if err := f.check(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if f.QemuName() == string(Raw) {
		return nil
	}
	// qemu-img check exits 2 on corruption and 3 on leaks; the JSON it prints then
	// says which, so read it before looking at the error.
	out, runErr := t.run(ctx, op, "check", "--output=json", "-f", f.QemuName(), path)
	var res checkResult
	if err := json.NewDecoder(bytes.NewReader(jsonPart(out))).Decode(&res); err != nil {
		if runErr != nil {
			return runErr
		}
		return fmt.Errorf("%s: read qemu-img's answer: %w", op, err)
	}
	if res.Corruptions > 0 || res.CheckErrors > 0 {
		return fmt.Errorf("%s: %w: %d corruptions, %d errors while checking; restore it from a backup, or repair a copy with `qemu-img check -r all`", op, ErrCorrupt, res.Corruptions, res.CheckErrors)
	}
	return nil
}
