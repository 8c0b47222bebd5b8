package main

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cairn-os/cairn/internal/testutil"
	"github.com/cairn-os/cairn/supervisor/engine"
)

// A pool snapshot lists the images it holds, also one deleted since, and the CLI
// restores that one by its name as a new image.
func TestSnapshotRestoreByNameThroughTheCLI(t *testing.T) {
	testutil.RequireRoot(t)
	for _, p := range []string{"mkfs.btrfs", "btrfs", "qemu-img"} {
		testutil.RequireProgram(t, p)
	}
	e, url := testEngine(t)
	c := loggedIn(t, e, url)

	dev := testutil.LoopDevice(t, 512<<20)

	var p engine.Pool
	c.jsonOf(&p, "pools", "create", "fast", "--driver", "btrfs", "--device", dev, "--yes-format-device", dev)
	t.Cleanup(func() {
		for unix.Unmount(p.Path, 0) == nil {
		}
	})
	c.ok("images", "create", "web", "--size", "4M", "--format", "raw", "--pool", "fast")
	c.ok("images", "create", "db", "--size", "4M", "--format", "qcow2", "--pool", "fast")
	var snap engine.PoolSnapshot
	c.jsonOf(&snap, "pools", "snapshot", "fast")

	list := c.ok("pools", "snapshots", "fast")
	if !strings.Contains(list, snap.Name) || !strings.Contains(list, "db, web") {
		t.Fatalf("pools snapshots does not show the images the snapshot holds:\n%s", list)
	}
	c.ok("images", "delete", "web")
	if list := c.ok("pools", "snapshots", "fast"); !strings.Contains(list, "db, web (deleted)") {
		t.Fatalf("pools snapshots does not say web was deleted since:\n%s", list)
	}
	if code, _, errOut := c.run("", "pools", "restore", "fast", snap.Name, "nothing", "--as", "x"); code == 0 || !strings.Contains(errOut, `holds no image "nothing"`) {
		t.Fatalf("restore of an image the snapshot does not hold: exit %d\n%s", code, errOut)
	}
	c.ok("pools", "restore", "fast", snap.Name, "web", "--as", "web-back")
	if out := c.ok("images", "show", "web-back"); !strings.Contains(out, "ready") || !strings.Contains(out, "raw") {
		t.Fatalf("the image restored by name:\n%s", out)
	}
}
