package pki

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// ServerCertificate returns the engine's HTTPS certificate for names and ips. It is
// kept in the pki directory and reissued when the set of names and addresses changes,
// when it nears expiry, or when it was not issued by this CA.
func (ca *CA) ServerCertificate(names []string, ips []net.IP) (tls.Certificate, error) {
	names, ips = normNames(names), normIPs(ips)
	if len(names) == 0 && len(ips) == 0 {
		return tls.Certificate{}, errors.New("issue server certificate: give at least one name or address")
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	certPath, keyPath := filepath.Join(ca.dir, "server.pem"), filepath.Join(ca.dir, "server.key")
	if cert, key, err := loadPair(certPath, keyPath); err == nil && ca.current(cert, x509.ExtKeyUsageServerAuth) &&
		slices.Equal(normNames(cert.DNSNames), names) && ipsEqual(normIPs(cert.IPAddresses), ips) {
		return ca.withCA(tlsPair(cert, key)), nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate server key: %w", err)
	}
	cn := "cairn"
	if len(names) > 0 {
		cn = names[0]
	}
	cert, err := ca.issue(&x509.Certificate{
		Subject:     pkix.Name{Organization: []string{"Cairn"}, CommonName: cn},
		DNSNames:    names,
		IPAddresses: ips,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, &key.PublicKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := savePair(certPath, keyPath, cert, key); err != nil {
		return tls.Certificate{}, err
	}
	return ca.withCA(tlsPair(cert, key)), nil
}

// ServerTLSConfig is the TLS configuration of the engine's HTTPS listener: the server
// certificate for names and ips, and client certificates verified against the CA
// when a client offers one (tls.VerifyClientCertIfGiven). People and scripts come
// without one and authenticate in HTTP; compute nodes present theirs on heartbeats.
// The API checks the node certificate again itself, so a listener configured
// otherwise is not a hole.
func (ca *CA) ServerTLSConfig(names []string, ips []net.IP) (*tls.Config, error) {
	cert, err := ca.ServerCertificate(names, ips)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    ca.pool,
	}, nil
}

var cnPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,62}$`)

// ClientCertificate returns the client certificate with common name cn (the admin's
// is AdminClientCN), kept in the pki directory and reissued when it nears expiry.
func (ca *CA) ClientCertificate(cn string) (tls.Certificate, error) {
	if !cnPattern.MatchString(cn) {
		return tls.Certificate{}, fmt.Errorf("issue client certificate %q: the name must be lowercase letters, digits, '.' and '-'", cn)
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	certPath, keyPath := filepath.Join(ca.dir, "client-"+cn+".pem"), filepath.Join(ca.dir, "client-"+cn+".key")
	if cert, key, err := loadPair(certPath, keyPath); err == nil && ca.current(cert, x509.ExtKeyUsageClientAuth) && cert.Subject.CommonName == cn {
		return tlsPair(cert, key), nil
	}
	// Missing, damaged, expiring or foreign: it is ours to issue again.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate client key %q: %w", cn, err)
	}
	cert, err := ca.issue(&x509.Certificate{
		Subject:     pkix.Name{Organization: []string{"Cairn"}, CommonName: cn},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, &key.PublicKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := savePair(certPath, keyPath, cert, key); err != nil {
		return tls.Certificate{}, err
	}
	return tlsPair(cert, key), nil
}

// SignNodeCSR signs a compute node's PEM certificate request: common name
// "node:<nodeID>", the node's addresses as IP SANs, usable for client and server
// authentication. It returns the certificate in PEM form. The request's own subject
// and names are ignored; only its key is used.
func (ca *CA) SignNodeCSR(csrPEM string, nodeID string, ips []net.IP) (string, error) {
	if nodeID == "" {
		return "", errors.New("sign node certificate: empty node id")
	}
	block, _ := pem.Decode([]byte(csrPEM))
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return "", fmt.Errorf("sign node certificate %s: the csr must be a PEM \"CERTIFICATE REQUEST\"", nodeID)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return "", fmt.Errorf("sign node certificate %s: parse csr: %w", nodeID, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return "", fmt.Errorf("sign node certificate %s: the csr's signature does not match its key: %w", nodeID, err)
	}
	if err := checkKey(csr.PublicKey); err != nil {
		return "", fmt.Errorf("sign node certificate %s: %w", nodeID, err)
	}
	cert, err := ca.issue(&x509.Certificate{
		Subject:     pkix.Name{Organization: []string{"Cairn"}, CommonName: NodeCNPrefix + nodeID},
		IPAddresses: normIPs(ips),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}, csr.PublicKey)
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})), nil
}

// VerifyNode checks that cert was issued by this CA for a node, for client use, and
// returns the node's ID from its common name.
func (ca *CA) VerifyNode(cert *x509.Certificate) (string, error) {
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots:     ca.pool,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return "", fmt.Errorf("verify node certificate %q: %w", cert.Subject.CommonName, err)
	}
	id, ok := strings.CutPrefix(cert.Subject.CommonName, NodeCNPrefix)
	if !ok || id == "" {
		return "", fmt.Errorf("verify node certificate %q: not a node certificate", cert.Subject.CommonName)
	}
	return id, nil
}

// current reports whether a persisted certificate was issued by this CA for usage and
// is not about to expire.
func (ca *CA) current(cert *x509.Certificate, usage x509.ExtKeyUsage) bool {
	if time.Until(cert.NotAfter) < RenewBefore {
		return false
	}
	_, err := cert.Verify(x509.VerifyOptions{Roots: ca.pool, KeyUsages: []x509.ExtKeyUsage{usage}})
	return err == nil
}

func checkKey(pub any) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return errors.New("the csr's ECDSA key must be on P-256 or P-384")
		}
	case ed25519.PublicKey:
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return errors.New("the csr's RSA key must have at least 2048 bits")
		}
	default:
		return fmt.Errorf("the csr's key type %T is not supported; use ECDSA P-256", pub)
	}
	return nil
}

func normNames(names []string) []string {
	out := []string{}
	for _, n := range names {
		n = strings.ToLower(strings.TrimSpace(n))
		if n != "" && net.ParseIP(n) == nil {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func normIPs(ips []net.IP) []net.IP {
	out := []net.IP{}
	for _, ip := range ips {
		if ip == nil {
			continue
		}
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		out = append(out, ip)
	}
	slices.SortFunc(out, func(a, b net.IP) int { return strings.Compare(a.String(), b.String()) })
	return slices.CompactFunc(out, net.IP.Equal)
}

func ipsEqual(a, b []net.IP) bool { return slices.EqualFunc(a, b, net.IP.Equal) }
