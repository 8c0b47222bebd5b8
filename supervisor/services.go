package supervisor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strings"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/supervisor/service"
	"golang.org/x/sys/unix"
)

// libvirtServices are virtlogd and libvirtd, which every node with the compute role
// runs. virtlogd must be up first: libvirtd hands it each domain's console log.
func libvirtServices() []service.Spec {
	return []service.Spec{
		{
			Name: "virtlogd", Path: "/usr/sbin/virtlogd",
			Prepare: func(context.Context) error {
				return mkdirs("/run/libvirt", "/var/log/libvirt/qemu", "/var/lib/libvirt/qemu",
					"/var/lib/libvirt/images", "/var/cache/libvirt/qemu", "/run/lock")
			},
		},
		{
			Name: "libvirtd", Path: "/usr/sbin/libvirtd", After: []string{"virtlogd"},
			// A stale socket from a killed libvirtd makes the next one refuse to start.
			Prepare: func(context.Context) error {
				for _, s := range []string{"/run/libvirt/libvirt-sock", "/run/libvirt/libvirt-sock-ro", "/run/libvirt/libvirt-admin-sock"} {
					os.Remove(s)
				}
				if err := mkdirs("/run/libvirt", "/etc/libvirt"); err != nil {
					return err
				}
				if _, err := machineID(); err != nil {
					return err
				}
				// libvirt refuses to migrate between two hosts with the same UUID, and
				// identical machines (or VMs) often share their SMBIOS UUID: take the
				// machine ID, which is made fresh on every boot of a node.
				return os.WriteFile("/etc/libvirt/libvirtd.conf", []byte(libvirtdConf), 0o644)
			},
		},
	}
}

// libvirtdConf is /etc/libvirt/libvirtd.conf on the nodes.
const libvirtdConf = `# Written by the Cairn supervisor; changes are overwritten.
host_uuid_source = "machine-id"
`

// machineID returns /etc/machine-id, making a random one first when it is missing
// or empty: nodes run from RAM and each boot is a new machine to libvirt and NFS.
func machineID() (string, error) {
	if b, err := os.ReadFile("/etc/machine-id"); err == nil && len(strings.TrimSpace(string(b))) == 32 {
		return strings.TrimSpace(string(b)), nil
	}
	b := make([]byte, 16)
	rand.Read(b)
	id := hex.EncodeToString(b)
	if err := os.WriteFile("/etc/machine-id", []byte(id+"\n"), 0o444); err != nil {
		return "", fmt.Errorf("write /etc/machine-id: %w", err)
	}
	return id, nil
}

// nfsServices are the kernel NFS server's helpers, NFSv4 only (nfs-utils 2.6 has no v2 at all, and v3 needs rpcbind), so that no rpcbind is
// needed. The kernel module must have registered the nfsd filesystem.
func nfsServices(exports string) []service.Spec {
	unsupported := ""
	if !kernelHasFilesystem("nfsd") {
		unsupported = "this kernel has no NFS server (nfsd)"
	}
	prepare := func(ctx context.Context) error {
		if err := mkdirs("/proc/fs/nfsd", "/var/lib/nfs/v4recovery", "/run/rpc_pipefs"); err != nil {
			return err
		}
		if !isMountpoint("/proc/fs/nfsd") {
			if err := unix.Mount("nfsd", "/proc/fs/nfsd", "nfsd", 0, ""); err != nil {
				return fmt.Errorf("mount nfsd: %w", err)
			}
		}
		return os.WriteFile("/etc/exports", []byte(exports), 0o644)
	}
	return []service.Spec{
		{Name: "exportfs", Path: "/usr/sbin/exportfs", Args: []string{"-ra"}, OneShot: true, Prepare: prepare, Unsupported: unsupported},
		{Name: "rpc.mountd", Path: "/usr/sbin/rpc.mountd", Args: []string{"-F", "-N", "2", "-N", "3"}, After: []string{"exportfs"}, Unsupported: unsupported},
		{Name: "rpc.nfsd", Path: "/usr/sbin/rpc.nfsd", Args: []string{"-N", "3", "--no-udp", "8"}, OneShot: true, After: []string{"rpc.mountd"}, Unsupported: unsupported},
	}
}

// debugShellService gives a root shell on the second serial port. It is only started
// when cairn.yaml says debug: true or the kernel has cairn.debug=1: whoever holds the
// machine's serial port holds the machine anyway.
func debugShellService(tty string) service.Spec {
	return service.Spec{
		Name: "debug-shell", Path: "/bin/busybox",
		Args: []string{"sh", "-c", "exec /bin/busybox sh -i <" + tty + " >" + tty + " 2>&1"},
		Env:  []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "PS1=cairn# ", "TERM=vt100"},
	}
}

// Export is one NFS export of a storage pool.
type Export struct {
	Path    string
	Clients netip.Prefix
	// FSID identifies the export to NFS clients; it must not change while they have
	// it mounted, so it is the pool's number + 1, not a position in a list.
	FSID int
}

// poolExports are the NFS exports of the shared pools.
func poolExports(shared []engine.Pool, lan netip.Prefix) []Export {
	var out []Export
	for _, p := range shared {
		out = append(out, Export{Path: p.Path, Clients: lan, FSID: p.ID + 1})
	}
	return out
}

// writeExports rewrites /etc/exports and tells the NFS server (exportfs -ra).
func writeExports(ctx context.Context, exports []Export) error {
	if err := os.WriteFile("/etc/exports", []byte(exportsFile(exports)), 0o644); err != nil {
		return err
	}
	if !kernelHasFilesystem("nfsd") {
		return nil
	}
	if out, err := hostRunner.Run(ctx, "/usr/sbin/exportfs", "-ra"); err != nil {
		return fmt.Errorf("exportfs -ra: %w (%s)", err, out)
	}
	return nil
}

// exportsFile renders /etc/exports. Pools are shared read-write with the LAN only;
// root on the compute nodes must keep root's rights because libvirt runs qemu as root.
func exportsFile(exports []Export) string {
	sorted := append([]Export(nil), exports...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	var b strings.Builder
	b.WriteString("# Written by the Cairn supervisor; changes are overwritten.\n")
	for _, e := range sorted {
		fmt.Fprintf(&b, "%s %s(rw,sync,no_subtree_check,no_root_squash,fsid=%d)\n", e.Path, e.Clients.Masked(), e.FSID)
	}
	return b.String()
}

func mkdirs(dirs ...string) error {
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("mkdir %s: %w", d, err)
		}
	}
	return nil
}

func kernelHasFilesystem(fs string) bool {
	b, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 0 && f[len(f)-1] == fs {
			return true
		}
	}
	return false
}

func isMountpoint(dir string) bool {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[1] == dir {
			return true
		}
	}
	return false
}
