// Package apiclient is the Go client of Cairn's /api/v1, used by the CLI, the tests
// and compute nodes. It trusts only the engine's CA when given its PEM.
package apiclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Prefix is where the API lives below the engine's URL.
const Prefix = "/api/v1"

// Error is an error answer of the API: its HTTP status and its message, which says
// what to do.
type Error struct {
	Status  int
	Message string
}

// Error returns the API's message.
func (e *Error) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("HTTP %d %s", e.Status, http.StatusText(e.Status))
	}
	return e.Message
}

// StatusOf is the HTTP status of an API error, or 0 for other errors.
func StatusOf(err error) int {
	var ae *Error
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

// Auth authenticates requests.
type Auth interface {
	authorize(r *http.Request)
}

type basicAuth struct{ name, password string }

func (a basicAuth) authorize(r *http.Request) { r.SetBasicAuth(a.name, a.password) }

type bearerAuth string

func (a bearerAuth) authorize(r *http.Request) { r.Header.Set("Authorization", "Bearer "+string(a)) }

// Basic authenticates with a user name and password.
func Basic(name, password string) Auth { return basicAuth{name, password} }

// Bearer authenticates with an API token (or, for Join, the join token).
func Bearer(token string) Auth { return bearerAuth(token) }

// Option changes a Client.
type Option func(*Client)

// WithCertificate makes the client present cert (a node's certificate, for
// heartbeats).
func WithCertificate(cert tls.Certificate) Option {
	return func(c *Client) { c.tls.Certificates = []tls.Certificate{cert} }
}

// WithTimeout sets the timeout of each request (30 seconds by default).
func WithTimeout(d time.Duration) Option {
	return func(c *Client) { c.timeout = d }
}

// Client calls one engine's API.
type Client struct {
	base    string
	auth    Auth
	tls     *tls.Config
	timeout time.Duration
	// http bounds every request by timeout; stream has no overall bound, for
	// uploads, downloads and waits that may take longer.
	http   *http.Client
	stream *http.Client
	err    error
}

// New returns a client of the engine at baseURL ("https://10.0.0.1"). caPEM is the
// engine's CA; nil trusts the system's roots. auth may be nil for public routes.
func New(baseURL string, caPEM []byte, auth Auth, opts ...Option) *Client {
	c := &Client{
		base:    strings.TrimRight(baseURL, "/"),
		auth:    auth,
		tls:     &tls.Config{MinVersion: tls.VersionTLS12},
		timeout: 30 * time.Second,
	}
	if caPEM != nil {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			c.err = errors.New("the engine's CA certificate is not valid PEM; log in again")
		}
		c.tls.RootCAs = pool
	}
	if u, err := url.Parse(c.base); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		c.err = fmt.Errorf("engine URL %q: give it as https://HOST", baseURL)
	}
	for _, o := range opts {
		o(c)
	}
	tr := &http.Transport{
		TLSClientConfig:     c.tls,
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout: 30 * time.Second,
		// An upload chunk is answered once it is written; a long wait is answered
		// within a minute. An engine silent for longer than this is gone.
		ResponseHeaderTimeout: 3 * time.Minute,
		IdleConnTimeout:       90 * time.Second,
	}
	c.http = &http.Client{Timeout: c.timeout, Transport: tr}
	c.stream = &http.Client{Transport: tr}
	return c
}

// BaseURL is the engine's URL.
func (c *Client) BaseURL() string { return c.base }

// do sends a request with in as JSON body (when not nil) and decodes the answer into
// out (when not nil).
func (c *Client) do(ctx context.Context, method, path string, auth Auth, in, out any) error {
	return c.doWith(ctx, c.http, method, path, auth, in, out)
}

// doWith is do with a chosen HTTP client.
func (c *Client) doWith(ctx context.Context, hc *http.Client, method, path string, auth Auth, in, out any) error {
	if c.err != nil {
		return c.err
	}
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+Prefix+path, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if auth != nil {
		auth.authorize(req)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("reach the engine at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	return c.answer(resp, method, path, out)
}

// answer reads an API answer: an *Error for a status of 400 and above, otherwise
// the JSON body decoded into out (when not nil; a *[]byte gets the raw body).
func (c *Client) answer(resp *http.Response, method, path string, out any) error {
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read answer of %s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 400 {
		return c.apiError(resp.StatusCode, data)
	}
	if out == nil {
		return nil
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = data
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode answer of %s %s: %w", method, path, err)
	}
	return nil
}

// apiError makes an *Error of an error answer's status and body.
func (c *Client) apiError(status int, body []byte) *Error {
	var eb struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &eb) != nil || eb.Error == "" {
		eb.Error = fmt.Sprintf("HTTP %d %s from %s; is this a Cairn engine?", status, http.StatusText(status), c.base)
	}
	return &Error{Status: status, Message: eb.Error}
}

func get[T any](ctx context.Context, c *Client, path string) (T, error) {
	var v T
	err := c.do(ctx, "GET", path, c.auth, nil, &v)
	return v, err
}

func list[T any](ctx context.Context, c *Client, path string) ([]T, error) {
	var v struct {
		Items []T `json:"items"`
	}
	err := c.do(ctx, "GET", path, c.auth, nil, &v)
	return v.Items, err
}

func esc(id string) string { return url.PathEscape(id) }
