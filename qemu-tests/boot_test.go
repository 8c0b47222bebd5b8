package qemutests

import (
	"context"
	"testing"

	"github.com/cairn-os/cairn/qemu-tests/vm"
)

// TestBootBIOS boots the admin ISO under SeaBIOS and asks /api/v1/health through the
// port forwarded to 127.0.0.1.
func TestBootBIOS(t *testing.T) { testBoot(t, vm.BIOS) }

// TestBootUEFI boots the admin ISO under OVMF and asks /api/v1/health through the
// port forwarded to 127.0.0.1.
func TestBootUEFI(t *testing.T) { testBoot(t, vm.UEFI) }

func testBoot(t *testing.T, fw vm.Firmware) {
	iso := requireISO(t)
	a := newArtefacts(t)
	ctx, cancel := context.WithTimeout(t.Context(), adminBootTimeout)
	defer cancel()
	l := newLab(t, ctx, a, iso, fw, false)
	if err := l.StartAdmin(ctx); err != nil {
		t.Fatal(err)
	}
	d, err := l.WaitAdmin(ctx)
	if err != nil {
		fatal(t, l, err)
	}
	t.Logf("%s: /api/v1/health answered at %s %s after qemu started; engine CA %s", fw, l.URL(), d, l.API.CAFingerprint())
}
