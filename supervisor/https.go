package supervisor

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/cairn-os/cairn/supervisor/api"
	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/supervisor/hostcmd"
	"github.com/cairn-os/cairn/supervisor/pid1"
	"github.com/cairn-os/cairn/ui"
)

var hostRunner hostcmd.Runner = hostcmd.Exec{}

// serveHTTPS serves the web console and the API on one TLS listener with a
// certificate from the engine's CA. Client certificates are asked for but not
// required: compute nodes present theirs for heartbeats; people do not have one.
func serveHTTPS(ctx context.Context, logger *slog.Logger, e *engine.Engine, listen string, ips []net.IP) error {
	host, _ := os.Hostname()
	cert, err := e.CA().ServerCertificate([]string{host, "cairn", "localhost"}, ips)
	if err != nil {
		return fmt.Errorf("server certificate: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/api/v1/", api.New(e, logger))
	mux.Handle("/", ui.New(e, logger))
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.With("component", "https").Handler(), slog.LevelDebug),
		TLSConfig: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{cert},
			ClientAuth:   tls.VerifyClientCertIfGiven,
			ClientCAs:    e.CA().Pool(),
		},
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", listen, err)
	}
	logger.Info("web console listening", "address", ln.Addr().String())
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func bannerTo(w io.Writer, lines ...string) { pid1.Banner(w, lines...) }
