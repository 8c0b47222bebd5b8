package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func newCSR(t *testing.T) (string, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "whatever"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), key
}

func TestCAPersists(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	ca, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	fp := ca.Fingerprint()
	if !strings.HasPrefix(fp, "sha256:") || len(fp) != len("sha256:")+64 {
		t.Fatalf("fingerprint %q", fp)
	}
	if fi, err := os.Stat(filepath.Join(dir, "ca.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("ca.key: %v, mode %v; want 0600", err, fi.Mode())
	}
	again, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if again.Fingerprint() != fp {
		t.Fatalf("fingerprint after reload %s, want %s", again.Fingerprint(), fp)
	}
	if err := VerifyFingerprint(again.Certificate(), strings.ToUpper(fp[7:])); err != nil {
		t.Fatalf("verify own fingerprint: %v", err)
	}
	other, _ := LoadOrCreate(t.TempDir())
	if err := VerifyFingerprint(other.Certificate(), fp); err == nil {
		t.Fatal("another CA matched the fingerprint")
	}
	if !ca.Certificate().IsCA || ca.Certificate().NotAfter.Sub(ca.Certificate().NotBefore) < CALifetime {
		t.Fatal("the CA is not a ten-year CA certificate")
	}
}

func TestServerCertificate(t *testing.T) {
	ca, err := LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	names, ips := []string{"cairn.lan", "localhost"}, []net.IP{net.ParseIP("10.0.0.1"), net.ParseIP("127.0.0.1")}
	c1, err := ca.ServerCertificate(names, ips)
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"cairn.lan", "localhost", "10.0.0.1", "127.0.0.1"} {
		if _, err := c1.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: host}); err != nil {
			t.Errorf("verify for %s: %v", host, err)
		}
	}
	if _, err := c1.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "evil.example"}); err == nil {
		t.Error("certificate verified for a name it does not hold")
	}
	// Same set (other order, duplicates): the persisted certificate is kept.
	c2, err := ca.ServerCertificate([]string{"localhost", "cairn.lan", "localhost"}, []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	if !c2.Leaf.Equal(c1.Leaf) {
		t.Error("the same names and addresses reissued the certificate")
	}
	// A reloaded CA keeps it too; a new address reissues it.
	ca2, _ := LoadOrCreate(ca.dir)
	c3, _ := ca2.ServerCertificate(names, ips)
	if !c3.Leaf.Equal(c1.Leaf) {
		t.Error("reloading the CA reissued the server certificate")
	}
	c4, err := ca2.ServerCertificate(names, append(ips, net.ParseIP("192.168.1.9")))
	if err != nil {
		t.Fatal(err)
	}
	if c4.Leaf.Equal(c1.Leaf) {
		t.Error("a new address did not reissue the certificate")
	}
	if _, err := c4.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "192.168.1.9"}); err != nil {
		t.Errorf("verify new address: %v", err)
	}
}

func TestSignNodeCSR(t *testing.T) {
	ca, _ := LoadOrCreate(t.TempDir())
	csr, key := newCSR(t)
	certPEM, err := ca.SignNodeCSR(csr, "n-525400aabbcc", []net.IP{net.ParseIP("10.0.100.7")})
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode([]byte(certPEM))
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "node:n-525400aabbcc" {
		t.Errorf("CN %q", cert.Subject.CommonName)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		t.Error("the certificate is not for the CSR's key")
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{usage}, DNSName: "10.0.100.7"}); err != nil {
			t.Errorf("verify usage %v: %v", usage, err)
		}
	}
	if id, err := ca.VerifyNode(cert); err != nil || id != "n-525400aabbcc" {
		t.Errorf("VerifyNode = %q, %v", id, err)
	}
	for name, bad := range map[string]string{
		"empty":     "",
		"not pem":   "hello",
		"wrong pem": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})),
		"tampered":  tamper(csr),
	} {
		if _, err := ca.SignNodeCSR(bad, "n-1", nil); err == nil {
			t.Errorf("%s csr was signed", name)
		}
	}
}

// tamper flips a byte of the CSR's signed part so its signature no longer holds.
func tamper(csrPEM string) string {
	block, _ := pem.Decode([]byte(csrPEM))
	der := append([]byte(nil), block.Bytes...)
	i := strings.Index(string(der), "whatever")
	der[i] ^= 0x01
	return string(pem.EncodeToMemory(&pem.Block{Type: block.Type, Bytes: der}))
}

func TestMutualTLS(t *testing.T) {
	ca, _ := LoadOrCreate(t.TempDir())
	srvConf, err := ca.ServerTLSConfig([]string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	srvConf.ClientAuth = tls.RequireAndVerifyClientCert
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srvConf)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peers := make(chan string, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := c.(*tls.Conn)
				if err := tc.Handshake(); err != nil {
					peers <- "rejected"
					return
				}
				peers <- tc.ConnectionState().PeerCertificates[0].Subject.CommonName
				io.WriteString(c, "ok")
			}()
		}
	}()

	dial := func(cert tls.Certificate) error {
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1", Certificates: []tls.Certificate{cert}})
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = io.ReadAll(c)
		return err
	}

	admin, err := ca.ClientCertificate(AdminClientCN)
	if err != nil {
		t.Fatal(err)
	}
	if err := dial(admin); err != nil {
		t.Fatalf("admin client certificate: %v", err)
	}
	if got := <-peers; got != AdminClientCN {
		t.Fatalf("server saw %q", got)
	}
	again, _ := ca.ClientCertificate(AdminClientCN)
	if !again.Leaf.Equal(admin.Leaf) {
		t.Error("the admin's client certificate is not persisted")
	}

	csr, key := newCSR(t)
	certPEM, err := ca.SignNodeCSR(csr, "n-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	node, err := tls.X509KeyPair([]byte(certPEM), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	if err := dial(node); err != nil {
		t.Fatalf("node certificate: %v", err)
	}
	if got := <-peers; got != "node:n-1" {
		t.Fatalf("server saw %q", got)
	}

	other, _ := LoadOrCreate(t.TempDir())
	foreign, _ := other.ClientCertificate(AdminClientCN)
	if err := dial(foreign); err == nil {
		t.Fatal("a certificate from another CA was accepted")
	}
	if got := <-peers; got != "rejected" {
		t.Fatalf("server saw %q for a foreign certificate", got)
	}
}

// A compute node knows only the CA's fingerprint; it must find the CA in the chain
// the HTTPS server presents.
func TestServerChainCarriesTheCA(t *testing.T) {
	ca, err := LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.ServerCertificate([]string{"cairn"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Certificate) != 2 {
		t.Fatalf("server chain has %d certificates, want leaf + CA", len(c.Certificate))
	}
	caCert, err := x509.ParseCertificate(c.Certificate[1])
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyFingerprint(caCert, ca.Fingerprint()); err != nil {
		t.Fatalf("second certificate in the chain is not the CA: %v", err)
	}
}
