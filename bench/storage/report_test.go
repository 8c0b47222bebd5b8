package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-os/cairn/internal/testutil"
)

func series(err string, secs ...float64) Series {
	s := Series{Err: err}
	for i, v := range secs {
		s.Samples = append(s.Samples, Sample{Seconds: v, Load1: 1 + float64(i)/4})
	}
	return s
}

func testReport() Report {
	ext4 := ImageFigures{
		Label: "ext4", FS: "ext4", Device: "/dev/vda", Driver: "dir",
		Setup:        "a folder in the run's temporary folder, on ext4 (`/dev/vda`), driver `dir`",
		VirtualBytes: 10 << 30, DataBytes: 1 << 30, FileBytes: 1074135040, Method: "copy",
		Linked: series("", 0.031, 0.029, 0.035), Child: series("", 0.02, 0.021, 0.019),
		Copy: series("", 4.1, 3.9, 4.4), Rsync: series("", 4.3, 4.0, 4.2),
		Backup: series("", 4.0, 4.1, 3.8), Restore: series("delete image i-1: 409 Conflict", 4.5, 4.2),
	}
	btrfs := ImageFigures{
		Label: "btrfs", FS: "btrfs", Device: "/dev/loop3", Driver: "btrfs", Reflinked: true,
		Setup:        "the subvolume `pools/0` of a btrfs filesystem, driver `btrfs`",
		VirtualBytes: 10 << 30, DataBytes: 1 << 30, FileBytes: 1074135040, Method: "reflink",
		Linked: series("", 0.05), Child: series("", 0.02), Copy: series("", 0.04), Rsync: series("", 9.5),
		CpReflnk: series("", 0.004), Backup: series("", 0.03), Restore: series("", 0.045),
	}
	return Report{
		Date: time.Date(2026, 11, 22, 5, 30, 0, 0, time.UTC),
		Machine: Machine{CPU: "Test CPU @ 2.80GHz", Cores: 2, MemoryBytes: 24 << 30, Kernel: "6.1.0-test",
			QEMU: "QEMU emulator version 7.2.22", Libvirt: "libvirtd (libvirt) 9.0.0", Rsync: "rsync version 3.2.7 protocol version 31",
			Load: [3]float64{1.5, 1.6, 2.1}, LoadEnd: [3]float64{3.25, 2, 2}, OtherQEMUs: 2},
		Runs: 3,
		Servers: ServerFigures{
			MasterBytes: 10682368,
			Cairn:       series("", 0.78, 0.81, 0.75),
			Baseline:    series("", 0.53, 0.55, 0.52),
		},
		Images: []ImageFigures{ext4, btrfs, {Label: "xfs", Err: "btrfs pool: losetup: no free loop device"}},
		Notes:  []string{"The btrfs case was not measured: mkfs.btrfs is not installed"},
	}
}

// TestMarkdown checks the section against its golden file, and that it is framed by
// the markers that writeSection looks for.
func TestMarkdown(t *testing.T) {
	md := testReport().Markdown()
	testutil.Golden(t, "section", md)
	if !strings.HasPrefix(md, beginMarker+"\n") || !strings.HasSuffix(md, endMarker+"\n") {
		t.Errorf("the section is not framed by %s … %s:\n%s", beginMarker, endMarker, md)
	}
	if strings.Count(md, beginMarker) != 1 || strings.Count(md, endMarker) != 1 {
		t.Error("the section holds a marker twice")
	}
	for _, want := range []string{
		"| **Cairn / baseline** | **1.5×** |",                 // 0.78 / 0.53
		"4.35 s (median of 4.50, 4.20); a run failed: delete", // restore: the error is shown
		"| **full copy / linked clone** | **132×** |",         // 4.1 / 0.031
		"Not measured: btrfs pool: losetup: no free loop device",
		"the 1-minute load average reached 3.25 on 2 cores\n(2 qemu processes", // a busy machine is said so
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the section lacks %q", want)
		}
	}
}

