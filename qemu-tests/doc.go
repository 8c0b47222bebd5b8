// Package qemutests holds Cairn's end-to-end tests: they boot the built admin ISO
// (build/cairn.iso, or $CAIRN_ISO) in qemu under BIOS and UEFI, PXE-boot a diskless
// compute VM from it over a private LAN, and check what a person would: the API
// answers through the forwarded port, the node is ready with its CPUs and memory, the
// web console shows it in headless Chromium, killed services and nodes are noticed,
// and the engine's state survives an admin restart. Each test keeps its serial logs
// (and the console screenshot) in build/qemu-tests/<TestName>/. The VM plumbing is in
// the vm, lab and engineapi packages below this one.
package qemutests
