// Package settings reads the admin node's first-boot settings: cairn.yaml on a disk
// labelled CAIRNCFG (FAT or ISO 9660). It parses and validates them strictly, keeps a
// safe default for every key that is wrong, and says for each one what to write instead,
// so that a typo never keeps the engine from coming up.
package settings

import (
	"crypto/rand"
	"fmt"
	"net/netip"
	"strings"
)

// FileName is the settings file's name in the top folder of the CAIRNCFG disk.
const FileName = "cairn.yaml"

// DiskLabel is the volume label of the disk that carries cairn.yaml.
const DiskLabel = "CAIRNCFG"

// PXE modes of the admin's boot services on the LAN.
const (
	// PXEDHCP runs a full DHCP server on the LAN that also answers PXE clients.
	PXEDHCP = "dhcp"
	// PXEProxy answers only PXE clients (proxyDHCP) because the LAN has its own DHCP server.
	PXEProxy = "proxy"
	// PXEOff runs no DHCP at all: compute nodes boot some other way.
	PXEOff = "off"
)

// Password length limits: the short one keeps guessable passwords out, the long one is
// bcrypt's limit (it ignores bytes after 72).
const (
	MinPasswordLength = 8
	MaxPasswordBytes  = 72
)

// Settings are the admin node's first-boot settings.
type Settings struct {
	// AdminPassword is the password of the first admin user. Empty means "generate
	// one and show it on the console" (see EnsurePassword).
	AdminPassword string
	// Hostname is the admin node's host name.
	Hostname string
	// LAN is the network the compute nodes PXE-boot from.
	LAN LAN
	// Uplink is the network people reach the web console from.
	Uplink Uplink
	// PXE is PXEDHCP, PXEProxy or PXEOff.
	PXE string
	// Debug starts a root shell on the second serial port (ttyS1). Whoever holds the
	// machine's serial ports holds the machine anyway; it is off by default.
	Debug bool
}

// LAN is the admin's side of the compute nodes' network.
type LAN struct {
	// Interface is a link name ("eth1") or a MAC address in canonical lowercase form.
	// Empty means: decide at run time (the second NIC, or none).
	Interface string
	// Address is the admin's address on the LAN, with the LAN's prefix length.
	Address netip.Prefix
}

// Uplink is the admin's connection to the rest of the world.
type Uplink struct {
	// Interface is a link name or a MAC address in canonical lowercase form. Empty
	// means: decide at run time (the first NIC).
	Interface string
	// DHCP asks a DHCP server for the address, route and name servers.
	DHCP bool
	// Address is the static address with its prefix length, when DHCP is false.
	Address netip.Prefix
	// Gateway is the default route's next hop for a static address; it may be unset.
	Gateway netip.Addr
	// DNS are name servers; with DHCP they replace the ones the DHCP server offers.
	DNS []netip.Addr
}

// Defaults returns the settings used when there is no cairn.yaml, and for each key
// that cairn.yaml gets wrong: the uplink is the first NIC with DHCP, the LAN is the
// second NIC (decided at run time) with 10.0.0.1/16, PXE runs a full DHCP server, and
// the admin password is generated.
func Defaults() Settings {
	return Settings{
		Hostname: "cairn",
		LAN:      LAN{Address: netip.MustParsePrefix("10.0.0.1/16")},
		Uplink:   Uplink{DHCP: true},
		PXE:      PXEDHCP,
	}
}

// EnsurePassword sets a generated admin password when none is set and reports
// whether it did, so the caller shows the new password on the console.
func (s *Settings) EnsurePassword() (generated bool) {
	if s.AdminPassword != "" {
		return false
	}
	s.AdminPassword = GeneratePassword()
	return true
}

// Problem is one setting in cairn.yaml that was wrong and replaced by its default.
type Problem struct {
	// Key is the setting's dotted path ("lan.address"); empty for the file as a whole.
	Key string
	// Message says what is wrong and what to write instead.
	Message string
}

// String formats the problem for the console, e.g.
// `cairn.yaml: lan.address: "10.0.0.1" is not an address with a prefix length; write it like 10.0.0.1/16`.
func (p Problem) String() string {
	if p.Key == "" {
		return FileName + ": " + p.Message
	}
	return FileName + ": " + p.Key + ": " + p.Message
}

// passwordAlphabet has no letters or digits that look alike (0/O, 1/l/I, 5/S, 2/Z).
const passwordAlphabet = "abcdefghijkmnopqrstuvwxyz346789"

// GeneratePassword returns a new random password that is easy to read off a console
// and type: 16 characters from a 31-letter alphabet (about 79 bits) in groups of four,
// like "k7dq-3vfe-uxa9-mt4p".
func GeneratePassword() string {
	var b strings.Builder
	for i := 0; i < 16; i++ {
		if i > 0 && i%4 == 0 {
			b.WriteByte('-')
		}
		b.WriteByte(passwordAlphabet[randIntn(len(passwordAlphabet))])
	}
	return b.String()
}

// randIntn returns a uniform random number in [0, n) from crypto/rand.
func randIntn(n int) int {
	var buf [1]byte
	limit := 256 - 256%n // reject the bias at the top
	for {
		if _, err := rand.Read(buf[:]); err != nil {
			// crypto/rand.Read does not fail on Linux ≥ 3.17; if it ever does, a
			// predictable password would be worse than stopping.
			panic(fmt.Sprintf("read random bytes: %v", err))
		}
		if int(buf[0]) < limit {
			return int(buf[0]) % n
		}
	}
}
