package boot

import (
	"bytes"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// client is what a DHCP request says about the machine that sent it.
type client struct {
	// PXE is true when option 60 begins with "PXEClient": firmware PXE or iPXE.
	PXE bool
	// IPXE is true when option 77 (user class) is "iPXE": the second stage.
	IPXE bool
	// Arch is option 93, the first architecture the client listed.
	Arch    iana.Arch
	HasArch bool
	// UserClass is option 77 as text, for the log.
	UserClass string
}

// clientOf reads the options of req that the boot decision depends on.
func clientOf(req *dhcpv4.DHCPv4) client {
	c := client{PXE: strings.HasPrefix(req.ClassIdentifier(), "PXEClient")}
	// iPXE sends option 77 as the bare string "iPXE", not as RFC 3004's list of
	// length-prefixed strings; accept both.
	raw := req.Options.Get(dhcpv4.OptionUserClassInformation)
	if bytes.Equal(raw, []byte("iPXE")) {
		c.IPXE = true
	}
	classes := req.UserClass()
	for _, uc := range classes {
		if uc == "iPXE" {
			c.IPXE = true
		}
	}
	c.UserClass = strings.Join(classes, ",")
	if archs := req.ClientArch(); len(archs) > 0 {
		c.Arch, c.HasArch = archs[0], true
	}
	return c
}

// bootChoice is the boot file a client is told to load.
type bootChoice struct {
	// File is the DHCP boot file name: a name in the TFTP root or an HTTP URL.
	File string
	// TFTP is true when File is fetched over TFTP from the server (siaddr, option 66).
	TFTP bool
}

// chooseBootFile decides what a client loads. iPXE (option 77 "iPXE") gets the HTTP
// script URL: without this check iPXE would be sent its own binary again and chainload
// forever. Firmware PXE gets the iPXE binary for its architecture (option 93) over
// TFTP. Clients that are not PXE clients, and architectures we have no binary for,
// get nothing (ok false).
func chooseBootFile(c client, scriptURL string) (bootChoice, bool) {
	if c.IPXE {
		return bootChoice{File: scriptURL}, true
	}
	if !c.PXE {
		return bootChoice{}, false
	}
	if !c.HasArch {
		// Option 93 is mandatory for PXE clients; old BIOS ROMs that omit it are BIOS.
		return bootChoice{File: FileBIOS, TFTP: true}, true
	}
	switch c.Arch {
	case iana.INTEL_X86PC:
		return bootChoice{File: FileBIOS, TFTP: true}, true
	case 7, 9: // RFC 4578 (with errata): 7 = EFI BC, 9 = EFI x86-64; both amd64 UEFI.
		return bootChoice{File: FileUEFI, TFTP: true}, true
	default:
		return bootChoice{}, false
	}
}
