package pool

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairn-os/cairn/supervisor/hostcmd"
)

// This host has no OpenZFS: the driver says so, with the reason the engine shows.
func TestZFSNotSupportedHere(t *testing.T) {
	if _, err := os.Stat("/sys/module/zfs"); err == nil {
		t.Skip("this host has the zfs kernel module; the not-supported reason cannot be seen here")
	}
	ctx := context.Background()
	d, err := Lookup("zfs", hostcmd.Exec{})
	if err != nil {
		t.Fatal(err)
	}
	if !d.Info().Snapshots || !d.Info().Devices {
		t.Errorf("zfs Info = %+v", d.Info())
	}
	wantErr(t, "Supported", d.Supported(ctx), ErrNotSupported,
		"zfs: not supported on this host: no zfs kernel module (/sys/module/zfs)")
	spec := Spec{Driver: "zfs", Path: "/var/lib/cairn/pools/3", Dataset: "tank/cairn-3"}
	_, err = d.Create(ctx, spec)
	wantErr(t, "Create", err, ErrNotSupported, "/sys/module/zfs")
	_, err = d.Open(ctx, spec)
	wantErr(t, "Open", err, ErrNotSupported, "/sys/module/zfs")
}

func TestZFSSupportedReasons(t *testing.T) {
	missing := func(string) (string, error) { return "", errors.New("not found") }
	found := func(p string) (string, error) { return "/sbin/" + p, nil }
	d := &zfsDriver{lookPath: missing, moduleDir: filepath.Join(t.TempDir(), "none")}
	wantErr(t, "no module, no programs", d.Supported(context.Background()), ErrNotSupported,
		"no zfs kernel module", "zfs and zpool not on PATH", "OpenZFS")
	d = &zfsDriver{lookPath: found, moduleDir: t.TempDir()}
	if err := d.Supported(context.Background()); err != nil {
		t.Errorf("Supported with the module and programs = %v", err)
	}
}

// zfsAnswers is a Runner that answers zfs and zpool commands from a table (by
// prefix) and records them.
func zfsAnswers(answers map[string]string, failures ...string) *recorder {
	rec := &recorder{}
	rec.answer = func(name string, args []string) ([]byte, bool, error) {
		cmd := strings.Join(append([]string{name}, args...), " ")
		for _, f := range failures {
			if strings.HasPrefix(cmd, f) {
				return []byte("cannot: " + f), true, errors.New("exit status 1")
			}
		}
		for prefix, out := range answers {
			if strings.HasPrefix(cmd, prefix) {
				return []byte(out), true, nil
			}
		}
		return nil, true, errors.New("exit status 1")
	}
	return rec
}

func fakeZFS(r hostcmd.Runner, t *testing.T) *zfsDriver {
	return &zfsDriver{run: r, lookPath: func(p string) (string, error) { return "/sbin/" + p, nil }, moduleDir: t.TempDir()}
}

// The commands Create runs on a device, and what it undoes when a step fails.
func TestZFSCreateCommands(t *testing.T) {
	dev := blankLoop(t, 64<<20)
	ctx := context.Background()
	path := poolPath(t, "3")
	ok := map[string]string{
		"zpool create":                  "",
		"zpool get -H -p -o value guid": "1234567890123\n",
		"zfs create":                    "",
		"zfs unmount":                   "",
		"zpool destroy":                 "",
		"zfs destroy":                   "",
	}
	rec := zfsAnswers(ok)
	spec, err := fakeZFS(rec, t).Create(ctx, Spec{Driver: "zfs", Path: path, Device: dev, Dataset: "tank/cairn-3"})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	want := []string{
		"zpool create -f -m none tank " + dev,
		"zpool get -H -p -o value guid tank",
		"zfs list -H -o name tank/cairn-3",
		"zfs create -p -o mountpoint=" + path + " tank/cairn-3",
		"zfs unmount tank/cairn-3",
	}
	if !slices.Equal(rec.calls, want) {
		t.Errorf("Create ran\n%s\nwant\n%s", strings.Join(rec.calls, "\n"), strings.Join(want, "\n"))
	}
	if spec.UUID != "1234567890123" {
		t.Errorf("Create's UUID = %q; want the zpool's GUID", spec.UUID)
	}

	path2 := poolPath(t, "4")
	rec = zfsAnswers(ok, "zfs create")
	_, err = fakeZFS(rec, t).Create(ctx, Spec{Driver: "zfs", Path: path2, Device: dev, Dataset: "tank/cairn-4"})
	wantErr(t, "Create with a failing zfs create", err, nil, "create zfs dataset tank/cairn-4")
	if !rec.ran("zpool destroy -f tank") {
		t.Errorf("the failed Create ran %q; want the new zpool destroyed", rec.calls)
	}
	if _, err := os.Stat(path2); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the failed Create left %s: %v", path2, err)
	}

	// Without a device the zpool must be there; a taken dataset is refused.
	rec = zfsAnswers(map[string]string{"zpool list": "tank\n", "zfs list": "tank/cairn-3\n"})
	_, err = fakeZFS(rec, t).Create(ctx, Spec{Driver: "zfs", Path: poolPath(t, "5"), Dataset: "tank/cairn-3"})
	wantErr(t, "Create on a taken dataset", err, ErrExists)
	rec = zfsAnswers(nil)
	_, err = fakeZFS(rec, t).Create(ctx, Spec{Driver: "zfs", Path: poolPath(t, "6"), Dataset: "tank/cairn-6"})
	wantErr(t, "Create on a missing zpool", err, ErrNotFound, "zpool tank is not imported")
	_, err = fakeZFS(rec, t).Create(ctx, Spec{Driver: "zfs", Path: poolPath(t, "7"), Dataset: "tank"})
	wantErr(t, "Create on a zpool's root", err, ErrInvalid, "inside a zpool")
}

