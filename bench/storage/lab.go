package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cairn-os/cairn/supervisor/agent"
	"github.com/cairn-os/cairn/supervisor/api"
	"github.com/cairn-os/cairn/supervisor/console"
	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/supervisor/hostcmd"
	"github.com/cairn-os/cairn/supervisor/virt"
	"golang.org/x/crypto/bcrypt"
)

const adminPassword = "bench-storage-password"

// labConfig says where one engine keeps its state, pools and consoles.
type labConfig struct {
	stateDir string
	// poolsDir and pool0Driver are engine.Config's; empty for <state>/pools and "dir".
	poolsDir, pool0Driver string
	consoles, logs        string
}

// lab is an engine on this host, as the host tests set one up: state in a folder, the
// host's libvirtd as the admin's own node, the API on a local TLS listener.
type lab struct {
	e   *engine.Engine
	srv *httptest.Server
	// pool0 is pool 0's folder and pool0Driver its driver.
	pool0, pool0Driver string
	// uuids are the libvirt UUIDs of servers made, for the final clean-up.
	uuids map[string]bool
}

// openLab opens an engine with cfg and serves its API.
func openLab(ctx context.Context, logger *slog.Logger, cfg labConfig) (*lab, error) {
	e, err := engine.Open(ctx, engine.Config{
		StateDir:      cfg.stateDir,
		URL:           "https://cairn.bench",
		LANURL:        "https://127.0.0.1",
		Logger:        logger,
		BcryptCost:    bcrypt.MinCost,
		DomainType:    "qemu",
		PoolsDir:      cfg.poolsDir,
		Pool0Driver:   cfg.pool0Driver,
		ConsoleDir:    cfg.consoles,
		ConsoleLogDir: cfg.logs,
		Hypervisor: func(ctx context.Context, n engine.Node) (*virt.Conn, error) {
			return virt.DialLocal(ctx, virt.DefaultSocket)
		},
		Console: func(n engine.Node, uuid string, kind console.Kind) console.Target {
			return console.LocalTarget(cfg.consoles, cfg.logs, uuid, kind)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("open engine in %s: %w", cfg.stateDir, err)
	}
	l := &lab{e: e, uuids: map[string]bool{}}
	if err := l.register(ctx); err != nil {
		e.Close()
		return nil, err
	}
	l.srv = httptest.NewTLSServer(api.New(e, logger))
	var p engine.Pool
	if err := l.call(ctx, "GET", "/pools/0", nil, &p); err != nil {
		l.close(ctx)
		return nil, err
	}
	if p.State != engine.PoolReady {
		l.close(ctx)
		return nil, fmt.Errorf("pool 0 at %s is %s: %s", p.Path, p.State, p.Problem)
	}
	l.pool0, l.pool0Driver = p.Path, p.Driver
	return l, nil
}

// register makes the admin account and this host the admin's own compute node.
func (l *lab) register(ctx context.Context) error {
	if _, err := l.e.EnsureAdmin(ctx, adminPassword); err != nil {
		return fmt.Errorf("make the admin account: %w", err)
	}
	inv, err := agent.Inventory(ctx)
	if err != nil {
		return fmt.Errorf("read this host's inventory: %w", err)
	}
	if _, err := l.e.RegisterLocalNode(ctx, inv); err != nil {
		return fmt.Errorf("register this host as the local node: %w", err)
	}
	hb, err := agent.Stats()
	if err != nil {
		return fmt.Errorf("read this host's stats: %w", err)
	}
	if err := l.e.LocalHeartbeat(ctx, hb); err != nil {
		return fmt.Errorf("first heartbeat of the local node: %w", err)
	}
	return nil
}

// close stops the API and the engine, and forces off and undefines any server this
// lab made that is still defined.
func (l *lab) close(ctx context.Context) {
	if l.srv != nil {
		l.srv.Close()
	}
	l.e.Close()
	for uuid := range l.uuids {
		virshGone(ctx, uuid)
	}
}

// virshGone destroys and undefines a domain, ignoring "not running" and "not found".
func virshGone(ctx context.Context, domain string) {
	ctx = context.WithoutCancel(ctx)
	hostcmd.Exec{}.Run(ctx, "virsh", "-c", "qemu:///system", "destroy", domain)
	hostcmd.Exec{}.Run(ctx, "virsh", "-c", "qemu:///system", "undefine", domain)
}

// call sends a JSON request to the API and decodes a 2xx answer into out (when not
// nil); any other status is an error carrying the API's message.
func (l *lab) call(ctx context.Context, method, path string, body, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, l.srv.URL+api.Prefix+path, r)
	if err != nil {
		return err
	}
	req.SetBasicAuth("admin", adminPassword)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return l.send(req, out)
}

func (l *lab) send(req *http.Request, out any) error {
	res, err := l.srv.Client().Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	if res.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, res.Status, strings.TrimSpace(string(data)))
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: decode the answer %q: %w", req.Method, req.URL.Path, data, err)
		}
	}
	return nil
}

