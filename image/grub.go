package image

import (
	"fmt"
	"strings"
)

// KernelArgs are the admin's kernel arguments (docs/architecture.md "Kernel
// arguments"): the last console= is /dev/console, the serial port that tests read.
const KernelArgs = "cairn.role=admin console=tty0 console=ttyS0,115200"

// GrubConfig is the ISO's /boot/grub/grub.cfg, read by GRUB under BIOS and UEFI. It
// talks on the screen and on the first serial port, waits one second, and boots the
// normal entry; the debug entry adds cairn.debug=1. all_video gives the kernel a
// framebuffer under UEFI, where there is no text mode.
func GrubConfig(version string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# Cairn %s
set timeout=1
set default=0
serial --unit=0 --speed=115200 --word=8 --parity=no --stop=1
terminal_input console serial
terminal_output console serial
insmod all_video
`, version)
	entry := func(title, args string) {
		fmt.Fprintf(&b, `
menuentry %q {
	linux /boot/vmlinuz %s
	initrd /boot/initrd.img
}
`, title, args)
	}
	entry("Cairn "+version, KernelArgs)
	entry("Cairn "+version+" (debug)", KernelArgs+" cairn.debug=1")
	return b.String()
}
