package settings

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-os/cairn/internal/testutil"
)

// exampleConfig is longer than a FAT12 cluster, so reading it follows a cluster chain.
var exampleConfig = []byte("admin_password: \"s3cret-pass\"\npxe: proxy\n" + strings.Repeat("# padding to span several clusters\n", 300))

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// makeFAT makes a FAT image of the given kind (12, 16, 32); label "" for none. With
// config set it copies cairn.yaml into the top folder after some other files with long
// names, so the reader has to skip entries and assemble long names.
func makeFAT(t *testing.T, kind int, label string, config []byte) string {
	t.Helper()
	testutil.RequireProgram(t, "mkfs.vfat")
	dir := t.TempDir()
	img := filepath.Join(dir, "fat.img")
	sizeKiB := map[int]string{12: "1440", 16: "32768", 32: "65536"}[kind]
	args := []string{"-C", "-F", fmt.Sprint(kind)}
	if label != "" {
		args = append(args, "-n", label)
	}
	run(t, "mkfs.vfat", append(args, img, sizeKiB)...)
	if config != nil {
		testutil.RequireProgram(t, "mcopy")
		for i := 0; i < 12; i++ {
			other := filepath.Join(dir, fmt.Sprintf("a rather long file name %02d.txt", i))
			os.WriteFile(other, []byte("x"), 0o644)
			run(t, "mcopy", "-i", img, other, "::")
		}
		src := filepath.Join(dir, "cairn.yaml")
		if err := os.WriteFile(src, config, 0o644); err != nil {
			t.Fatal(err)
		}
		run(t, "mcopy", "-i", img, src, "::cairn.yaml")
	}
	return img
}

// makeISO makes an ISO 9660 image labelled label holding cairn.yaml; extra are
// xorriso's mkisofs options (-J, --norock).
func makeISO(t *testing.T, label string, config []byte, extra ...string) string {
	t.Helper()
	testutil.RequireProgram(t, "xorriso")
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(tree, "docs"), 0o755)
	os.WriteFile(filepath.Join(tree, "docs", "readme.txt"), []byte("hello"), 0o644)
	if config != nil {
		os.WriteFile(filepath.Join(tree, "cairn.yaml"), config, 0o644)
	}
	img := filepath.Join(dir, "cfg.iso")
	args := append([]string{"-as", "mkisofs", "-quiet", "-V", label, "-o", img}, extra...)
	run(t, "xorriso", append(args, tree)...)
	return img
}

func openImage(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestReadLabelAndConfigFAT(t *testing.T) {
	for _, kind := range []int{12, 16, 32} {
		t.Run(fmt.Sprintf("FAT%d", kind), func(t *testing.T) {
			f := openImage(t, makeFAT(t, kind, "CAIRNCFG", exampleConfig))
			fstype, label, err := ReadLabel(f)
			if err != nil || fstype != FSTypeFAT || label != "CAIRNCFG" {
				t.Fatalf("ReadLabel = %q, %q, %v; want vfat CAIRNCFG", fstype, label, err)
			}
			fat, _ := openFAT(f)
			if fat.kind != kind {
				t.Errorf("read as FAT%d", fat.kind)
			}
			data, err := readConfig(f, fstype)
			if err != nil || !bytes.Equal(data, exampleConfig) {
				t.Fatalf("readConfig = %d bytes, %v; want the %d bytes copied in", len(data), err, len(exampleConfig))
			}
			if s, problems := Parse(data); len(problems) != 0 || s.PXE != PXEProxy {
				t.Errorf("Parse = %+v, %v", s, problems)
			}
		})
	}
}

// Windows and fatlabel change the label entry in the root folder; that one counts.
func TestReadLabelFATRootEntryWins(t *testing.T) {
	img := makeFAT(t, 16, "CAIRNCFG", nil)
	b, _ := os.ReadFile(img)
	copy(b[43:54], "WRONGLABEL ")
	os.WriteFile(img, b, 0o644)
	if _, label, err := ReadLabel(openImage(t, img)); err != nil || label != "CAIRNCFG" {
		t.Errorf("label = %q, %v; want the root folder's CAIRNCFG", label, err)
	}
}

func TestReadLabelFATNoLabel(t *testing.T) {
	f := openImage(t, makeFAT(t, 12, "", nil))
	if fstype, label, err := ReadLabel(f); err != nil || fstype != FSTypeFAT || label != "" {
		t.Errorf("ReadLabel = %q, %q, %v; want vfat without label", fstype, label, err)
	}
}

func TestReadConfigMissing(t *testing.T) {
	for name, img := range map[string]string{
		"fat": makeFAT(t, 12, "CAIRNCFG", nil),
		"iso": makeISO(t, "CAIRNCFG", nil),
	} {
		f := openImage(t, img)
		fstype, _, _ := ReadLabel(f)
		if _, err := readConfig(f, fstype); !errors.Is(err, errNoFile) {
			t.Errorf("%s: readConfig err = %v, want errNoFile", name, err)
		}
	}
}

func TestReadLabelAndConfigISO(t *testing.T) {
	for name, extra := range map[string][]string{
		"rock ridge":         nil,
		"rock ridge, joliet": {"-J"},
		"plain names":        {"--norock"},
	} {
		t.Run(name, func(t *testing.T) {
			f := openImage(t, makeISO(t, "CAIRNCFG", exampleConfig, extra...))
			fstype, label, err := ReadLabel(f)
			if err != nil || fstype != FSTypeISO || label != "CAIRNCFG" {
				t.Fatalf("ReadLabel = %q, %q, %v; want iso9660 CAIRNCFG", fstype, label, err)
			}
			data, err := readConfig(f, fstype)
			if err != nil || !bytes.Equal(data, exampleConfig) {
				t.Fatalf("readConfig = %d bytes, %v; want the %d bytes put in", len(data), err, len(exampleConfig))
			}
		})
	}
}

func TestReadLabelOther(t *testing.T) {
	random := make([]byte, 1<<20)
	rand.Read(random)
	random[510], random[511] = 0x55, 0xAA // an MBR signature alone is no FAT
	cases := map[string][]byte{
		"zeros":  make([]byte, 1<<20),
		"random": random,
		"short":  []byte("tiny"),
	}
	if _, err := exec.LookPath("mkfs.ext4"); err == nil {
		img := filepath.Join(t.TempDir(), "ext4.img")
		run(t, "truncate", "-s", "8M", img)
		run(t, "mkfs.ext4", "-q", "-L", "CAIRNCFG", img)
		cases["ext4 labelled CAIRNCFG"], _ = os.ReadFile(img)
	}
	for name, b := range cases {
		if fstype, label, err := ReadLabel(bytes.NewReader(b)); fstype != "" || label != "" {
			t.Errorf("%s: ReadLabel = %q, %q, %v; want nothing", name, fstype, label, err)
		}
	}
}
