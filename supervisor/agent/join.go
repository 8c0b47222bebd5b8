package agent

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/cairn-os/cairn/supervisor/engine"
)

// errRejected is a join the admin answered with 401 or 403: the token is wrong.
var errRejected = errors.New("join token rejected")

// fingerprint returns "sha256:" and the hex SHA-256 of a certificate's DER.
func fingerprint(der []byte) string {
	s := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(s[:])
}

// adminTLS is the TLS configuration for talking to the admin before the node has a
// certificate. System roots are not used: the admin's chain must contain a certificate
// whose DER hashes to fp (the CA), and the leaf must verify against that certificate as
// the only root, for the host the admin URL names.
func adminTLS(fp []byte, host string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Verification is done in VerifyConnection, against the fingerprinted CA only.
		InsecureSkipVerify: true, //nolint:gosec
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyByFingerprint(cs.PeerCertificates, fp, host)
		},
	}
}

func verifyByFingerprint(chain []*x509.Certificate, fp []byte, host string) error {
	if len(chain) == 0 {
		return errors.New("verify admin certificate: none presented")
	}
	var ca *x509.Certificate
	inter := x509.NewCertPool()
	for _, c := range chain {
		s := sha256.Sum256(c.Raw)
		if subtle.ConstantTimeCompare(s[:], fp) == 1 {
			ca = c
		} else if c != chain[0] {
			inter.AddCert(c)
		}
	}
	if ca == nil {
		return fmt.Errorf("verify admin certificate %q: no certificate in its chain matches the CA fingerprint sha256:%x from cairn.ca (the admin must send its CA with its certificate)",
			chain[0].Subject.CommonName, fp)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	_, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		DNSName:       host,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Errorf("verify admin certificate %q against the CA: %w", chain[0].Subject.CommonName, err)
	}
	return nil
}

// newCSR makes a PEM certificate request for key. The admin decides the subject
// (CN node:<id>) and the SANs; the request only proves possession of the key.
func newCSR(key crypto.Signer, name string) (string, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: name},
	}, key)
	if err != nil {
		return "", fmt.Errorf("create certificate request: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), nil
}

// join sends one join request and checks the answer: the certificate must be for key
// and chain to the CA the response carries, and that CA must be the fingerprinted one.
func join(ctx context.Context, hc *http.Client, adminURL, token string, req engine.JoinRequest, key crypto.Signer, fp []byte) (engine.JoinResponse, tls.Certificate, *x509.CertPool, error) {
	var resp engine.JoinResponse
	body, err := json.Marshal(req)
	if err != nil {
		return resp, tls.Certificate{}, nil, fmt.Errorf("join: encode request: %w", err)
	}
	u := adminURL + "/api/v1/nodes/join"
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return resp, tls.Certificate{}, nil, fmt.Errorf("join %s: %w", u, err)
	}
	hr.Header.Set("Authorization", "Bearer "+token)
	hr.Header.Set("Content-Type", "application/json")
	r, err := hc.Do(hr)
	if err != nil {
		return resp, tls.Certificate{}, nil, fmt.Errorf("join %s: %w", u, err)
	}
	defer r.Body.Close()
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return resp, tls.Certificate{}, nil, fmt.Errorf("join %s: read answer: %w", u, err)
	}
	switch {
	case r.StatusCode == http.StatusUnauthorized || r.StatusCode == http.StatusForbidden:
		return resp, tls.Certificate{}, nil, fmt.Errorf("join %s: %w: %s", u, errRejected, apiError(r.Status, b))
	case r.StatusCode/100 != 2:
		return resp, tls.Certificate{}, nil, fmt.Errorf("join %s: %s", u, apiError(r.Status, b))
	}
	if err := json.Unmarshal(b, &resp); err != nil {
		return resp, tls.Certificate{}, nil, fmt.Errorf("join %s: decode answer: %w", u, err)
	}
	cert, pool, err := identity(resp, key, fp)
	if err != nil {
		return resp, tls.Certificate{}, nil, fmt.Errorf("join %s: %w", u, err)
	}
	return resp, cert, pool, nil
}

// identity turns a join response into the node's TLS certificate and the CA pool.
func identity(resp engine.JoinResponse, key crypto.Signer, fp []byte) (tls.Certificate, *x509.CertPool, error) {
	cas := parseCerts([]byte(resp.CA))
	var ca *x509.Certificate
	for _, c := range cas {
		if s := sha256.Sum256(c.Raw); subtle.ConstantTimeCompare(s[:], fp) == 1 {
			ca = c
		}
	}
	if ca == nil {
		return tls.Certificate{}, nil, errors.New("answer's CA does not match the cairn.ca fingerprint")
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	chain := parseCerts([]byte(resp.Certificate))
	if len(chain) == 0 {
		return tls.Certificate{}, nil, errors.New("answer has no certificate")
	}
	leaf := chain[0]
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return tls.Certificate{}, nil, errors.New("answer's certificate is not for this node's key")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	// The node uses the certificate both ways: as a client for heartbeats and as the
	// server of the libvirt listener.
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
			return tls.Certificate{}, nil, fmt.Errorf("answer's certificate does not verify against the CA for client and server use: %w", err)
		}
	}
	cert := tls.Certificate{PrivateKey: key, Leaf: leaf}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	return cert, pool, nil
}

func parseCerts(b []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		if c, err := x509.ParseCertificate(blk.Bytes); err == nil {
			out = append(out, c)
		}
	}
}

// apiError is the status and the {"error": ...} message of an API answer.
func apiError(status string, body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return status + ": " + e.Error
	}
	if len(body) > 200 {
		body = body[:200]
	}
	return status + ": " + string(bytes.TrimSpace(body))
}

// httpClient is a client that uses only cfg (no proxy from the environment: the admin
// is on the LAN).
func httpClient(cfg *tls.Config) *http.Client {
	return &http.Client{
		Timeout: 20 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:     cfg,
			TLSHandshakeTimeout: 10 * time.Second,
			MaxIdleConns:        2,
			IdleConnTimeout:     time.Minute,
		},
	}
}

// adminHost is the host name or IP of the admin URL.
func adminHost(adminURL string) (string, error) {
	u, err := url.Parse(adminURL)
	if err != nil || u.Hostname() == "" {
		return "", fmt.Errorf("admin url %q: want https://host[:port]", adminURL)
	}
	return u.Hostname(), nil
}