// Open imports the zpool by GUID and mounts the dataset; snapshots are
// dataset@name; Rollback copies from .zfs/snapshot and keeps later snapshots.
func TestZFSPoolCommands(t *testing.T) {
	ctx := context.Background()
	path := t.TempDir()
	spec := Spec{Driver: "zfs", Path: path, Dataset: "tank/cairn-3", UUID: "1234567890123"}
	rec := zfsAnswers(map[string]string{
		"zpool import": "",
		"zfs get -H -p -o property,value mountpoint,mounted": "mountpoint\t" + path + "\nmounted\tno\n",
		"zfs mount":                  "",
		"zfs list -H -p -t snapshot": "tank/cairn-3@a\t1700000000\ntank/cairn-3@b\t1700000100\n",
		"zfs snapshot":               "",
		"zfs destroy":                "",
	})
	p, err := fakeZFS(rec, t).Open(ctx, spec)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	want := []string{
		"zpool list -H -o name tank",
		"zpool import -N 1234567890123",
		"zfs get -H -p -o property,value mountpoint,mounted tank/cairn-3",
		"zfs mount tank/cairn-3",
	}
	if !slices.Equal(rec.calls, want) {
		t.Errorf("Open ran\n%s\nwant\n%s", strings.Join(rec.calls, "\n"), strings.Join(want, "\n"))
	}
	sn := p.(Snapshotter)
	snaps, err := sn.Snapshots(ctx)
	wantSnaps := []Snapshot{{"a", time.Unix(1700000000, 0).UTC()}, {"b", time.Unix(1700000100, 0).UTC()}}
	if err != nil || !slices.Equal(snaps, wantSnaps) {
		t.Errorf("Snapshots = %+v, %v; want %+v", snaps, err, wantSnaps)
	}
	wantErr(t, "Snapshot(a) again", sn.Snapshot(ctx, "a"), ErrExists)
	if err := sn.Snapshot(ctx, "c"); err != nil || !rec.ran("zfs snapshot tank/cairn-3@c") {
		t.Errorf("Snapshot(c) = %v, ran %q", err, rec.calls)
	}
	wantErr(t, "DeleteSnapshot(x)", sn.DeleteSnapshot(ctx, "x"), ErrNotFound)
	if err := sn.DeleteSnapshot(ctx, "a"); err != nil || !rec.ran("zfs destroy tank/cairn-3@a") {
		t.Errorf("DeleteSnapshot(a) = %v, ran %q", err, rec.calls)
	}

	// What zfs shows at <mountpoint>/.zfs/snapshot/a.
	writeFile(t, filepath.Join(path, ".zfs", "snapshot", "a", "images", "x.qcow2"), "old")
	writeFile(t, filepath.Join(path, "images", "x.qcow2"), "new")
	writeFile(t, filepath.Join(path, "later.txt"), "later")
	if f, err := sn.SnapshotPath("a", "images/x.qcow2"); err != nil || readFile(t, f) != "old" {
		t.Errorf("SnapshotPath(a) = %s, %v", f, err)
	}
	_, err = sn.SnapshotPath("a", "/etc/passwd")
	wantErr(t, "SnapshotPath(a, /etc/passwd)", err, ErrInvalid)
	if err := sn.Rollback(ctx, "a"); err != nil {
		t.Fatalf("Rollback(a): %v", err)
	}
	if got := readFile(t, filepath.Join(path, "images", "x.qcow2")); got != "old" {
		t.Errorf("after rollback x.qcow2 = %q", got)
	}
	if _, err := os.Stat(filepath.Join(path, "later.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("later.txt survived the rollback: %v", err)
	}
	if rec.ran("zfs rollback") {
		t.Errorf("Rollback ran zfs rollback, which destroys later snapshots: %q", rec.calls)
	}
	wantErr(t, "Rollback(zz)", sn.Rollback(ctx, "zz"), ErrNotFound)

	// A dataset mounted elsewhere is refused; Close unmounts, and busy is ErrInUse.
	rec = zfsAnswers(map[string]string{"zfs get": "mountpoint\t/elsewhere\nmounted\tyes\n"})
	_, err = fakeZFS(rec, t).Open(ctx, Spec{Driver: "zfs", Path: path, Dataset: "tank/cairn-3"})
	wantErr(t, "Open with another mountpoint", err, ErrInvalid, "zfs set mountpoint="+path)
	rec = zfsAnswers(map[string]string{"zfs get": "mounted\tyes\n", "zfs unmount": ""})
	if err := fakeZFS(rec, t).Close(ctx, spec); err != nil || !rec.ran("zfs unmount tank/cairn-3") {
		t.Errorf("Close = %v, ran %q", err, rec.calls)
	}
	rec = zfsAnswers(map[string]string{"zfs get": "mounted\tyes\n"}, "zfs unmount")
	rec.answer = func(next func(string, []string) ([]byte, bool, error)) func(string, []string) ([]byte, bool, error) {
		return func(name string, args []string) ([]byte, bool, error) {
			if name == "zfs" && args[0] == "unmount" {
				return []byte("cannot unmount '/p': pool or dataset is busy"), true, errors.New("exit status 1")
			}
			return next(name, args)
		}
	}(rec.answer)
	wantErr(t, "Close while busy", fakeZFS(rec, t).Close(ctx, spec), ErrInUse)
}
