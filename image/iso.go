package image

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// VolumeID is the ISO's volume label; stage 1 finds the boot medium by it.
const VolumeID = "CAIRN"

// ipxeFiles are the iPXE binaries the admin serves over TFTP, from Debian's ipxe.
var ipxeFiles = []string{"undionly.kpxe", "ipxe.efi", "snponly.efi"}

// AdminInput is what the admin's root tree gets besides its packages.
type AdminInput struct {
	Version    string
	Supervisor string
	// ComputeDir holds the compute node's vmlinuz and initramfs.
	ComputeDir string
}

// StageAdminRoot makes dir the admin's root tree: the admin packages, every kernel
// module except configs/modules/admin-exclude.txt, the supervisor at
// /usr/lib/cairn/supervisor, the compute kernel and initramfs under
// /usr/lib/cairn/compute and the iPXE binaries under /usr/lib/cairn/ipxe.
func (b *Builder) StageAdminRoot(ctx context.Context, p Prepared, in AdminInput, dir string) error {
	set, err := b.RoleModules(p, "admin")
	if err != nil {
		return err
	}
	exclude, err := b.ModuleList("admin-exclude")
	if err != nil {
		return err
	}
	files := p.Kernel.Modules.AllExcept(exclude)
	if err := b.StageRoot(ctx, p, dir, files, set.Load); err != nil {
		return err
	}
	if err := WriteFile(filepath.Join(dir, ReleasePath), []byte(CairnRelease(Release{Version: in.Version, Role: p.Role})), 0o644); err != nil {
		return err
	}
	lib := filepath.Join(dir, "usr/lib/cairn")
	if err := CopyFile(in.Supervisor, filepath.Join(lib, "supervisor"), 0o755); err != nil {
		return err
	}
	ents, err := os.ReadDir(in.ComputeDir)
	if err != nil {
		return fmt.Errorf("compute image: %w (build it with `make initramfs`)", err)
	}
	n := 0
	for _, e := range ents {
		if e.Type().IsRegular() && (e.Name() == "vmlinuz" || strings.HasPrefix(e.Name(), "initramfs")) {
			if err := CopyFile(filepath.Join(in.ComputeDir, e.Name()), filepath.Join(lib, "compute", e.Name()), 0o644); err != nil {
				return err
			}
			n++
		}
	}
	if n < 2 {
		return fmt.Errorf("compute image: %s lacks vmlinuz or initramfs (build it with `make initramfs`)", in.ComputeDir)
	}
	for _, f := range ipxeFiles {
		src := filepath.Join(dir, "usr/lib/ipxe", f)
		if _, err := os.Stat(src); err != nil {
			return fmt.Errorf("ipxe binary: %w (is ipxe in configs/packages/admin.txt?)", err)
		}
		if err := CopyFile(src, filepath.Join(lib, "ipxe", f), 0o644); err != nil {
			return err
		}
	}
	return WriteFile(filepath.Join(lib, "version"), []byte(in.Version+"\n"), 0o644)
}

