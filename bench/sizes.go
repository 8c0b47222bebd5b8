package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// SizeRow is one artefact of Cairn beside the baseline's counterpart, in bytes; 0 means
// there is none or it could not be read.
type SizeRow struct {
	What string
	// Cairn is the size of CairnFrom (a file, or a path inside the ISO).
	Cairn     int64
	CairnFrom string
	// Baseline is the size of the counterpart BaselineWhat describes.
	Baseline     int64
	BaselineWhat string
	// Missing says why Cairn's side could not be read.
	Missing string
}

// isoEntries returns the sizes of files inside an ISO image, read with xorriso, by
// their path in the image. A file xorriso does not list is absent from the map.
func isoEntries(ctx context.Context, iso string, paths ...string) (map[string]int64, error) {
	args := append([]string{"-indev", iso, "-lsl"}, paths...)
	out, err := exec.CommandContext(ctx, "xorriso", args...).CombinedOutput()
	if err != nil && len(out) == 0 {
		return nil, fmt.Errorf("xorriso -lsl %s: %w", iso, err)
	}
	return parseLsl(string(out)), nil
}

// parseLsl reads xorriso's -lsl lines ("-r--r--r-- 1 0 0 SIZE Mon DD HH:MM 'PATH'")
// into sizes by path; other lines are skipped.
func parseLsl(out string) map[string]int64 {
	sizes := map[string]int64{}
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "-") {
			continue
		}
		f := strings.Fields(line)
		q := strings.Index(line, "'")
		if len(f) < 9 || q < 0 {
			continue
		}
		n, err := strconv.ParseInt(f[4], 10, 64)
		if err != nil {
			continue
		}
		sizes[strings.Trim(line[q:], "'")] = n
	}
	return sizes
}

// squashfsCompute returns the sizes of the files in the compute image folder of the
// ISO's root squashfs (/usr/lib/cairn/compute), by name: the image the admin serves.
// It extracts the squashfs into tmp with xorriso and lists it with unsquashfs.
func squashfsCompute(ctx context.Context, iso, tmp string) (map[string]int64, error) {
	sq := filepath.Join(tmp, "root.squashfs")
	defer os.Remove(sq)
	if out, err := exec.CommandContext(ctx, "xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/cairn/root.squashfs", sq).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("xorriso extract root.squashfs: %w: %s", err, tailLines(string(out), 3))
	}
	out, err := exec.CommandContext(ctx, "unsquashfs", "-lls", sq, "usr/lib/cairn/compute").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("unsquashfs -lls: %w: %s", err, tailLines(string(out), 3))
	}
	sizes := map[string]int64{}
	for _, line := range strings.Split(string(out), "\n") {
		// -rw-r--r-- root/root 54059048 2026-11-22 02:26 squashfs-root/usr/lib/cairn/compute/vmlinuz
		f := strings.Fields(line)
		if len(f) != 6 || !strings.HasPrefix(f[0], "-") {
			continue
		}
		if n, err := strconv.ParseInt(f[2], 10, 64); err == nil {
			sizes[filepath.Base(f[5])] = n
		}
	}
	return sizes, nil
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// computeImage returns the compute node's kernel and initramfs in dir.
func computeImage(dir string) (kernel, initramfs string, err error) {
	kernel = filepath.Join(dir, "vmlinuz")
	if _, err := os.Stat(kernel); err != nil {
		return "", "", fmt.Errorf("compute kernel: %w (build it with `make initramfs`)", err)
	}
	m, _ := filepath.Glob(filepath.Join(dir, "initramfs.*"))
	if len(m) == 0 {
		return "", "", fmt.Errorf("compute initramfs: no %s (build it with `make initramfs`)", filepath.Join(dir, "initramfs.*"))
	}
	return kernel, m[0], nil
}

// sizes compares Cairn's artefacts with the baseline's: the ISO with a grub-mkrescue
// ISO of the baseline kernel and busybox initramfs, the initramfs images with the
// busybox one, the kernels with each other.
//
// It also checks that the compute image inside the ISO, which the admin serves, is the
// one in computeDir, which the dnsmasq baseline serves, and returns a note when not;
// tmp is where the squashfs is extracted for that ("" skips the check).
func sizes(ctx context.Context, iso, computeDir, tmp string, b baselineFiles) ([]SizeRow, []string) {
	inside, err := isoEntries(ctx, iso, "/cairn/root.squashfs", "/boot/initrd.img", "/boot/vmlinuz")
	missing := ""
	if err != nil {
		missing = err.Error()
	}
	kernel, initramfs, cerr := computeImage(computeDir)
	rows := []SizeRow{
		{What: "boot ISO", Cairn: fileSize(iso), CairnFrom: iso,
			Baseline: fileSize(b.iso), BaselineWhat: "grub-mkrescue ISO of the baseline kernel + busybox initramfs"},
		{What: "root squashfs in the ISO", Cairn: inside["/cairn/root.squashfs"], CairnFrom: "/cairn/root.squashfs", Missing: missing},
		{What: "admin stage-1 initramfs in the ISO", Cairn: inside["/boot/initrd.img"], CairnFrom: "/boot/initrd.img", Missing: missing,
			Baseline: fileSize(b.initrd), BaselineWhat: "busybox initramfs"},
		{What: "admin kernel in the ISO", Cairn: inside["/boot/vmlinuz"], CairnFrom: "/boot/vmlinuz", Missing: missing,
			Baseline: fileSize(b.kernel), BaselineWhat: "Debian kernel " + filepath.Base(b.kernel)},
	}
	if cerr != nil {
		rows = append(rows, SizeRow{What: "compute image", Missing: cerr.Error()})
		return rows, nil
	}
	var notes []string
	if tmp != "" {
		in, err := squashfsCompute(ctx, iso, tmp)
		switch {
		case err != nil:
			notes = append(notes, "Could not read the compute image inside the ISO: "+err.Error())
		case in[filepath.Base(initramfs)] != fileSize(initramfs) || in["vmlinuz"] != fileSize(kernel):
			var names []string
			for n, size := range in {
				names = append(names, fmt.Sprintf("`%s` (%d bytes)", n, size))
			}
			slices.Sort(names)
			notes = append(notes, fmt.Sprintf("The ISO's compute image (/usr/lib/cairn/compute: %s) is not the one in %s "+
				"(`%s`, %d bytes; `vmlinuz`, %d bytes): the two compute boots did not load the same files.",
				strings.Join(names, ", "), relPath(computeDir), filepath.Base(initramfs), fileSize(initramfs), fileSize(kernel)))
		}
	}
	rows = append(rows,
		SizeRow{What: "compute kernel", Cairn: fileSize(kernel), CairnFrom: kernel,
			Baseline: fileSize(b.kernel), BaselineWhat: "Debian kernel " + filepath.Base(b.kernel)},
		SizeRow{What: "compute initramfs", Cairn: fileSize(initramfs), CairnFrom: initramfs,
			Baseline: fileSize(b.initrd), BaselineWhat: "busybox initramfs"},
	)
	return rows, notes
}
