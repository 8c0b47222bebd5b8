// Package image builds Cairn's images from pinned Debian packages: it resolves the
// package lists in configs/packages to configs/packages.lock (apt with an empty dpkg
// status, so the lock holds the whole dependency closure), fetches the locked .deb
// files into a cache outside the clone, extracts them into root trees without running
// maintainer scripts, adds Cairn's own files and kernel modules, and packs the admin
// root into a squashfs inside a hybrid BIOS + UEFI ISO made with grub-mkrescue.
//
// The compute initramfs and the stage-1 initramfs are written by package initramfs,
// which uses the trees and modules made here.
package image
