// Package pki is the engine's certificate authority, kept in <state>/pki/: the CA
// itself (ECDSA P-256, ten years), the HTTPS server certificate, the certificates
// compute nodes get when they join and the admin's client certificate for reaching
// the nodes' libvirtd over mutual TLS.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Lifetimes of what the CA issues.
const (
	CALifetime   = 10 * 365 * 24 * time.Hour
	LeafLifetime = 365 * 24 * time.Hour
	// RenewBefore is how long before expiry a persisted certificate is reissued.
	RenewBefore = 30 * 24 * time.Hour
)

// AdminClientCN is the common name of the admin's client certificate.
const AdminClientCN = "cairn-admin"

// NodeCNPrefix starts the common name of a node's certificate: "node:<id>".
const NodeCNPrefix = "node:"

// CA is the engine's certificate authority.
type CA struct {
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
	pool *x509.CertPool

	mu sync.Mutex // serialises issuing of persisted certificates
}

// LoadOrCreate loads the CA from dir, or creates a new one there (dir 0700, keys 0600)
// when dir holds none.
func LoadOrCreate(dir string) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create pki dir %s: %w", dir, err)
	}
	certPath, keyPath := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")
	cert, key, err := loadPair(certPath, keyPath)
	switch {
	case err == nil:
	case errors.Is(err, os.ErrNotExist):
		if _, statErr := os.Stat(keyPath); statErr == nil {
			return nil, fmt.Errorf("load ca %s: the key exists but the certificate does not; restore ca.pem from a backup", dir)
		}
		cert, key, err = newCA()
		if err != nil {
			return nil, err
		}
		if err := savePair(certPath, keyPath, cert, key); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("load ca %s: %w", dir, err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("load ca %s: ca.pem is not a CA certificate", dir)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{
		dir:  dir,
		cert: cert,
		key:  key,
		pem:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}),
		pool: pool,
	}, nil
}

func newCA() (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate ca key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"Cairn"}, CommonName: "Cairn engine CA " + serial.Text(16)[:8]},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CALifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create ca certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse ca certificate: %w", err)
	}
	return cert, key, nil
}

// Certificate is the CA's certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// CertPEM is the CA's certificate in PEM form.
func (ca *CA) CertPEM() []byte { return append([]byte(nil), ca.pem...) }

// Pool is a certificate pool holding only the CA, for verifying what it issued.
func (ca *CA) Pool() *x509.CertPool { return ca.pool }

// Fingerprint is "sha256:" and the hex SHA-256 of the CA certificate's DER, as
// compute nodes get it in cairn.ca= and people compare it at `cairn login`.
func (ca *CA) Fingerprint() string { return Fingerprint(ca.cert) }

// Fingerprint is "sha256:" and the hex SHA-256 of cert's DER.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// VerifyFingerprint checks that cert has fingerprint fp ("sha256:<hex>"; the prefix
// and case do not matter, colons between bytes are allowed).
func VerifyFingerprint(cert *x509.Certificate, fp string) error {
	want := strings.ToLower(strings.TrimSpace(fp))
	want = strings.TrimPrefix(want, "sha256:")
	want = strings.ReplaceAll(want, ":", "")
	if len(want) != sha256.Size*2 {
		return fmt.Errorf("verify fingerprint %q: give it as sha256: and 64 hex digits", fp)
	}
	got := Fingerprint(cert)
	if strings.TrimPrefix(got, "sha256:") != want {
		return fmt.Errorf("verify fingerprint: the certificate's fingerprint is %s, not sha256:%s", got, want)
	}
	return nil
}

// issue signs a leaf certificate for pub.
func (ca *CA) issue(tmpl *x509.Certificate, pub any) (*x509.Certificate, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-time.Hour)
	tmpl.NotAfter = now.Add(LeafLifetime)
	if tmpl.NotAfter.After(ca.cert.NotAfter) {
		tmpl.NotAfter = ca.cert.NotAfter
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	return x509.ParseCertificate(der)
}

func randomSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generate serial: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil
}

// loadPair reads a PEM certificate and its PEM PKCS#8 ECDSA key.
func loadPair(certPath, keyPath string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, err
	}
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("%s holds no PEM certificate", certPath)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parse %s: %w", certPath, err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil || kb.Type != "PRIVATE KEY" {
		return nil, nil, fmt.Errorf("%s holds no PEM private key", keyPath)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parse %s: %w", keyPath, err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("%s is not the key of %s", keyPath, certPath)
	}
	return cert, key, nil
}

// savePair writes the key first (0600) and the certificate after, each through a
// temporary file and a rename, so a crash leaves either the old pair or the new one.
func savePair(certPath, keyPath string, cert *x509.Certificate, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode key %s: %w", keyPath, err)
	}
	if err := writeFileAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	return writeFileAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644)
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// tlsPair turns a certificate and key into a tls.Certificate with Leaf set.
func tlsPair(cert *x509.Certificate, key *ecdsa.PrivateKey) tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
}

// withCA appends the CA to a certificate's chain. The HTTPS server sends it so that
// a compute node, which knows only the CA's fingerprint from its kernel arguments,
// can find the CA in the handshake and verify the server against it.
func (ca *CA) withCA(c tls.Certificate) tls.Certificate {
	c.Certificate = append(c.Certificate, ca.cert.Raw)
	return c
}