// Squashfs packs dir into a zstd squashfs at out, owned by root and dated Epoch so
// that the same tree gives the same bytes.
func (b *Builder) Squashfs(ctx context.Context, dir, out string) error {
	start := time.Now()
	epoch := strconv.FormatInt(b.Epoch.Unix(), 10)
	_, err := b.Runner.Run(ctx, "mksquashfs", dir, out,
		"-comp", "zstd", "-Xcompression-level", "8", "-b", "1M", "-noappend", "-no-progress", "-quiet",
		"-all-root", "-no-xattrs", "-all-time", epoch, "-mkfs-time", epoch)
	if err != nil {
		return fmt.Errorf("squashfs: %w", err)
	}
	b.Logger.Info("made squashfs", "size", MiB(FileSize(out)), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// ISOInput is what goes on the ISO.
type ISOInput struct {
	Version  string
	Vmlinuz  string
	Initrd   string
	Squashfs string
	Out      string
}

// grubPlatforms are the GRUB builds on the ISO: BIOS (El Torito + hybrid MBR) and
// 64-bit UEFI (El Torito EFI image + an EFI partition for USB sticks).
var grubPlatforms = []string{"i386-pc", "x86_64-efi"}

// ISO writes a hybrid ISO that boots under BIOS and UEFI from CD or USB.
//
// It does what grub-mkrescue does (grub-mkimage for each platform, an EFI FAT image
// made with mformat and mcopy, xorriso with the hybrid MBR), but itself: grub-mkrescue
// embeds the wall-clock time as the volume UUID its GRUB searches for, so its output
// can never be reproduced. Here the UUID, every file date and the FAT serial number
// come from Epoch, and the same inputs give the same bytes.
func (b *Builder) ISO(ctx context.Context, in ISOInput) error {
	start := time.Now()
	work, err := os.MkdirTemp(filepath.Dir(in.Out), ".iso-")
	if err != nil {
		return fmt.Errorf("iso: %w", err)
	}
	defer os.RemoveAll(work)
	root := filepath.Join(work, "root")
	links := map[string]string{
		"boot/vmlinuz":        in.Vmlinuz,
		"boot/initrd.img":     in.Initrd,
		"cairn/root.squashfs": in.Squashfs,
	}
	for dst, src := range links {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, dst)), 0o755); err != nil {
			return fmt.Errorf("iso: %w", err)
		}
		if err := os.Link(src, filepath.Join(root, dst)); err != nil {
			if err := CopyFile(src, filepath.Join(root, dst), 0o644); err != nil {
				return fmt.Errorf("iso: %w", err)
			}
		}
	}
	if err := WriteFile(filepath.Join(root, "cairn/version"), []byte(in.Version+"\n"), 0o644); err != nil {
		return err
	}
	if err := WriteFile(filepath.Join(root, "boot/grub/grub.cfg"), []byte(GrubConfig(in.Version)), 0o644); err != nil {
		return err
	}

	uuid := ISOUUID(b.Epoch)
	loadCfg := filepath.Join(work, "load.cfg")
	if err := os.WriteFile(loadCfg, []byte(GrubLoadConfig(uuid)), 0o644); err != nil {
		return fmt.Errorf("iso: %w", err)
	}
	for _, plat := range grubPlatforms {
		if err := copyGrubModules(plat, filepath.Join(root, "boot/grub", plat)); err != nil {
			return err
		}
	}
	// BIOS: an El Torito no-emulation image that reads the ISO with biosdisk. The
	// search modules are built in: the embedded config runs before any module can be
	// loaded from the ISO.
	if _, err := b.Runner.Run(ctx, "grub-mkimage", "--directory", "/usr/lib/grub/i386-pc",
		"--prefix", "/boot/grub", "--output", filepath.Join(root, "boot/grub/i386-pc/eltorito.img"),
		"--format", "i386-pc-eltorito", "--compression", "auto", "--config", loadCfg,
		"biosdisk", "iso9660", "search", "search_fs_uuid"); err != nil {
		return fmt.Errorf("iso bios image: %w", err)
	}
	// UEFI: BOOTX64.EFI in a FAT image, used as the El Torito EFI image and as an
	// EFI system partition when the ISO is written to a USB stick.
	efiDir := filepath.Join(work, "efi")
	if err := os.MkdirAll(filepath.Join(efiDir, "efi/boot"), 0o755); err != nil {
		return fmt.Errorf("iso: %w", err)
	}
	if _, err := b.Runner.Run(ctx, "grub-mkimage", "--directory", "/usr/lib/grub/x86_64-efi",
		"--prefix", "()/boot/grub", "--output", filepath.Join(efiDir, "efi/boot/bootx64.efi"),
		"--format", "x86_64-efi", "--compression", "auto", "--config", loadCfg,
		"part_gpt", "part_msdos", "fat", "iso9660", "search", "search_fs_uuid"); err != nil {
		return fmt.Errorf("iso efi image: %w", err)
	}
	if err := setTimes(efiDir, b.Epoch); err != nil {
		return err
	}
	efiImg := filepath.Join(root, "boot/grub/efi.img")
	env := []string{"SOURCE_DATE_EPOCH=" + strconv.FormatInt(b.Epoch.Unix(), 10)}
	if _, err := b.Runner.RunCmd(ctx, Cmd{Name: "mformat", Env: env, Args: []string{
		"-C", "-f", "2880", "-L", "16", "-N", FATSerial(b.Epoch), "-i", efiImg, "::"}}); err != nil {
		return fmt.Errorf("iso efi image: %w", err)
	}
	if _, err := b.Runner.RunCmd(ctx, Cmd{Name: "mcopy", Env: env, Args: []string{
		"-m", "-s", "-i", efiImg, filepath.Join(efiDir, "efi"), "::/"}}); err != nil {
		return fmt.Errorf("iso efi image: %w", err)
	}
	if err := setTimes(root, b.Epoch); err != nil {
		return err
	}
	tmpOut := in.Out + ".tmp"
	os.Remove(tmpOut)
	_, err = b.Runner.RunCmd(ctx, Cmd{Name: "xorriso", Env: env, Args: []string{
		"-as", "mkisofs", "-graft-points",
		"--modification-date=" + strings.ReplaceAll(uuid, "-", ""),
		"-V", VolumeID,
		"-b", "boot/grub/i386-pc/eltorito.img", "-no-emul-boot", "-boot-load-size", "4",
		"-boot-info-table", "--grub2-boot-info", "--grub2-mbr", "/usr/lib/grub/i386-pc/boot_hybrid.img",
		"--efi-boot", "boot/grub/efi.img", "-efi-boot-part", "--efi-boot-image",
		"--protective-msdos-label",
		"-o", tmpOut, "-r", root,
		"--sort-weight", "0", "/", "--sort-weight", "1", "/boot",
	}})
	if err != nil {
		return fmt.Errorf("iso: %w", err)
	}
	if err := os.Rename(tmpOut, in.Out); err != nil {
		return fmt.Errorf("iso: %w", err)
	}
	b.Logger.Info("made iso", "out", in.Out, "size", MiB(FileSize(in.Out)), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// ISOUUID is the ISO's volume UUID as GRUB shows it (YYYY-MM-DD-hh-mm-ss-00): xorriso
// makes it from --modification-date, and GRUB's embedded config searches for it.
func ISOUUID(t time.Time) string { return t.UTC().Format("2006-01-02-15-04-05") + "-00" }

// FATSerial is the EFI image's FAT serial number, from the epoch.
func FATSerial(t time.Time) string { return fmt.Sprintf("%08X", uint32(t.Unix())) }

// GrubLoadConfig is the config embedded in GRUB's core images: find this ISO by its
// UUID (on a CD or on a USB stick where the EFI image is a separate partition), then
// read /boot/grub/grub.cfg from it.
func GrubLoadConfig(uuid string) string {
	return "search --fs-uuid --set=root " + uuid + "\nset prefix=(${root})/boot/grub\n"
}

// copyGrubModules copies a platform's GRUB modules and lists, as grub-mkrescue does.
func copyGrubModules(plat, dst string) error {
	src := filepath.Join("/usr/lib/grub", plat)
	ents, err := os.ReadDir(src)
	if err != nil {
		return fmt.Errorf("grub modules: %w (install grub-pc-bin and grub-efi-amd64-bin)", err)
	}
	for _, e := range ents {
		n := e.Name()
		if !e.Type().IsRegular() {
			continue
		}
		if strings.HasSuffix(n, ".mod") || strings.HasSuffix(n, ".lst") || n == "modinfo.sh" || strings.HasPrefix(n, "efiemu") && strings.HasSuffix(n, ".o") {
			if err := CopyFile(filepath.Join(src, n), filepath.Join(dst, n), 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// setTimes dates every file and folder under dir t.
func setTimes(dir string, t time.Time) error {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	// Children first: setting a child's time does not touch its folder's, but
	// creating nothing here keeps the order irrelevant anyway.
	for i := len(paths) - 1; i >= 0; i-- {
		if err := lchtimes(paths[i], t); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("set times %s: %w", paths[i], err)
		}
	}
	return nil
}
