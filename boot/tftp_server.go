package boot

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pin/tftp/v3"
)

// errTFTPRefused is what a client hears for a name that is not a file directly in the
// TFTP root. It says no more, on purpose.
var errTFTPRefused = errors.New("access violation: only the iPXE binaries are served")

// newTFTPServer returns a read-only TFTP server for the files directly in TFTPRoot.
// Windowing (SetAnticipate) is left off: it sends blocks the client never asked for,
// which RFC 1350 clients (firmware PXE among them) do not expect, and the iPXE binaries
// are the only files served over TFTP.
func (s *Server) newTFTPServer() *tftp.Server {
	ts := tftp.NewServer(s.tftpRead, nil)
	ts.SetTimeout(3 * time.Second)
	ts.SetHook(tftpHook{s.log})
	return ts
}

// tftpRead serves one read request.
func (s *Server) tftpRead(name string, rf io.ReaderFrom) error {
	f, err := s.openTFTP(name)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("tftp stat %s: %w", name, err)
	}
	remote := ""
	if ot, ok := rf.(tftp.OutgoingTransfer); ok {
		ot.SetSize(fi.Size())
		ra := ot.RemoteAddr()
		remote = ra.String()
	}
	s.log.Info("tftp transfer", "file", fi.Name(), "remote", remote, "size", fi.Size())
	if _, err := rf.ReadFrom(f); err != nil {
		return fmt.Errorf("tftp send %s: %w", fi.Name(), err)
	}
	return nil
}

// openTFTP opens name when it names a regular file directly in TFTPRoot: a bare name
// ("undionly.kpxe"), the same with a leading slash, or the absolute path of such a
// file. Anything else — "..", subdirectories, other absolute paths, symbolic links
// leading out of the root — is refused.
func (s *Server) openTFTP(name string) (*os.File, error) {
	base := name
	if filepath.IsAbs(name) && filepath.Dir(filepath.Clean(name)) == filepath.Clean(s.cfg.TFTPRoot) {
		base = filepath.Base(filepath.Clean(name))
	}
	base = strings.TrimPrefix(base, "/")
	if base == "" || base == "." || strings.Contains(base, "..") || strings.ContainsAny(base, "/\\\x00") {
		return nil, errTFTPRefused
	}
	root, err := os.OpenRoot(s.cfg.TFTPRoot)
	if err != nil {
		return nil, fmt.Errorf("tftp root: %w", err)
	}
	defer root.Close()
	f, err := root.Open(base)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("file not found: %s", base)
		}
		return nil, errTFTPRefused
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, errTFTPRefused
	}
	return f, nil
}

// tftpHook logs how transfers ended.
type tftpHook struct{ log *slog.Logger }

// OnSuccess logs a finished transfer.
func (h tftpHook) OnSuccess(st tftp.TransferStats) {
	h.log.Info("tftp transfer done", "file", st.Filename, "remote", ipString(st.RemoteAddr),
		"duration", st.Duration.Round(time.Millisecond), "blocks", st.DatagramsSent)
}

// OnFailure logs a refused or broken transfer.
func (h tftpHook) OnFailure(st tftp.TransferStats, err error) {
	h.log.Warn("tftp transfer failed", "file", st.Filename, "remote", ipString(st.RemoteAddr), "err", err)
}
