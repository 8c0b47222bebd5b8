package filecopy

import (
	"os"

	"golang.org/x/sys/unix"
)

// clone makes dst (which must not exist) share all of src's extents with the FICLONE
// ioctl. It fails (EXDEV, EOPNOTSUPP, EINVAL…) when the two are not on one filesystem
// that supports reflinks; the caller then copies the data instead.
func clone(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := unix.IoctlFileClone(int(out.Fd()), int(in.Fd())); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
