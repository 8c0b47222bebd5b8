package engineapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"

	"github.com/coder/websocket"
)

// longClient is the pinned client without its overall timeout: calls that start
// servers on a TCG-in-TCG node take longer than 30 s; the caller's context bounds them.
func (c *Client) longClient() (*http.Client, error) {
	hc := c.client()
	if hc == nil {
		return nil, fmt.Errorf("the engine's CA is not pinned yet (call Pin)")
	}
	return &http.Client{Transport: hc.Transport}, nil
}

// Do calls method /api/v1+path with body as JSON (none when nil) and decodes a 2xx
// answer into out (when not nil). Another status is an error with the API's message.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+"/api/v1"+path, r)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.send(req, out)
}

func (c *Client) send(req *http.Request, out any) error {
	hc, err := c.longClient()
	if err != nil {
		return err
	}
	req.SetBasicAuth(c.User, c.Password)
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, apiError(data))
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: decode: %w", req.Method, req.URL.Path, err)
		}
	}
	return nil
}

// Upload sends a file as a new image in pool 0 (one chunk) and returns its ID.
func (c *Client) Upload(ctx context.Context, path, name, format string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	var im struct {
		ID string `json:"id"`
	}
	err = c.Do(ctx, "POST", "/images", map[string]any{"name": name, "format": format, "size": fi.Size(), "upload": true}, &im)
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, "PATCH", c.BaseURL+"/api/v1/images/"+im.ID+"/upload", f)
	if err != nil {
		return "", err
	}
	req.ContentLength = fi.Size()
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	req.Header.Set("Upload-Offset", "0")
	return im.ID, c.send(req, nil)
}

// Serial reads server id's serial console (history, then live output) through the
// API's websocket until re matches what arrived, or ctx ends; it returns the output.
func (c *Client) Serial(ctx context.Context, id string, re *regexp.Regexp) (string, error) {
	return c.SerialType(ctx, id, "", re)
}

// SerialType is Serial that also types input on the console once it is open.
func (c *Client) SerialType(ctx context.Context, id, input string, re *regexp.Regexp) (string, error) {
	hc, err := c.longClient()
	if err != nil {
		return "", err
	}
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth(c.User, c.Password)
	h := http.Header{"Authorization": req.Header["Authorization"]}
	url := strings.Replace(c.BaseURL, "https://", "wss://", 1) + "/api/v1/servers/" + id + "/console/serial"
	conn, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: hc, HTTPHeader: h})
	if err != nil {
		return "", fmt.Errorf("serial console of %s: %w", id, err)
	}
	defer conn.CloseNow()
	if input != "" {
		if err := conn.Write(ctx, websocket.MessageBinary, []byte(input)); err != nil {
			return "", fmt.Errorf("serial console of %s: type: %w", id, err)
		}
	}
	var got bytes.Buffer
	for !re.Match(got.Bytes()) {
		_, data, err := conn.Read(ctx)
		if err != nil {
			return got.String(), fmt.Errorf("serial console of %s: %w", id, err)
		}
		got.Write(data)
	}
	return got.String(), nil
}
