package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/cairn-os/cairn/supervisor/hostcmd"
)

// btrfsPools makes a btrfs filesystem on a loop device over a sparse file of size
// bytes in dir, mounts it and makes the subvolume pools/0 on it, as the appliance's
// data disk has. It returns the pools folder (for engine.Config.PoolsDir), the loop
// device, and the undo, which unmounts and detaches everything and removes the file.
// On error nothing is left behind.
func btrfsPools(ctx context.Context, dir string, size int64) (pools, dev string, undo func(), err error) {
	for _, p := range []string{"losetup", "mkfs.btrfs", "btrfs", "mount", "umount"} {
		if _, err := exec.LookPath(p); err != nil {
			return "", "", nil, fmt.Errorf("btrfs pool: %s is not installed (apt-get install btrfs-progs util-linux mount)", p)
		}
	}
	run := hostcmd.Exec{}.Run
	var undos []func()
	undo = func() {
		for i := len(undos) - 1; i >= 0; i-- {
			undos[i]()
		}
	}
	fail := func(err error) (string, string, func(), error) {
		undo()
		return "", "", nil, fmt.Errorf("btrfs pool: %w", err)
	}
	img := filepath.Join(dir, "btrfs.img")
	fh, err := os.OpenFile(img, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fail(err)
	}
	fh.Close()
	undos = append(undos, func() { os.Remove(img) })
	if err := os.Truncate(img, size); err != nil {
		return fail(err)
	}
	out, err := run(ctx, "losetup", "--find", "--show", img)
	if err != nil {
		return fail(err)
	}
	dev = strings.TrimSpace(string(out))
	undos = append(undos, func() { run(context.WithoutCancel(ctx), "losetup", "-d", dev) })
	if _, err := run(ctx, "mkfs.btrfs", "-q", dev); err != nil {
		return fail(err)
	}
	mnt := filepath.Join(dir, "btrfs")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		return fail(err)
	}
	undos = append(undos, func() { os.Remove(mnt) })
	if _, err := run(ctx, "mount", "-t", "btrfs", dev, mnt); err != nil {
		return fail(err)
	}
	undos = append(undos, func() {
		ctx := context.WithoutCancel(ctx)
		if _, err := run(ctx, "umount", mnt); err != nil {
			run(ctx, "umount", "--lazy", mnt)
		}
	})
	// The mount point itself is traversed by qemu (libvirt-qemu) to reach the images.
	os.Chmod(mnt, 0o755)
	pools = filepath.Join(mnt, "pools")
	if err := os.Mkdir(pools, 0o755); err != nil {
		return fail(err)
	}
	if _, err := run(ctx, "btrfs", "subvolume", "create", filepath.Join(pools, "0")); err != nil {
		return fail(err)
	}
	return pools, dev, undo, nil
}
