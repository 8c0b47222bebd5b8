// Package engineapi is the harness's small client of the admin node's /api/v1, as
// the qemu tests and `make run` see it from the host through a forwarded port. It
// decodes only the fields the harness checks, so that it keeps working while the API
// grows.
package engineapi

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// ErrUnauthorized is returned when the API refuses the name and password.
var ErrUnauthorized = errors.New("unauthorized")

// Node is a node as GET /api/v1/nodes lists it.
type Node struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	MAC         string    `json:"mac"`
	Address     string    `json:"address"`
	Roles       []string  `json:"roles"`
	State       string    `json:"state"`
	CPUs        int       `json:"cpus"`
	MemoryBytes uint64    `json:"memory_bytes"`
	KVM         bool      `json:"kvm"`
	LastSeen    time.Time `json:"last_seen"`
}

// Service is a supervised program as GET /api/v1/services lists it.
type Service struct {
	Name     string `json:"name"`
	State    string `json:"state"`
	Restarts int    `json:"restarts"`
	PID      int    `json:"pid"`
}

// Client talks to one admin node.
type Client struct {
	// BaseURL is the console's address, e.g. https://127.0.0.1:8443.
	BaseURL string
	// User and Password authenticate API calls (HTTP Basic).
	User, Password string

	mu     sync.Mutex
	ca     *x509.Certificate
	pinned *http.Client
}

// New returns a client of the admin at baseURL that logs in as user.
func New(baseURL, user, password string) *Client {
	return &Client{BaseURL: strings.TrimRight(baseURL, "/"), User: user, Password: password}
}

// bootstrap is the only client that does not check the server's certificate. The
// engine makes its own CA on first boot, so before the harness has fetched that CA
// there is nothing to check against; it uses this client only to ask for /health and
// for the CA itself, then pins that CA for everything else (see Pin). A real user does
// the same once, by comparing the CA fingerprint the admin shows on its console.
var bootstrap = &http.Client{
	Timeout: 10 * time.Second,
	Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		DisableKeepAlives: true,
	},
}

// Health asks GET /api/v1/health once and returns nil when it answers 200. It uses
// the bootstrap client even after Pin: /health is public and carries no secret, and
// an admin that comes back with a different CA must still be seen as up, so that Pin
// and the caller can say that the CA changed.
func (c *Client) Health(ctx context.Context) error {
	hc := bootstrap
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.BaseURL+"/api/v1/health", nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// Pin fetches the engine's CA certificate (GET /api/v1/engine/ca.pem) and from then on
// accepts only server certificates that it signed. When that route is missing it takes
// the CA from the top of the chain the server presents, if that is a CA. Either way the
// CA must have signed the certificate the server is using.
func (c *Client) Pin(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.BaseURL+"/api/v1/engine/ca.pem", nil)
	if err != nil {
		return err
	}
	resp, err := bootstrap.Do(req)
	if err != nil {
		return fmt.Errorf("fetch engine ca: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var ca *x509.Certificate
	if resp.StatusCode == http.StatusOK {
		blk, _ := pem.Decode(body)
		if blk == nil || blk.Type != "CERTIFICATE" {
			return errors.New("fetch engine ca: /api/v1/engine/ca.pem holds no PEM certificate")
		}
		if ca, err = x509.ParseCertificate(blk.Bytes); err != nil {
			return fmt.Errorf("fetch engine ca: %w", err)
		}
	} else if resp.TLS != nil && len(resp.TLS.PeerCertificates) > 1 {
		if top := resp.TLS.PeerCertificates[len(resp.TLS.PeerCertificates)-1]; top.IsCA {
			ca = top
		}
	}
	if ca == nil {
		return fmt.Errorf("fetch engine ca: GET /api/v1/engine/ca.pem: %s, and the server's chain has no CA", resp.Status)
	}
	if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 {
		return errors.New("fetch engine ca: no server certificate")
	}
	if err := verifyChain(resp.TLS.PeerCertificates, ca); err != nil {
		return fmt.Errorf("fetch engine ca: the server's certificate is not signed by the CA it serves: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ca = ca
	c.pinned = &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			// Go's own check is off only so that the host name is not compared: the
			// harness reaches the admin as 127.0.0.1 through a forwarded port, a name
			// the admin's certificate need not carry. VerifyConnection checks the
			// chain against the pinned CA on every connection instead.
			TLSClientConfig: &tls.Config{
				InsecureSkipVerify: true,
				VerifyConnection: func(cs tls.ConnectionState) error {
					return verifyChain(cs.PeerCertificates, ca)
				},
			},
		},
	}
	return nil
}

func verifyChain(chain []*x509.Certificate, ca *x509.Certificate) error {
	if len(chain) == 0 {
		return errors.New("no server certificate")
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
	return err
}

func (c *Client) client() *http.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pinned
}

// CA returns the pinned CA certificate, or nil before Pin.
func (c *Client) CA() *x509.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ca
}

// CAPEM returns the pinned CA certificate in PEM, or nil before Pin.
func (c *Client) CAPEM() []byte {
	ca := c.CA()
	if ca == nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})
}

// CAFingerprint returns "sha256:" and the hex SHA-256 of the pinned CA certificate
// (DER), the form of the cairn.ca kernel argument; "" before Pin.
func (c *Client) CAFingerprint() string {
	ca := c.CA()
	if ca == nil {
		return ""
	}
	sum := sha256.Sum256(ca.Raw)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Get calls GET /api/v1 + path with the client's name and password and decodes the
// JSON answer into out. A 401 is ErrUnauthorized.
func (c *Client) Get(ctx context.Context, path string, out any) error {
	hc := c.client()
	if hc == nil {
		return fmt.Errorf("get %s: the engine's CA is not pinned yet (call Pin)", path)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.BaseURL+"/api/v1"+path, nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth(c.User, c.Password)
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("get %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("get %s: %w", path, err)
	}
	if resp.StatusCode == http.StatusUnauthorized {
		return fmt.Errorf("get %s as %s: %w: %s", path, c.User, ErrUnauthorized, apiError(body))
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("get %s: %s: %s", path, resp.Status, apiError(body))
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("get %s: decode: %w", path, err)
	}
	return nil
}

func apiError(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return e.Error
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// Nodes returns GET /api/v1/nodes.
func (c *Client) Nodes(ctx context.Context) ([]Node, error) {
	var l struct {
		Items []Node `json:"items"`
	}
	err := c.Get(ctx, "/nodes", &l)
	return l.Items, err
}

// Node returns the node with id from GET /api/v1/nodes, and whether it is listed.
func (c *Client) Node(ctx context.Context, id string) (Node, bool, error) {
	nodes, err := c.Nodes(ctx)
	if err != nil {
		return Node{}, false, err
	}
	for _, n := range nodes {
		if n.ID == id {
			return n, true, nil
		}
	}
	return Node{}, false, nil
}

// Services returns GET /api/v1/services.
func (c *Client) Services(ctx context.Context) ([]Service, error) {
	var l struct {
		Items []Service `json:"items"`
	}
	err := c.Get(ctx, "/services", &l)
	return l.Items, err
}

// NodeID returns the ID the engine gives the node with a MAC: "n-" and the MAC's hex
// digits without colons, lowercase.
func NodeID(mac string) string {
	return "n-" + strings.ToLower(strings.ReplaceAll(mac, ":", ""))
}
