package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-os/cairn/qemu-tests/engineapi"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from what Markdown renders now; run `go test ./bench -update` and review the diff", path)
	}
}

func testReport() Report {
	return Report{
		Date:        time.Date(2026, 11, 22, 3, 1, 0, 0, time.UTC),
		Machine:     Machine{NProc: 2, CPU: "Test CPU @ 2.80GHz", Kernel: "6.1.0-test", QEMU: "QEMU emulator version 7.2.22", Load: [3]float64{1.5, 1.6, 2.1}, LoadEnd: [3]float64{2, 2, 2}},
		Accel:       "tcg",
		AccelReason: "CAIRN_ACCEL=tcg",
		Runs:        3,
		DnsmasqRA:   true,
		Idle:        30 * time.Second,
		AdminBoot: Pair{
			Cairn:    []Sample{{Seconds: 40.6, Load1: 2}, {Seconds: 42, Load1: 2.2}, {Seconds: 39.1, Load1: 1.9, OtherQEMUs: 1}},
			Baseline: []Sample{{Seconds: 12.5, Load1: 1.5}, {Seconds: 12.1, Load1: 1.5}, {Seconds: 13, Load1: 1.5}},
		},
		ISOBoot:          Pair{Baseline: []Sample{{Seconds: 20}, {Seconds: 20.4}, {Seconds: 19.8}}},
		ComputeBoot:      Pair{Baseline: []Sample{{Seconds: 54.2, Load1: 2.3}}, CairnErr: "compute node ready: the compute VM's network boot failed"},
		ComputeFirstLine: Pair{CairnErr: "not reached"},
		Sizes: []SizeRow{
			{What: "boot ISO", Cairn: 223774720, CairnFrom: "/work/main/build/cairn.iso", Baseline: 31000000, BaselineWhat: "grub-mkrescue ISO"},
			{What: "root squashfs in the ISO", Missing: "xorriso -lsl: exit status 1"},
			{What: "compute initramfs", Cairn: 54059048, CairnFrom: "/work/main/build/compute/initramfs.cpio.zst", Baseline: 2496936, BaselineWhat: "busybox initramfs"},
		},
		BaselineMemory:     []memory{{Total: 4 << 30, Available: 4<<30 - 160<<20}},
		Notes:              []string{"The ISO's compute image is not the one in build/compute."},
		CairnError:         "compute node ready: the compute VM's network boot failed",
		CairnConsoleErrors: []string{`time=03:04:31 level=ERROR msg="pxe boot services not started"`},
	}
}

// TestMarkdown renders a report with every kind of cell: medians over runs, a side
// that failed, a size that could not be read, and the failure section.
func TestMarkdown(t *testing.T) {
	golden(t, "report.golden", testReport().Markdown())
}

// TestMarkdownWithCairn renders a report where Cairn reached every figure: ratios and
// the services table, and no failure section.
func TestMarkdownWithCairn(t *testing.T) {
	r := testReport()
	r.Runs = 1
	r.AdminBoot = Pair{Cairn: []Sample{{Seconds: 40.6, Load1: 2}}, Baseline: []Sample{{Seconds: 12.5, Load1: 1.5}}}
	r.ComputeBoot = Pair{Cairn: []Sample{{Seconds: 80, Load1: 2.5}}, Baseline: []Sample{{Seconds: 54.2, Load1: 2.3}}}
	r.ComputeFirstLine = Pair{Cairn: []Sample{{Seconds: 30}}}
	r.AdminMemory = []memory{{Total: 4 << 30, Available: 3 << 30}}
	r.Services = []engineapi.Service{{Name: "libvirtd", State: "running", PID: 300}, {Name: "virtlogd", State: "running", Restarts: 1}, {Name: "rpc.nfsd", State: "backoff", Restarts: 9}}
	r.AdminUptime = 150 * time.Second
	r.CairnError, r.CairnConsoleErrors = "", nil
	md := r.Markdown()
	if strings.Contains(md, "## What failed") {
		t.Error("a report without failures has a failure section")
	}
	golden(t, "report-cairn.golden", md)
}

func TestParseLsl(t *testing.T) {
	out := "xorriso 1.5.4 : RockRidge filesystem manipulator\n" +
		"-r--r--r--    1 0        0         5980892 Nov 22 02:26 '/boot/initrd.img'\n" +
		"-r--r--r--    1 0        0        200921088 Nov 22 02:26 '/cairn/root.squashfs'\n"
	got := parseLsl(out)
	if got["/boot/initrd.img"] != 5980892 || got["/cairn/root.squashfs"] != 200921088 || len(got) != 2 {
		t.Errorf("parseLsl = %v", got)
	}
}

func TestParseMeminfo(t *testing.T) {
	m, err := parseMeminfo("cat /proc/meminfo\r\nMemTotal:        4009180 kB\r\nMemFree:         3900000 kB\r\nMemAvailable:    3845940 kB\r\n")
	if err != nil {
		t.Fatal(err)
	}
	if m.InUse() != (4009180-3845940)<<10 {
		t.Errorf("in use %d bytes, want %d", m.InUse(), (4009180-3845940)<<10)
	}
	if _, err := parseMeminfo("baseline# "); err == nil {
		t.Error("parseMeminfo accepted text without MemTotal")
	}
}

func TestKeepSections(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.md")
	old := "# old boot figures\n\n<!-- storage:begin -->\n## Servers\nfigures\n<!-- storage:end -->\n"
	if err := os.WriteFile(path, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	got := keepSections(path, "# new boot figures\n")
	want := "# new boot figures\n\n<!-- storage:begin -->\n## Servers\nfigures\n<!-- storage:end -->\n"
	if got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got := keepSections(filepath.Join(t.TempDir(), "none.md"), "x\n"); got != "x\n" {
		t.Fatalf("without an old report: %q", got)
	}
}
