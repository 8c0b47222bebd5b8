package testimage

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-os/cairn/image"
	"github.com/cairn-os/cairn/internal/testutil"
	"github.com/cairn-os/cairn/supervisor/hostcmd"
)

// TestRecipe keeps the guest's scripts and boot loader configuration under review:
// a change shows as a golden-file difference (and changes the cache key).
func TestRecipe(t *testing.T) {
	testutil.Golden(t, "recipe", recipeText())
}

// TestKey checks that the cache key follows every input and only the inputs.
func TestKey(t *testing.T) {
	base := inputs{
		kernel:   image.Package{Name: "linux-image-6.1.0-56-amd64", Version: "6.1.192-2", Arch: "amd64", SHA256: strings.Repeat("a", 64)},
		busybox:  image.Package{Name: "busybox-static", Version: "1:1.35.0-4", Arch: "amd64", SHA256: strings.Repeat("b", 64)},
		syslinux: "3:6.04~git20190206.bf6db5b4+dfsg1-3+b1",
	}
	if base.key() != base.key() || !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(base.key()) {
		t.Fatalf("key %q is not 16 stable hex digits", base.key())
	}
	changed := map[string]inputs{}
	in := base
	in.kernel.Version = "6.1.193-1"
	changed["kernel version"] = in
	in = base
	in.kernel.SHA256 = strings.Repeat("c", 64)
	changed["kernel file"] = in
	in = base
	in.busybox.Version = "1:1.36.1-1"
	changed["busybox"] = in
	in = base
	in.busybox = image.Package{}
	in.busyboxHost = "1:1.35.0-4"
	changed["host busybox"] = in
	in = base
	in.syslinux = "3:6.04-4"
	changed["syslinux"] = in
	for what, in := range changed {
		if in.key() == base.key() {
			t.Errorf("changing the %s keeps the key %s", what, base.key())
		}
	}
}

