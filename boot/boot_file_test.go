package boot

import (
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

const testScriptURL = "http://10.0.0.1/boot.ipxe"

func TestChooseBootFile(t *testing.T) {
	pxe := dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001"))
	arch := func(a iana.Arch) dhcpv4.Modifier { return dhcpv4.WithOption(dhcpv4.OptClientArch(a)) }
	for _, tc := range []struct {
		name     string
		mods     []dhcpv4.Modifier
		wantFile string
		wantTFTP bool
	}{
		{"ordinary client", nil, "", false},
		{"ordinary client with arch", []dhcpv4.Modifier{arch(iana.INTEL_X86PC)}, "", false},
		{"bios pxe", []dhcpv4.Modifier{pxe, arch(0)}, FileBIOS, true},
		{"pxe without arch", []dhcpv4.Modifier{pxe}, FileBIOS, true},
		{"uefi arch 7", []dhcpv4.Modifier{pxe, arch(7)}, FileUEFI, true},
		{"uefi arch 9", []dhcpv4.Modifier{pxe, arch(9)}, FileUEFI, true},
		{"uefi ia32 arch 6", []dhcpv4.Modifier{pxe, arch(6)}, "", false},
		{"arm64 arch 11", []dhcpv4.Modifier{pxe, arch(11)}, "", false},
		{"ipxe bios", []dhcpv4.Modifier{pxe, arch(0), dhcpv4.WithUserClass("iPXE", false)}, testScriptURL, false},
		{"ipxe uefi", []dhcpv4.Modifier{pxe, arch(7), dhcpv4.WithUserClass("iPXE", false)}, testScriptURL, false},
		{"ipxe rfc 3004 user class", []dhcpv4.Modifier{pxe, arch(9), dhcpv4.WithUserClass("iPXE", true)}, testScriptURL, false},
		{"ipxe without option 60", []dhcpv4.Modifier{dhcpv4.WithUserClass("iPXE", false)}, testScriptURL, false},
		{"other user class", []dhcpv4.Modifier{pxe, arch(7), dhcpv4.WithUserClass("gPXE", false)}, FileUEFI, true},
		{"not quite pxe", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("MSFT 5.0")), arch(0)}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := dhcpv4.NewDiscovery(testMAC, tc.mods...)
			if err != nil {
				t.Fatal(err)
			}
			// Round-trip through the wire format, as the server sees it.
			req, err = dhcpv4.FromBytes(req.ToBytes())
			if err != nil {
				t.Fatal(err)
			}
			got, ok := chooseBootFile(clientOf(req), testScriptURL)
			if ok != (tc.wantFile != "") || got.File != tc.wantFile || got.TFTP != tc.wantTFTP {
				t.Errorf("got %+v ok=%v, want file %q tftp=%v", got, ok, tc.wantFile, tc.wantTFTP)
			}
		})
	}
}
