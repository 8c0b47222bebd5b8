package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/cairn-os/cairn/supervisor/engine"
)

// errLost is a heartbeat the admin answered with 401, 403 or 404: it no longer knows
// the node or its certificate, and the node must join again.
var errLost = errors.New("admin no longer knows this node")

// heartbeatLoop beats now and then every interval (the admin's, else the configured
// one) over mutual TLS, until the admin loses the node or ctx ends.
func (a *Agent) heartbeatLoop(ctx context.Context, resp engine.JoinResponse, id *nodeIdentity, host string) {
	interval := time.Duration(resp.HeartbeatSeconds) * time.Second
	if interval <= 0 {
		interval = a.cfg.Interval
	}
	hc := httpClient(&tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{id.cert},
		RootCAs:      id.ca,
		ServerName:   host,
	})
	defer hc.CloseIdleConnections()
	u := a.cfg.Args.AdminURL + "/api/v1/nodes/" + url.PathEscape(id.id) + "/heartbeat"
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		secs, err := a.beat(ctx, hc, u, host)
		if d := time.Duration(secs) * time.Second; err == nil && d > 0 && d != interval {
			interval = d
			t.Reset(interval)
			a.log.Info("heartbeat interval changed by the admin", "node", id.id, "interval", interval)
		}
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, errLost):
			a.setState("lost", slog.LevelWarn, "admin lost this node, joining again", "node", id.id, "err", err)
			return
		case err != nil:
			a.setState("heartbeat failing", slog.LevelWarn, "heartbeat failed, still trying", "node", id.id, "err", err)
		default:
			// Right after a join the join's log line says enough.
			if a.currentState() != "joined" {
				a.setState("beating", slog.LevelInfo, "heartbeats reach the admin", "node", id.id, "interval", interval)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *Agent) currentState() string {
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	return a.state
}

// beat sends one heartbeat. It returns the interval the admin asks for in its answer
// ({"heartbeat_seconds": n}), 0 when it names none.
func (a *Agent) beat(ctx context.Context, hc *http.Client, u, host string) (int, error) {
	hb, err := Stats()
	if err != nil {
		return 0, fmt.Errorf("heartbeat: %w", err)
	}
	if _, addr, err := InterfaceToward(ctx, host); err == nil {
		hb.Address = addr.String()
	}
	if a.cfg.NetworkVersion != nil {
		hb.NetworkVersion = a.cfg.NetworkVersion()
	}
	body, err := json.Marshal(hb)
	if err != nil {
		return 0, fmt.Errorf("heartbeat: encode: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("heartbeat %s: %w", u, err)
	}
	req.Header.Set("Content-Type", "application/json")
	r, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("heartbeat %s: %w", u, err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	switch {
	case r.StatusCode == http.StatusUnauthorized || r.StatusCode == http.StatusForbidden || r.StatusCode == http.StatusNotFound:
		return 0, fmt.Errorf("heartbeat %s: %w: %s", u, errLost, apiError(r.Status, b))
	case r.StatusCode/100 != 2:
		return 0, fmt.Errorf("heartbeat %s: %s", u, apiError(r.Status, b))
	}
	var ans struct {
		HeartbeatSeconds int `json:"heartbeat_seconds"`
	}
	json.Unmarshal(b, &ans) // an empty or other answer names no interval
	return ans.HeartbeatSeconds, nil
}