// TestResolveModules checks the module set on a made-up kernel: dependencies come
// along, a soft dependency is carried and loaded as optional, built-in modules are
// not loaded, an unknown module is an error.
func TestResolveModules(t *testing.T) {
	dir := t.TempDir()
	kver := "6.1.0-test"
	mods := filepath.Join(dir, "usr/lib/modules", kver)
	files := map[string]string{
		"modules.dep": "kernel/a/virtio_blk.ko: kernel/a/virtio.ko\nkernel/a/virtio.ko:\nkernel/c/crc_gen.ko:\n" +
			"kernel/s/sd_mod.ko: kernel/c/crc-t10dif.ko\nkernel/c/crc-t10dif.ko:\n",
		"modules.builtin": "kernel/fs/vfat.ko\n",
		"modules.softdep": "softdep crc-t10dif pre: crct10dif\n",
		"modules.alias":   "alias crct10dif crc_gen\n",
	}
	for name, s := range files {
		if err := os.MkdirAll(mods, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(mods, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	idx, err := image.ReadModuleIndex(mods)
	if err != nil {
		t.Fatal(err)
	}
	k := image.Kernel{Dir: dir, Version: kver, Modules: idx}

	saved := moduleNames
	t.Cleanup(func() { moduleNames = saved })
	moduleNames = []string{"virtio_blk", "sd_mod", "vfat"}
	m, err := resolveModules(k)
	if err != nil {
		t.Fatal(err)
	}
	wantFiles := []string{"kernel/a/virtio.ko", "kernel/a/virtio_blk.ko", "kernel/c/crc-t10dif.ko", "kernel/c/crc_gen.ko", "kernel/s/sd_mod.ko"}
	if strings.Join(m.files, " ") != strings.Join(wantFiles, " ") {
		t.Errorf("files = %v, want %v", m.files, wantFiles)
	}
	if strings.Join(m.load, " ") != "virtio_blk sd_mod" {
		t.Errorf("load = %v, want [virtio_blk sd_mod] (vfat is built in)", m.load)
	}
	if strings.Join(m.optional, " ") != "crc_gen" {
		t.Errorf("optional = %v, want [crc_gen]", m.optional)
	}
	if !strings.Contains(m.dep, "kernel/a/virtio_blk.ko: kernel/a/virtio.ko\n") || !strings.Contains(m.dep, "kernel/a/virtio.ko:\n") {
		t.Errorf("modules.dep misses lines:\n%s", m.dep)
	}

	moduleNames = []string{"virtio_blk", "no_such_module"}
	if _, err := resolveModules(k); err == nil || !strings.Contains(err.Error(), "no_such_module") {
		t.Errorf("an unknown module gave %v, want an error naming it", err)
	}
}

// TestRepoRoot finds the clone's root from this package's folder.
func TestRepoRoot(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "configs/packages.lock")); err != nil {
		t.Errorf("RepoRoot() = %s, which has no configs/packages.lock: %v", root, err)
	}
}

// TestWaitForLine follows a growing log and resumes after the previous match.
func TestWaitForLine(t *testing.T) {
	log := filepath.Join(t.TempDir(), "serial.log")
	go func() {
		time.Sleep(200 * time.Millisecond)
		os.WriteFile(log, []byte("SYSLINUX\r\ncairn-test: marker=m1 boots=3 host=none\r\n"), 0o644)
		time.Sleep(200 * time.Millisecond)
		f, _ := os.OpenFile(log, os.O_APPEND|os.O_WRONLY, 0)
		f.WriteString("cairn-test: ready\r\n")
		f.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, off, err := WaitForLine(ctx, log, 0, MarkerLine)
	if err != nil {
		t.Fatal(err)
	}
	if m[1] != "m1" || m[2] != "3" || m[3] != "none" {
		t.Errorf("marker line groups = %q", m)
	}
	if _, _, err := WaitForLine(ctx, log, off, ReadyLine); err != nil {
		t.Fatal(err)
	}
	short, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	_, _, err = WaitForLine(short, log, off, MarkerLine)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "cairn-test: ready") {
		t.Errorf("waiting for a line that does not come again gave %v, want a time-out showing the log's end", err)
	}
}

// TestBuildCache builds into an empty folder from two goroutines at once: both get the
// same whole image, no temporary file is left, and a later call reuses the image.
func TestBuildCache(t *testing.T) {
	requireBuildTools(t)
	repo, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := newBuilder(repo)
	if err != nil {
		t.Fatal(err)
	}
	b.out = t.TempDir()
	ctx := context.Background()

	var wg sync.WaitGroup
	paths := make([]string, 2)
	errs := make([]error, 2)
	for i := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			paths[i], errs[i] = b.qcow2(ctx)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if paths[0] != paths[1] {
		t.Fatalf("two builds gave %s and %s", paths[0], paths[1])
	}
	ents, _ := os.ReadDir(b.out)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	key := strings.TrimSuffix(filepath.Base(paths[0]), ".qcow2")
	if want := []string{key + ".qcow2", key + ".raw"}; strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("cache folder holds %v, want %v", names, want)
	}

	st, err := os.Stat(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	again, err := b.qcow2(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st2, err := os.Stat(again)
	if err != nil {
		t.Fatal(err)
	}
	if again != paths[0] || !os.SameFile(st, st2) || !st.ModTime().Equal(st2.ModTime()) {
		t.Errorf("a second build made a new image instead of reusing %s", paths[0])
	}

	raw := strings.TrimSuffix(paths[0], ".qcow2") + ".raw"
	for _, p := range []string{raw, paths[0]} {
		if m, err := Marker(ctx, p); err != nil || m != DefaultMarker {
			t.Errorf("marker of %s = %q, %v; want %q", filepath.Base(p), m, err, DefaultMarker)
		}
		if n, err := Boots(ctx, p); err != nil || n != 0 {
			t.Errorf("boot count of %s = %d, %v; want 0", filepath.Base(p), n, err)
		}
	}
	out, err := hostcmd.Exec{}.Run(ctx, "mdir", "-a", "-b", "-i", raw, "::")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ldlinux.sys", "ldlinux.c32", "syslinux.cfg", "vmlinuz", "initrd", markerFile, bootsFile} {
		if !strings.Contains(strings.ToLower(string(out)), "::/"+f) {
			t.Errorf("the disk has no %s; it holds:\n%s", f, out)
		}
	}
	t.Logf("raw image %s, qcow2 %s", image.MiB(image.FileSize(raw)), image.MiB(image.FileSize(paths[0])))
}

// TestSetMarker changes the marker on a raw copy and on a qcow2 overlay: it reads back,
// the overlay keeps its backing file, and the cached image stays as it was.
func TestSetMarker(t *testing.T) {
	qcow2, raw := testImage(t)
	ctx := context.Background()
	dir := t.TempDir()

	t.Run("raw", func(t *testing.T) {
		disk := filepath.Join(dir, "disk.raw")
		copyFile(t, raw, disk)
		marker := testutil.Name("raw-")
		if err := SetMarker(ctx, disk, marker); err != nil {
			t.Fatal(err)
		}
		if got, err := Marker(ctx, disk); err != nil || got != marker {
			t.Errorf("Marker = %q, %v; want %q", got, err, marker)
		}
	})

	t.Run("qcow2-overlay", func(t *testing.T) {
		disk := filepath.Join(dir, "overlay.qcow2")
		if err := Overlay(ctx, qcow2, disk); err != nil {
			t.Fatal(err)
		}
		marker := testutil.Name("overlay-")
		if err := SetMarker(ctx, disk, marker); err != nil {
			t.Fatal(err)
		}
		if got, err := Marker(ctx, disk); err != nil || got != marker {
			t.Errorf("Marker = %q, %v; want %q", got, err, marker)
		}
		out, err := hostcmd.Exec{}.Run(ctx, "qemu-img", "info", "--output=json", disk)
		if err != nil {
			t.Fatal(err)
		}
		var info struct {
			Backing string `json:"backing-filename"`
		}
		if err := json.Unmarshal(out, &info); err != nil {
			t.Fatal(err)
		}
		if info.Backing != qcow2 {
			t.Errorf("the overlay's backing file is %q after SetMarker, want %q", info.Backing, qcow2)
		}
		if got, err := Marker(ctx, qcow2); err != nil || got != DefaultMarker {
			t.Errorf("the cached image's marker is %q, %v; want %q", got, err, DefaultMarker)
		}
		if n, err := Boots(ctx, disk); err != nil || n != 0 {
			t.Errorf("boot count of the overlay = %d, %v; want 0", n, err)
		}
	})

	t.Run("invalid", func(t *testing.T) {
		disk := filepath.Join(dir, "invalid.raw")
		copyFile(t, raw, disk)
		for _, m := range []string{"", "two words", "new\nline", strings.Repeat("x", 201)} {
			if err := SetMarker(ctx, disk, m); !errors.Is(err, ErrInvalid) {
				t.Errorf("SetMarker(%q) = %v, want ErrInvalid", m, err)
			}
		}
		if got, err := Marker(ctx, disk); err != nil || got != DefaultMarker {
			t.Errorf("after refused changes the marker is %q, %v; want %q", got, err, DefaultMarker)
		}
	})
}