func TestSeries(t *testing.T) {
	var s Series
	s.add(2*time.Second, 0.5, nil)
	s.add(time.Second, 0.7, nil)
	s.add(0, 0, errors.New("boom\nsecond line"))
	s.add(0, 0, errors.New("later error"))
	s.note(nil)
	if got := s.median(); got != 1.5 {
		t.Errorf("median of 1 s and 2 s = %v, want 1.5", got)
	}
	if s.Err != "boom" {
		t.Errorf("error = %q, want the first line of the first error", s.Err)
	}
	if got, want := s.seconds(), "1.50 s (median of 2.00, 1.00); a run failed: boom"; got != want {
		t.Errorf("seconds() = %q, want %q", got, want)
	}
	if got, want := s.rate(3e9), "2000 MB/s (median of 1500, 3000); a run failed: boom"; got != want {
		t.Errorf("rate() = %q, want %q", got, want)
	}
	if got := s.loads(); got != "0.50–0.70" {
		t.Errorf("loads() = %q", got)
	}
	if got := (Series{Err: "a|b"}).seconds(); got != `— (a\|b)` {
		t.Errorf("a figure with no sample renders %q", got)
	}
	if got := ratio(1, 0); got != "—" {
		t.Errorf("ratio with a missing side = %q", got)
	}
}

const section = beginMarker + "\nnew figures\n" + endMarker + "\n"

func TestSplice(t *testing.T) {
	boot := "# Benchmarks\n\nboot figures\n"
	for _, c := range []struct{ name, doc, want string }{
		{"empty file", "", section},
		{"appended after the boot figures", boot, boot + "\n" + section},
		{"no newline at the end", "# B", "# B\n\n" + section},
		{"blank line already there", boot + "\n", boot + "\n" + section},
		{"replaced at the end", boot + "\n" + beginMarker + "\nold\nlines\n" + endMarker + "\n", boot + "\n" + section},
		{"replaced in the middle", "head\n" + beginMarker + "\nold\n" + endMarker + "\ntail\n", "head\n" + section + "tail\n"},
	} {
		got, err := splice(c.doc, section)
		if err != nil || got != c.want {
			t.Errorf("%s: splice = %q, %v; want %q", c.name, got, err, c.want)
		}
	}
	if _, err := splice("x\n"+beginMarker+"\nno end\n", section); err == nil || !strings.Contains(err.Error(), endMarker) {
		t.Errorf("a section without its end marker: %v, want an error naming %s", err, endMarker)
	}
	two := beginMarker + "\n" + endMarker + "\n" + beginMarker + "\n" + endMarker + "\n"
	if _, err := splice(two, section); err == nil {
		t.Error("two sections: no error")
	}
}

// TestWriteSection writes the section into a report twice: the boot benchmark's text
// stays byte for byte, and the section appears once, with the newer figures.
func TestWriteSection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "benchmarks.md")
	boot := "# Benchmarks\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
	if err := os.WriteFile(path, []byte(boot), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeSection(path, section); err != nil {
		t.Fatal(err)
	}
	newer := strings.Replace(section, "new figures", "newer figures", 1)
	if err := writeSection(path, newer); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := boot + "\n" + newer; string(got) != want {
		t.Errorf("report after two runs:\n%s\nwant:\n%s", got, want)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("report mode: %v, %v; want 0644", fi.Mode(), err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("writeSection left %d files in the folder, want only the report", len(entries))
	}

	// A missing report is made with the section alone.
	fresh := filepath.Join(t.TempDir(), "new.md")
	if err := writeSection(fresh, section); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(fresh); string(got) != section {
		t.Errorf("new report = %q, want the section alone", got)
	}
}

func TestWrap(t *testing.T) {
	got := wrap("Pool 0: the subvolume of a  btrfs filesystem, on a loop device.", 20)
	want := "Pool 0: the\nsubvolume of a btrfs\nfilesystem, on a\nloop device."
	if got != want {
		t.Errorf("wrap = %q, want %q", got, want)
	}
}

func TestMountOf(t *testing.T) {
	if fs, _ := mountOf("/proc/self"); fs != "proc" {
		t.Errorf("mountOf(/proc/self) = %q, want proc", fs)
	}
	if fs, _ := mountOf("/"); fs == "unknown" || fs == "" {
		t.Errorf("mountOf(/) = %q, want the root filesystem's type", fs)
	}
	if got := unescapeMount(`/mnt/a\040b`); got != "/mnt/a b" {
		t.Errorf("unescapeMount = %q", got)
	}
}
