package engine

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// clock is a settable time for tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type testEngine struct {
	*Engine
	dir   string
	clock *clock
}

func openTest(t *testing.T, dir string, c *clock, mod ...func(*Config)) *testEngine {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	if c == nil {
		c = &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	}
	cfg := Config{
		StateDir:   dir,
		LANURL:     "https://10.0.0.1",
		URL:        "https://cairn.test",
		Now:        c.Now,
		BcryptCost: bcrypt.MinCost,
	}
	for _, m := range mod {
		m(&cfg)
	}
	e, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return &testEngine{Engine: e, dir: dir, clock: c}
}

// admin makes the first admin and returns it.
func (te *testEngine) admin(t *testing.T) User {
	t.Helper()
	ctx := context.Background()
	if _, err := te.EnsureAdmin(ctx, "admin-password"); err != nil {
		t.Fatal(err)
	}
	u, err := te.Authenticate(ctx, AdminName, "admin-password")
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func (te *testEngine) user(t *testing.T, by User, name string, role Role) User {
	t.Helper()
	u, err := te.CreateUser(context.Background(), by, name, "password-"+name, role)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func csrPEM(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func joinReq(t *testing.T, mac, addr string) JoinRequest {
	return JoinRequest{Name: "node", MAC: mac, Address: addr, CPUs: 4, MemoryBytes: 8 << 30, KVM: true, CSR: csrPEM(t), Version: "test"}
}
