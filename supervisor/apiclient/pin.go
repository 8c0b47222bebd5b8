package apiclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cairn-os/cairn/supervisor/pki"
)

// FetchCA gets the CA certificate an engine serves at /api/v1/engine/ca.pem before
// anything is trusted, and checks that the engine's own HTTPS certificate was issued
// by that CA for the URL's host. The caller must still check the CA's fingerprint
// (pki.Fingerprint, pki.VerifyFingerprint) against one it got another way; PinCA
// does both.
func FetchCA(ctx context.Context, baseURL string) (*x509.Certificate, []byte, error) {
	base := strings.TrimRight(baseURL, "/")
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, nil, fmt.Errorf("engine URL %q: give it as https://HOST", baseURL)
	}
	var leaf *x509.Certificate
	var chain []*x509.Certificate
	hc := &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			// Nothing is trusted yet: the certificate is checked below, against the
			// CA the caller pins by its fingerprint.
			InsecureSkipVerify: true,
			VerifyConnection: func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 {
					return errors.New("the engine sent no certificate")
				}
				leaf, chain = cs.PeerCertificates[0], cs.PeerCertificates[1:]
				return nil
			},
		}},
	}
	req, err := http.NewRequestWithContext(ctx, "GET", base+Prefix+"/engine/ca.pem", nil)
	if err != nil {
		return nil, nil, fmt.Errorf("fetch ca from %s: %w", base, err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("reach the engine at %s: %w", base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("fetch ca from %s: %w", base, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("fetch ca from %s: HTTP %d; is this a Cairn engine?", base, resp.StatusCode)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("fetch ca from %s: the answer is not a PEM certificate; is this a Cairn engine?", base)
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil || !ca.IsCA {
		return nil, nil, fmt.Errorf("fetch ca from %s: the answer is not a CA certificate", base)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	inter := x509.NewCertPool()
	for _, c := range chain {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: u.Hostname()}); err != nil {
		return nil, nil, fmt.Errorf("fetch ca from %s: the engine's certificate is not from the CA it serves for %s: %w", base, u.Hostname(), err)
	}
	return ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}), nil
}

// PinCA fetches the engine's CA and checks it against fingerprint ("sha256:<hex>"),
// returning its PEM for New.
func PinCA(ctx context.Context, baseURL, fingerprint string) ([]byte, error) {
	ca, caPEM, err := FetchCA(ctx, baseURL)
	if err != nil {
		return nil, err
	}
	if err := pki.VerifyFingerprint(ca, fingerprint); err != nil {
		return nil, fmt.Errorf("pin the CA of %s: %w", baseURL, err)
	}
	return caPEM, nil
}
