package qemutests

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cairn-os/cairn/qemu-tests/lab"
	"github.com/cairn-os/cairn/qemu-tests/vm"
)

// TestHarnessBootsISO boots a stand-in for the admin ISO (grub-mkrescue, BIOS +
// UEFI, the baseline kernel and busybox) with exactly the admin VM of the real tests,
// and checks the plumbing they rely on from inside the guest: the ISO boots under both
// firmwares, the uplink gets an address by DHCP and port 443 answers through the port
// forwarded to 127.0.0.1, the guest sees a blank data disk and the CAIRNCFG disk, and
// the debug shell on the second serial port runs commands.
func TestHarnessBootsISO(t *testing.T) {
	requireQEMUTier(t)
	logAccel(t)
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	iso := filepath.Join(t.TempDir(), "baseline.iso")
	if err := vm.BaselineISO(ctx, vm.CacheDir(), iso, "cairn.dhcp=eth0 cairn.httpd=443 cairn.debug=1"); err != nil {
		t.Fatal(err)
	}
	for _, fw := range []vm.Firmware{vm.BIOS, vm.UEFI} {
		t.Run(string(fw), func(t *testing.T) {
			a := newArtefacts(t)
			l := newLab(t, ctx, a, iso, fw, true)
			if err := l.StartAdmin(ctx); err != nil {
				t.Fatal(err)
			}
			bctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
			defer cancel()
			if _, err := l.Admin.WaitSerial(bctx, regexp.MustCompile(regexp.QuoteMeta(vm.BaselineReady))); err != nil {
				fatal(t, l, err)
			}
			t.Logf("%s: ISO booted to userspace %s after qemu started", fw, l.Admin.Uptime().Round(100*time.Millisecond))

			health := fmt.Sprintf("http://127.0.0.1:%d/api/v1/health", l.Port)
			var body string
			_, err := l.Wait(bctx, "port 443 through "+health, time.Second, func(ctx context.Context) (bool, string, error) {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, health, nil)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return false, err.Error(), nil
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				body = string(b)
				return resp.StatusCode == http.StatusOK, resp.Status, nil
			})
			if err != nil {
				fatal(t, l, err)
			}
			if !strings.Contains(body, `"ok"`) {
				t.Errorf("health answered %q", body)
			}

			// Debian's static busybox has no blkid: read the FAT label from the boot
			// sector (offset 43, 11 bytes) and count non-zero bytes at the data disk's start.
			out, err := l.Admin.DebugShell(bctx, "dd if=/dev/vdb bs=1 skip=43 count=11 2>/dev/null; echo; "+
				"dd if=/dev/vda bs=65536 count=1 2>/dev/null | tr -d '\\000' | wc -c; cat /sys/block/vda/size")
			if err != nil {
				fatal(t, l, err)
			}
			lines := strings.Fields(out)
			if len(lines) != 3 {
				t.Fatalf("debug shell answered %q, want the label, a count and a size", out)
			}
			if lines[0] != vm.SettingsLabel {
				t.Errorf("the guest's vdb is labelled %q, want the settings disk %s", lines[0], vm.SettingsLabel)
			}
			if lines[1] != "0" {
				t.Errorf("the data disk vda is not blank: %s non-zero bytes in its first 64 KiB", lines[1])
			}
			if lines[2] != "41943040" { // 20 GiB in 512-byte sectors
				t.Errorf("the data disk has %s sectors, want %s", lines[2], lab.DataDiskSize)
			}
			if _, err := l.Admin.DebugShell(bctx, "false"); err == nil {
				t.Error("a failing command in the debug shell reported success")
			}
		})
	}
}
