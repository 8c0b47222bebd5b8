package vm

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// cpioEntry is one file of an initramfs.
type cpioEntry struct {
	mode uint32 // type and permission bits, as in stat(2)
	data []byte // file contents, or a symlink's target
	rdev [2]uint32
}

// File type bits for cpioEntry.mode.
const (
	cpioDir     = 0o040000
	cpioFile    = 0o100000
	cpioSymlink = 0o120000
	cpioCharDev = 0o020000
)

// writeCPIO writes files (path without a leading slash → entry) as a newc cpio
// archive, the format the kernel unpacks as initramfs. Parents come before children
// and all times are zero, so the same files give the same bytes; device nodes need no
// root, unlike `cpio -o` over a real tree.
func writeCPIO(w io.Writer, files map[string]cpioEntry) error {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	ino := uint32(1)
	write := func(name string, e cpioEntry) error {
		hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
			ino, e.mode, 0, 0, 1, 0, len(e.data), 0, 0, e.rdev[0], e.rdev[1], len(name)+1, 0)
		ino++
		var b strings.Builder
		b.WriteString(hdr)
		b.WriteString(name)
		b.WriteByte(0)
		for (b.Len())%4 != 0 {
			b.WriteByte(0)
		}
		if _, err := io.WriteString(w, b.String()); err != nil {
			return err
		}
		if _, err := w.Write(e.data); err != nil {
			return err
		}
		if pad := (4 - len(e.data)%4) % 4; pad > 0 {
			if _, err := w.Write(make([]byte, pad)); err != nil {
				return err
			}
		}
		return nil
	}
	for _, n := range names {
		if err := write(strings.TrimPrefix(n, "/"), files[n]); err != nil {
			return fmt.Errorf("cpio %s: %w", n, err)
		}
	}
	if err := write("TRAILER!!!", cpioEntry{}); err != nil {
		return fmt.Errorf("cpio trailer: %w", err)
	}
	return nil
}
