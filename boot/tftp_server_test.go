package boot

import (
	"path/filepath"
	"testing"
)

func TestOpenTFTPOnlyServesRootFiles(t *testing.T) {
	s := testServer(t, computePlanner)
	root := s.cfg.TFTPRoot
	for _, name := range []string{FileBIOS, "/" + FileUEFI, filepath.Join(root, FileBIOS)} {
		f, err := s.openTFTP(name)
		if err != nil {
			t.Errorf("%s refused: %v", name, err)
			continue
		}
		f.Close()
	}
	for _, name := range []string{
		"../secret", "..", ".", "", "/", "../ipxe/" + FileBIOS, "/etc/passwd",
		filepath.Join(filepath.Dir(root), "secret"), "sub/" + FileBIOS, `..\secret`,
		"missing.efi", FileBIOS + "\x00x",
	} {
		if f, err := s.openTFTP(name); err == nil {
			f.Close()
			t.Errorf("%q served", name)
		}
	}
}
