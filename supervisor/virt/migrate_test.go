package virt

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestMigrationURI(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"10.0.0.5", "tcp://10.0.0.5"},
		{"10.0.0.5:49152", "tcp://10.0.0.5:49152"},
		{"fe80::1", "tcp://[fe80::1]"},
		{"[fe80::1]:49152", "tcp://[fe80::1]:49152"},
		{"node-1.lan", "tcp://node-1.lan"},
		{"node-1.lan:49152", "tcp://node-1.lan:49152"},
	} {
		got, err := migrationURI(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("migrationURI(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"tcp://10.0.0.5", "10.0.0.5/24", "a b", ":49152", "10.0.0.5:", "x@y"} {
		if got, err := migrationURI(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("migrationURI(%q) = %q, %v; want ErrInvalid", bad, got, err)
		}
	}
}

func TestMigrateArguments(t *testing.T) {
	ctx := context.Background()
	c := &Conn{}
	if err := Migrate(ctx, nil, c, "5f1c2a3b-0d4e-4f60-8a7b-9c0d1e2f3a4b", ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("no source: %v, want ErrInvalid", err)
	}
	if err := Migrate(ctx, c, c, "5f1c2a3b-0d4e-4f60-8a7b-9c0d1e2f3a4b", ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("same connection: %v, want ErrInvalid", err)
	}
}

// TestHostMigrateRefusals runs what a single libvirtd allows: the checks before
// Begin, Begin refusing a disk that is not on shared storage, and a real Begin →
// Prepare whose Prepare libvirt refuses because both
// connections reach the same host, after which the source must be left as it was
// (Confirm with cancelled released its migration job). The full path between two
// nodes belongs to the qemu tier.
func TestHostMigrateRefusals(t *testing.T) {
	src := hostConn(t)
	dst := hostConn(t)
	ctx := context.Background()
	ev := events(t, src)

	if err := Migrate(ctx, src, dst, newUUID(t), "127.0.0.1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown domain: %v, want ErrNotFound", err)
	}
	d := testDomain(t)
	define(t, src, d)
	if err := Migrate(ctx, src, dst, d.UUID, "127.0.0.1"); !errors.Is(err, ErrInvalid) {
		t.Errorf("shut-off domain: %v, want ErrInvalid", err)
	}
	if err := Migrate(ctx, src, dst, d.UUID, "10.0.0.5/24"); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad address: %v, want ErrInvalid", err)
	}

	if err := src.Start(ctx, d.UUID); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, ev, d.UUID, "started", "booted")
	// A writable disk on a local file system: libvirt refuses in Begin.
	err := Migrate(ctx, src, dst, d.UUID, "127.0.0.1")
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "shared storage") {
		t.Errorf("writable disk on local storage: %v, want ErrInvalid saying the storage is not shared", err)
	}
	wantState(t, src, d.UUID, StateRunning)

	// Read-only disks are safe anywhere, so Begin passes and Prepare refuses.
	if err := src.Destroy(ctx, d.UUID); err != nil {
		t.Fatal(err)
	}
	d.Disks[0].ReadOnly = true
	if err := src.Define(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := src.Start(ctx, d.UUID); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, ev, d.UUID, "started", "booted")
	err = Migrate(ctx, src, dst, d.UUID, "127.0.0.1")
	if err == nil {
		t.Fatal("migrating to the same host succeeded")
	}
	t.Logf("migrate to the same host: %v", err)
	if !strings.Contains(err.Error(), "same host") || !strings.Contains(err.Error(), "prepare on the destination") {
		t.Errorf("error %q does not say that Prepare refused the same host", err)
	}
	wantState(t, src, d.UUID, StateRunning)
	// A migration job left behind would block this.
	if err := src.Suspend(ctx, d.UUID); err != nil {
		t.Fatalf("suspend after the refused migration: %v", err)
	}
	if err := src.Resume(ctx, d.UUID); err != nil {
		t.Fatal(err)
	}
	if _, err := src.State(ctx, d.UUID); err != nil {
		t.Errorf("domain gone from the source after a refused migration: %v", err)
	}
}