// wait waits for an operation to end and returns it; an operation that did not
// succeed is an error with its message.
func (l *lab) wait(ctx context.Context, op engine.Operation, within time.Duration) (engine.Operation, error) {
	deadline := time.Now().Add(within)
	for op.State == engine.OpRunning || op.State == "" {
		if time.Now().After(deadline) {
			return op, fmt.Errorf("operation %s (%s of %s) still runs after %s", op.ID, op.Kind, op.Target, within)
		}
		if err := l.call(ctx, "GET", "/operations/"+op.ID+"?wait=60s", nil, &op); err != nil {
			return op, err
		}
	}
	if op.State != engine.OpSucceeded {
		return op, fmt.Errorf("operation %s (%s of %s) %s: %s", op.ID, op.Kind, op.Target, op.State, op.Error)
	}
	return op, nil
}

// upload sends a file as a new image in pool 0 in one request.
func (l *lab) upload(ctx context.Context, path, name, format string) (engine.Image, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return engine.Image{}, err
	}
	pool := 0
	var im engine.Image
	if err := l.call(ctx, "POST", "/images", engine.ImageRequest{Name: name, Format: format, Size: fi.Size(), Upload: true, Pool: &pool}, &im); err != nil {
		return engine.Image{}, fmt.Errorf("upload %s: %w", filepath.Base(path), err)
	}
	f, err := os.Open(path)
	if err != nil {
		return engine.Image{}, err
	}
	defer f.Close()
	req, err := http.NewRequestWithContext(ctx, "PATCH", l.srv.URL+api.Prefix+"/images/"+im.ID+"/upload", f)
	if err != nil {
		return engine.Image{}, err
	}
	req.ContentLength = fi.Size()
	req.SetBasicAuth("admin", adminPassword)
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	req.Header.Set("Upload-Offset", "0")
	if err := l.send(req, nil); err != nil {
		return engine.Image{}, fmt.Errorf("upload %s: %w", filepath.Base(path), err)
	}
	if err := l.call(ctx, "GET", "/images/"+im.ID, nil, &im); err != nil {
		return engine.Image{}, err
	}
	if im.State != engine.ImageReady {
		return engine.Image{}, fmt.Errorf("uploaded image %s is %s, not ready", im.ID, im.State)
	}
	return im, nil
}

// setMaster marks an image master or not.
func (l *lab) setMaster(ctx context.Context, id string, master bool) error {
	return l.call(ctx, "PATCH", "/images/"+id, engine.ImageUpdate{Master: &master}, nil)
}

// deleteImage deletes an image and its file.
func (l *lab) deleteImage(ctx context.Context, id string) error {
	return l.call(ctx, "DELETE", "/images/"+id, nil, nil)
}

// removeServer forces a server off and deletes it with its disks.
func (l *lab) removeServer(ctx context.Context, s engine.Server) error {
	ctx = context.WithoutCancel(ctx)
	if s.State != engine.ServerShutoff {
		if err := l.call(ctx, "POST", "/servers/"+s.ID+"/stop", nil, &s); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(time.Minute)
	for s.State != engine.ServerShutoff {
		if time.Now().After(deadline) {
			return fmt.Errorf("server %s is still %s a minute after it was forced off", s.ID, s.State)
		}
		time.Sleep(100 * time.Millisecond)
		if err := l.call(ctx, "GET", "/servers/"+s.ID, nil, &s); err != nil {
			return err
		}
	}
	if err := l.call(ctx, "DELETE", "/servers/"+s.ID+"?disks=delete", nil, nil); err != nil {
		return err
	}
	delete(l.uuids, s.UUID)
	return nil
}

// errNoRoot is returned when the benchmark does not run as root.
var errNoRoot = errors.New("run the storage benchmark as root: it starts libvirt domains and mounts a btrfs loop device")
