package boot

import (
	"errors"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// Handler returns the boot HTTP handler:
//
//	GET /boot.ipxe                   the script DHCP names for iPXE; chains to the next
//	GET /nodes/<mac>.ipxe            the Planner's decision for that MAC (aa-bb-… or aa:bb:…)
//	GET /compute/vmlinuz             the compute kernel (Range supported)
//	GET /compute/initramfs   the compute initramfs (Range supported)
//
// HEAD works too. Any other path is 404, a path with ".." is 400 (also when it came
// percent-encoded), other methods are 405. Paths never map to the file system.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(s.serveHTTP)
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "only GET and HEAD are served", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	if strings.Contains(p, "..") || strings.Contains(r.URL.RawPath, "..") || strings.Contains(r.RequestURI, "..") {
		s.log.Warn("http path traversal refused", "path", p, "remote", r.RemoteAddr)
		http.Error(w, "path traversal refused", http.StatusBadRequest)
		return
	}
	switch {
	case p == "/boot.ipxe":
		s.log.Info("boot script served", "script", "chain", "remote", r.RemoteAddr)
		writeScript(w, r, chainScript(s.BaseURL()))
	case strings.HasPrefix(p, "/nodes/") && strings.HasSuffix(p, ".ipxe"):
		s.serveNodeScript(w, r, strings.TrimSuffix(strings.TrimPrefix(p, "/nodes/"), ".ipxe"))
	case p == pathKernel:
		s.serveFile(w, r, s.cfg.Kernel)
	case p == pathInitramfs:
		s.serveFile(w, r, s.cfg.Initramfs)
	default:
		http.NotFound(w, r)
	}
}

// serveNodeScript asks the Planner about the MAC in the path and serves its script.
func (s *Server) serveNodeScript(w http.ResponseWriter, r *http.Request, macText string) {
	mac, err := net.ParseMAC(macText)
	if err != nil || len(mac) != 6 {
		http.NotFound(w, r)
		return
	}
	plan, err := s.planner.Plan(r.Context(), mac)
	if err != nil {
		s.log.Error("boot plan failed", "mac", mac.String(), "err", err)
		http.Error(w, "no boot plan for this machine", http.StatusInternalServerError)
		return
	}
	script, err := nodeScript(s.BaseURL(), mac, plan)
	if err != nil {
		s.log.Error("boot plan refused", "mac", mac.String(), "err", err)
		http.Error(w, "no usable boot plan for this machine", http.StatusInternalServerError)
		return
	}
	s.log.Info("boot script served", "script", "node", "mac", mac.String(), "action", plan.Action, "remote", r.RemoteAddr)
	writeScript(w, r, script)
}

func writeScript(w http.ResponseWriter, r *http.Request, script string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	http.ServeContent(w, r, "", time.Time{}, strings.NewReader(script))
}

// serveFile serves one of the compute image's files with Content-Length and Range.
func (s *Server) serveFile(w http.ResponseWriter, r *http.Request, path string) {
	f, err := os.Open(path)
	if err != nil {
		s.log.Error("boot file missing", "file", path, "err", err)
		if errors.Is(err, os.ErrNotExist) {
			http.Error(w, "compute image file missing on the admin node", http.StatusNotFound)
		} else {
			http.Error(w, "compute image file unreadable on the admin node", http.StatusInternalServerError)
		}
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		s.log.Error("boot file unreadable", "file", path, "err", err)
		http.Error(w, "compute image file unreadable on the admin node", http.StatusInternalServerError)
		return
	}
	s.log.Info("boot file served", "path", r.URL.Path, "size", fi.Size(), "range", r.Header.Get("Range"), "remote", r.RemoteAddr)
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "", fi.ModTime(), f)
}
