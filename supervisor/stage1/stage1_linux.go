package stage1

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cairn-os/cairn/supervisor/pid1"
	"golang.org/x/sys/unix"
)

// The PID 1 steps stage 1 shares with stage 2 (package pid1); variables so that a
// test can look at the order of the steps without a kernel.
var (
	mountEarly  = pid1.MountEarly
	loadModules = pid1.LoadModules
	switchRoot  = pid1.SwitchRoot
)

// readModuleList reads a list of module names, one per line, "#" comments.
func readModuleList(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		if line = strings.TrimSpace(line); line != "" {
			names = append(names, line)
		}
	}
	return names, nil
}

// mountRoot mounts the medium on dev (unless findMedium left it mounted), its
// squashfs read-only and a tmpfs, and an overlay of the two at l.root.
func mountRoot(logger *slog.Logger, l layout, dev string) error {
	for _, d := range []string{l.medium, l.lower, l.rw, l.root} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("mkdir %s: %w", d, err)
		}
	}
	sq := filepath.Join(l.medium, SquashfsPath)
	if _, err := os.Stat(sq); err != nil {
		if err := unix.Mount(dev, l.medium, "iso9660", unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("mount %s on %s: %w", dev, l.medium, err)
		}
	}
	loop, err := attachLoop(sq)
	if err != nil {
		return err
	}
	logger.Debug("squashfs attached", "loop", loop.Name())
	err = unix.Mount(loop.Name(), l.lower, "squashfs", unix.MS_RDONLY, "")
	// Only now may the loop device's descriptor close: with autoclear, the last close
	// before the mount holds the device would detach it again.
	loop.Close()
	if err != nil {
		return fmt.Errorf("mount squashfs %s (%s) on %s: %w", sq, loop.Name(), l.lower, err)
	}
	if err := unix.Mount("tmpfs", l.rw, "tmpfs", 0, "mode=0755"); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", l.rw, err)
	}
	for _, d := range []string{l.rw + "/upper", l.rw + "/work"} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("mkdir %s: %w", d, err)
		}
	}
	// nfs_export lets the admin export folders of the root over NFS (pool 0 lives
	// there until a data disk is attached); it needs index=on. A kernel that refuses
	// them still gets a root.
	opts := overlayOptions(l.lower, l.rw)
	if err := unix.Mount("overlay", l.root, "overlay", 0, opts+",index=on,nfs_export=on"); err != nil {
		logger.Warn("overlay without NFS export", "err", err)
		if err := unix.Mount("overlay", l.root, "overlay", 0, opts); err != nil {
			return fmt.Errorf("mount overlay on %s: %w", l.root, err)
		}
	}
	return nil
}

// overlayOptions are the overlay mount's options: the squashfs below, the tmpfs's
// upper and work folders above.
func overlayOptions(lower, rw string) string {
	return "lowerdir=" + lower + ",upperdir=" + rw + "/upper,workdir=" + rw + "/work"
}

// attachLoop attaches file read-only to a free loop device and returns the device,
// open. The device detaches itself when its last user goes away (autoclear), so the
// caller closes it only once something else (a mount) holds the device.
func attachLoop(file string) (*os.File, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("loop %s: %w", file, err)
	}
	defer f.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("loop %s: %w (is the loop module loaded?)", file, err)
	}
	defer ctl.Close()
	var lastErr error
	for range 5 {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("loop %s: get free device: %w", file, err)
		}
		lf, err := configureLoop(fmt.Sprintf("/dev/loop%d", n), f)
		if err == nil {
			return lf, nil
		}
		lastErr = err
		if !errors.Is(err, unix.EBUSY) {
			break
		}
	}
	return nil, fmt.Errorf("loop %s: %w", file, lastErr)
}

// configureLoop binds f to the loop device dev with LOOP_CONFIGURE, or with
// LOOP_SET_FD and LOOP_SET_STATUS64 on kernels before 5.8, and returns the device.
func configureLoop(dev string, f *os.File) (*os.File, error) {
	// devtmpfs makes the node as the device appears; give it a moment.
	var lf *os.File
	var err error
	for range 50 {
		lf, err = os.OpenFile(dev, os.O_RDONLY, 0)
		if err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dev, err)
	}
	info := unix.LoopInfo64{Flags: unix.LO_FLAGS_READ_ONLY | unix.LO_FLAGS_AUTOCLEAR}
	copy(info.File_name[:], f.Name())
	cfg := unix.LoopConfig{Fd: uint32(f.Fd()), Info: info}
	err = unix.IoctlLoopConfigure(int(lf.Fd()), &cfg)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOTTY) {
		if err := unix.IoctlSetInt(int(lf.Fd()), unix.LOOP_SET_FD, int(f.Fd())); err != nil {
			lf.Close()
			return nil, fmt.Errorf("%s: LOOP_SET_FD: %w", dev, err)
		}
		if err := unix.IoctlLoopSetStatus64(int(lf.Fd()), &info); err != nil {
			_ = unix.IoctlSetInt(int(lf.Fd()), unix.LOOP_CLR_FD, 0)
			lf.Close()
			return nil, fmt.Errorf("%s: LOOP_SET_STATUS64: %w", dev, err)
		}
		return lf, nil
	}
	if err != nil {
		lf.Close()
		return nil, fmt.Errorf("%s: LOOP_CONFIGURE: %w", dev, err)
	}
	return lf, nil
}

// showFailure writes what went wrong in a frame on every console.
func showFailure(err error, pause time.Duration) {
	pid1.Banner(pid1.ConsoleWriter(),
		"Cairn could not start.",
		"Error:  "+err.Error(),
		"Stage 1 looks for a CD, USB stick or disk with the ISO 9660 volume "+VolumeID+
			" that holds /"+SquashfsPath+". Check that the Cairn ISO is attached (or written "+
			"whole to the stick, with dd) and that the machine's disk controller is supported.",
		fmt.Sprintf("Rebooting in %d seconds.", int(pause.Seconds())))
}

func reboot() error {
	unix.Sync()
	return unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
}
