// Package hosttests holds Cairn's host-tier end-to-end tests: a real engine with the
// host's libvirtd and qemu (TCG), real qemu-img, btrfs on loop devices, driven through
// the HTTPS API as a user would, with a small bootable test image built from Debian
// packages (internal/testimage). They need root; `make test` runs them.
package hosttests
