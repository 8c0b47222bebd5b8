package datadisk

import (
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-os/cairn/internal/testutil"
)

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	testutil.RequireProgram(t, name)
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// sparse makes a sparse file of size bytes.
func sparse(t *testing.T, size int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return path
}

func writeAt(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func sniffFile(t *testing.T, path string) (signature, bool) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	sig, blank, err := sniff(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	return sig, blank
}

// Images made by the real tools are recognised, and none of them counts as blank.
func TestSniffImages(t *testing.T) {
	random := make([]byte, 4096)
	rand.Read(random)
	tests := []struct {
		name, fstype, label string
		make                func(t *testing.T, img string)
	}{
		{"blank", "", "", func(t *testing.T, img string) {}},
		{"btrfs", "btrfs", "CAIRNDATA", func(t *testing.T, img string) { run(t, "mkfs.btrfs", "-q", "-L", "CAIRNDATA", img) }},
		{"btrfs other", "btrfs", "photos", func(t *testing.T, img string) { run(t, "mkfs.btrfs", "-q", "-L", "photos", img) }},
		{"ext4", "ext4", "home", func(t *testing.T, img string) { run(t, "mkfs.ext4", "-q", "-L", "home", img) }},
		{"vfat", "vfat", "STICK", func(t *testing.T, img string) { run(t, "mkfs.vfat", "-n", "STICK", img) }},
		{"swap", "swap", "", func(t *testing.T, img string) { run(t, "mkswap", img) }},
		{"iso9660", "iso9660", "CAIRN", func(t *testing.T, img string) {
			iso := filepath.Join(t.TempDir(), "x.iso")
			run(t, "xorriso", "-as", "mkisofs", "-quiet", "-V", "CAIRN", "-o", iso, t.TempDir())
			b, _ := os.ReadFile(iso)
			writeAt(t, img, 0, b)
		}},
		{"gpt", "gpt", "", func(t *testing.T, img string) {
			writeAt(t, img, 510, []byte{0x55, 0xAA})
			writeAt(t, img, 512, []byte("EFI PART"))
		}},
		{"luks", "crypto_LUKS", "", func(t *testing.T, img string) { writeAt(t, img, 0, []byte("LUKS\xba\xbe\x00\x02")) }},
		{"random in the middle of the first MiB", "unknown data", "", func(t *testing.T, img string) { writeAt(t, img, 700<<10, random) }},
		{"backup GPT only", "gpt", "", func(t *testing.T, img string) { writeAt(t, img, (256<<20)-512, []byte("EFI PART")) }},
		{"data at the end", "unknown data", "", func(t *testing.T, img string) { writeAt(t, img, (256<<20)-8192, random) }},
		{"btrfs mirror only", "unknown data", "", func(t *testing.T, img string) { writeAt(t, img, 64<<20+64<<10, random) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := sparse(t, 256<<20)
			tt.make(t, img)
			sig, blank := sniffFile(t, img)
			if sig.fstype != tt.fstype || sig.label != tt.label {
				t.Errorf("sniff = %+v, want %s labelled %q", sig, tt.fstype, tt.label)
			}
			if blank != (tt.fstype == "") {
				t.Errorf("blank = %v for %s", blank, tt.name)
			}
		})
	}
}

func TestSniffBtrfsUUID(t *testing.T) {
	img := sparse(t, 256<<20)
	run(t, "mkfs.btrfs", "-q", "-L", "CAIRNDATA", img)
	sig, _ := sniffFile(t, img)
	if want := run(t, "blkid", "-p", "-o", "value", "-s", "UUID", img); sig.uuid != want {
		t.Errorf("uuid = %q, blkid says %q", sig.uuid, want)
	}
}

func TestNaturalCompare(t *testing.T) {
	for _, pair := range [][2]string{{"sda", "sdb"}, {"sdz", "sdaa"}, {"nvme0n2", "nvme0n10"}, {"vda", "vdb"}, {"nvme0n1", "nvme1n1"}} {
		if naturalCompare(pair[0], pair[1]) >= 0 || naturalCompare(pair[1], pair[0]) <= 0 {
			t.Errorf("%s should sort before %s", pair[0], pair[1])
		}
	}
}
