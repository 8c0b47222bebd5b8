package image

import (
	"fmt"
	"slices"
	"strings"
)

// Release describes the build for /etc/cairn-release and /etc/hostname.
type Release struct {
	Version string
	Role    string
}

// passwd and group follow Debian's numbering for the system users the services
// need: libvirt runs qemu as libvirt-qemu, rpc.statd runs as statd, rpcbind as _rpc.
const passwd = `root:x:0:0:root:/root:/bin/sh
messagebus:x:100:101::/nonexistent:/usr/sbin/nologin
statd:x:101:65534::/var/lib/nfs:/usr/sbin/nologin
_rpc:x:102:65534::/run/rpcbind:/usr/sbin/nologin
libvirt-qemu:x:64055:64055:Libvirt Qemu:/var/lib/libvirt:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
`

const group = `root:x:0:
tty:x:5:
disk:x:6:
kvm:x:104:libvirt-qemu
messagebus:x:101:
libvirt:x:105:
libvirt-qemu:x:64055:libvirt-qemu
nogroup:x:65534:
`

const nsswitch = `passwd: files
group: files
shadow: files
hosts: files dns
networks: files
protocols: files
services: files
ethers: files
rpc: files
`

// protocols, services and rpc are the entries of netbase's files that the NFS client
// (mount.nfs looks up "tcp" with getprotobyname) and server need; the images do not
// carry netbase itself.
const (
	protocols = `ip	0	IP
icmp	1	ICMP
tcp	6	TCP
udp	17	UDP
ipv6-icmp	58	IPv6-ICMP
`
	services = `sunrpc	111/tcp	portmapper
sunrpc	111/udp	portmapper
nfs	2049/tcp
nfs	2049/udp
https	443/tcp
libvirt-tls	16514/tcp
`
	rpc = `portmapper	100000	portmap sunrpc rpcbind
nfs	100003	nfsprog
mountd	100005	mount showmount
nlockmgr	100021
status	100024
nfs_acl	100227
`
)

// SystemFiles returns the files under /etc that Cairn writes into role's root tree,
// by path relative to the root. modules is what the supervisor loads at boot, in
// order. The build's version is not among them (see CairnRelease), so that a compute
// image's package part can be cached across versions.
func SystemFiles(role string, modules []string) map[string]string {
	host := "cairn"
	if role != "admin" {
		host = "cairn-" + role
	}
	var shadow strings.Builder
	for _, l := range strings.Split(strings.TrimSpace(passwd), "\n") {
		name, _, _ := strings.Cut(l, ":")
		// "!" locks the account: no password logs in; root gets a shell on the
		// console only through the supervisor's rescue path.
		fmt.Fprintf(&shadow, "%s:!:19000:0:99999:7:::\n", name)
	}
	return map[string]string{
		"etc/passwd":        passwd,
		"etc/group":         group,
		"etc/shadow":        shadow.String(),
		"etc/hostname":      host + "\n",
		"etc/hosts":         "127.0.0.1\tlocalhost\n127.0.1.1\t" + host + "\n::1\tlocalhost ip6-localhost ip6-loopback\n",
		"etc/nsswitch.conf": nsswitch,
		"etc/protocols":     protocols,
		"etc/services":      services,
		"etc/rpc":           rpc,
		"etc/cairn/modules": ModuleListFile(modules),
	}
}

// ReleasePath is where CairnRelease goes.
const ReleasePath = "etc/cairn-release"

// CairnRelease is /etc/cairn-release, in os-release(5) format.
func CairnRelease(rel Release) string {
	return fmt.Sprintf(`NAME="Cairn"
ID=cairn
ID_LIKE=debian
VERSION_ID=%q
PRETTY_NAME="Cairn %s (%s)"
CAIRN_ROLE=%s
CAIRN_BASE="Debian 12 (bookworm)"
`, rel.Version, rel.Version, rel.Role, rel.Role)
}

// ModuleListFile is /etc/cairn/modules (or modules-stage1): one module per line, in
// the order to load them.
func ModuleListFile(modules []string) string {
	var b strings.Builder
	b.WriteString("# Kernel modules the supervisor loads at boot, in order (written by cairn-build).\n")
	for _, m := range modules {
		b.WriteString(m)
		b.WriteByte('\n')
	}
	return b.String()
}

// fileModes are the modes of SystemFiles that are not 0644.
var fileModes = map[string]uint32{"etc/shadow": 0o640}

// sortedPaths returns m's keys sorted.
func sortedPaths(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
