package boot

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// Plan actions.
const (
	// ActionCompute boots the compute image with the plan's kernel arguments.
	ActionCompute = "compute"
	// ActionLocal leaves iPXE so the firmware boots the next device (the local disk).
	ActionLocal = "local"
)

// ErrInvalidPlan is returned (wrapped) when a Plan cannot be turned into a script.
var ErrInvalidPlan = errors.New("invalid boot plan")

// consoleArgs are added to a compute node's kernel arguments unless the plan names a
// console itself, so that /dev/console is the serial port under qemu and the kernel
// also writes to the screen (docs/architecture.md, "Kernel arguments").
var consoleArgs = []string{"console=tty0", "console=ttyS0,115200"}

// maxCmdline is the longest kernel command line x86 Linux accepts (COMMAND_LINE_SIZE
// is 2048 including the terminating NUL).
const maxCmdline = 2047

// The HTTP paths of the compute image and the name iPXE gives the initramfs (the
// URL's last element), which the EFI stub needs in initrd=.
const (
	pathKernel    = "/compute/vmlinuz"
	pathInitramfs = "/compute/initramfs"
	initrdName    = "initramfs"
)

// chainScript returns /boot.ipxe: it asks base for the script of the NIC iPXE booted
// from (${netX} is the last opened network device), retrying while the admin node has
// no answer. A node script that exits (ActionLocal) returns success from chain; the
// `&& exit` then leaves this script too, so iPXE hands back to the firmware.
func chainScript(base string) string {
	return fmt.Sprintf(`#!ipxe
# Cairn: ask the admin node what this machine boots, by the MAC of the booting NIC.
:retry
chain --autofree %s/nodes/${netX/mac:hexhyp}.ipxe && exit ||
echo Cairn: no boot plan from %s, retrying in 10 seconds
sleep 10
goto retry
`, base, base)
}

// nodeScript returns /nodes/<mac>.ipxe for plan: boot the compute image from base with
// the plan's kernel arguments, or exit to the firmware. It refuses arguments that
// could change the script or the kernel's parsing of them.
func nodeScript(base string, mac net.HardwareAddr, plan Plan) (string, error) {
	switch plan.Action {
	case ActionLocal:
		return fmt.Sprintf("#!ipxe\n# Cairn: %s boots from its local disk.\nexit\n", mac), nil
	case ActionCompute:
	default:
		return "", fmt.Errorf("node script for %s: %w: action %q is not %q or %q", mac, ErrInvalidPlan, plan.Action, ActionCompute, ActionLocal)
	}
	args := []string{"initrd=" + initrdName}
	hasConsole := false
	for _, a := range plan.KernelArgs {
		if strings.HasPrefix(a, "console=") {
			hasConsole = true
		}
	}
	if !hasConsole {
		args = append(args, consoleArgs...)
	}
	args = append(args, plan.KernelArgs...)
	for _, a := range plan.KernelArgs {
		if err := checkKernelArg(a); err != nil {
			return "", fmt.Errorf("node script for %s: %w: %w", mac, ErrInvalidPlan, err)
		}
	}
	cmdline := strings.Join(args, " ")
	if len(cmdline) > maxCmdline {
		return "", fmt.Errorf("node script for %s: %w: kernel command line is %d bytes, the kernel takes at most %d",
			mac, ErrInvalidPlan, len(cmdline), maxCmdline)
	}
	return fmt.Sprintf(`#!ipxe
# Cairn: %s boots the compute image.
kernel %s%s %s
initrd %s%s
boot
`, mac, base, pathKernel, cmdline, base, pathInitramfs), nil
}

// checkKernelArg accepts one kernel argument made only of letters, digits and
// . _ : / = , + @ % ~ - (not leading). Everything else — blanks, newlines, quotes,
// backslashes, $ (iPXE settings expansion), & | # and control bytes — could split the
// argument, end the line or be interpreted by iPXE, so it is refused.
func checkKernelArg(a string) error {
	if a == "" {
		return errors.New("empty kernel argument")
	}
	if a[0] == '-' {
		return fmt.Errorf("kernel argument %q begins with '-'", a)
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("._:/=,+@%~-", c) >= 0:
		default:
			return fmt.Errorf("kernel argument %q holds %q: use only letters, digits and ._:/=,+@%%~-", a, string(rune(c)))
		}
	}
	return nil
}
