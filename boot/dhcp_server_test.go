package boot

import (
	"bytes"
	"net"
	"path/filepath"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// wire sends m through its wire format, as a server or client sees it.
func wire(t *testing.T, m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	t.Helper()
	out, err := dhcpv4.FromBytes(m.ToBytes())
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func request(t *testing.T, hw net.HardwareAddr, mt dhcpv4.MessageType, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	m, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(mt)}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return wire(t, m)
}

var (
	ipxeMods = []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.Arch(7))),
		dhcpv4.WithUserClass("iPXE", false),
	}
	uefiMods = []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.Arch(7))),
		dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}),
	}
)

func TestAnswerDHCPFullMode(t *testing.T) {
	cfg := validConfig(t)
	cfg.Router = net.ParseIP("10.0.0.254")
	cfg.DNS = []net.IP{net.ParseIP("10.0.0.53")}
	cfg.LeaseFile = filepath.Join(t.TempDir(), "leases.json")
	s, err := New(cfg, computePlanner)
	if err != nil {
		t.Fatal(err)
	}

	// iPXE: address, HTTP script URL, no-pxedhcp.
	offer, dst := s.answerDHCP(request(t, testMAC, dhcpv4.MessageTypeDiscover, ipxeMods...))
	if offer == nil {
		t.Fatal("no offer for iPXE")
	}
	offer = wire(t, offer)
	if offer.MessageType() != dhcpv4.MessageTypeOffer || !dst.IP.Equal(net.IPv4bcast) || dst.Port != 68 {
		t.Errorf("offer %s to %s, want OFFER broadcast to port 68", offer.MessageType(), dst)
	}
	yi := offer.YourIPAddr
	if ipUint(yi) < ipUint(cfg.PoolStart) || ipUint(yi) > ipUint(cfg.PoolEnd) {
		t.Errorf("offered %s, outside the pool", yi)
	}
	if offer.BootFileName != "http://10.0.0.1/boot.ipxe" || offer.BootFileNameOption() != "http://10.0.0.1/boot.ipxe" {
		t.Errorf("iPXE boot file %q / option 67 %q", offer.BootFileName, offer.BootFileNameOption())
	}
	if got := offer.Options.Get(dhcpv4.GenericOptionCode(175)); !bytes.Equal(got, []byte{176, 1, 1}) {
		t.Errorf("option 175 = %v, want 176=1", got)
	}
	if !offer.ServerIdentifier().Equal(cfg.ServerIP) || !offer.Router()[0].Equal(cfg.Router) || !offer.DNS()[0].Equal(cfg.DNS[0]) {
		t.Errorf("server id %s router %v dns %v", offer.ServerIdentifier(), offer.Router(), offer.DNS())
	}
	if offer.SubnetMask().String() != net.CIDRMask(16, 32).String() || offer.IPAddressLeaseTime(0) != DefaultLeaseTime {
		t.Errorf("mask %s lease %s", offer.SubnetMask(), offer.IPAddressLeaseTime(0))
	}

	// REQUEST for the offered address: ACK, saved to the lease file.
	ack, _ := s.answerDHCP(request(t, testMAC, dhcpv4.MessageTypeRequest, append(ipxeMods,
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(cfg.ServerIP)),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(yi)),
		dhcpv4.WithOption(dhcpv4.OptHostName("node-1")))...))
	if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck || !ack.YourIPAddr.Equal(yi) {
		t.Fatalf("request for the offer: got %v", ack)
	}
	reloaded := newPool(cfg.PoolStart, cfg.PoolEnd)
	if _, err := reloaded.load(cfg.LeaseFile); err != nil {
		t.Fatal(err)
	}
	if ls := reloaded.leases(); len(ls) != 1 || !ls[0].IP.Equal(yi) || ls[0].Hostname != "node-1" || ls[0].MAC.String() != testMAC.String() {
		t.Errorf("lease file holds %+v", ls)
	}

	// REQUEST for another address: NAK, broadcast.
	nak, dst := s.answerDHCP(request(t, testMAC, dhcpv4.MessageTypeRequest,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.0.150.1")))))
	if nak == nil || nak.MessageType() != dhcpv4.MessageTypeNak || !dst.IP.Equal(net.IPv4bcast) {
		t.Fatalf("request for a wrong address: got %v to %v", nak, dst)
	}
	// INIT-REBOOT of a machine we do not know (our lease file was lost): a free pool
	// address is granted, a foreign one refused without taking an address.
	stranger := net.HardwareAddr{0x52, 0x54, 0, 0, 0, 4}
	ack, _ = s.answerDHCP(request(t, stranger, dhcpv4.MessageTypeRequest,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.0.123.45")))))
	if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck || ack.YourIPAddr.String() != "10.0.123.45" {
		t.Errorf("init-reboot with a free address: got %v", ack)
	}
	before := len(s.Leases())
	nak, _ = s.answerDHCP(request(t, net.HardwareAddr{0x52, 0x54, 0, 0, 0, 5}, dhcpv4.MessageTypeRequest,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("192.168.1.20")))))
	if nak == nil || nak.MessageType() != dhcpv4.MessageTypeNak || len(s.Leases()) != before {
		t.Errorf("init-reboot with a foreign address: got %v, leases %d → %d", nak, before, len(s.Leases()))
	}

	// REQUEST meant for another server: silence.
	if r, _ := s.answerDHCP(request(t, testMAC, dhcpv4.MessageTypeRequest,
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.0.0.2"))),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(yi)))); r != nil {
		t.Errorf("answered a request for another server: %v", r)
	}
	// Renewal from the bound address: ACK unicast to it.
	renew, dst := s.answerDHCP(request(t, testMAC, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(yi)))
	if renew == nil || renew.MessageType() != dhcpv4.MessageTypeAck || !dst.IP.Equal(yi) {
		t.Errorf("renewal: got %v to %v", renew, dst)
	}

	// UEFI firmware PXE: ipxe.efi over TFTP from us.
	uefi := net.HardwareAddr{0x52, 0x54, 0, 0, 0, 2}
	offer, _ = s.answerDHCP(request(t, uefi, dhcpv4.MessageTypeDiscover, uefiMods...))
	offer = wire(t, offer)
	if offer.BootFileName != FileUEFI || !offer.ServerIPAddr.Equal(cfg.ServerIP) || offer.TFTPServerName() != "10.0.0.1" {
		t.Errorf("uefi: file %q siaddr %s option 66 %q", offer.BootFileName, offer.ServerIPAddr, offer.TFTPServerName())
	}
	if offer.Options.Has(dhcpv4.GenericOptionCode(175)) {
		t.Error("option 175 sent to firmware PXE")
	}

	// An ordinary client: an address, no boot file.
	plain := net.HardwareAddr{0x52, 0x54, 0, 0, 0, 3}
	offer, _ = s.answerDHCP(request(t, plain, dhcpv4.MessageTypeDiscover))
	offer = wire(t, offer)
	if offer.YourIPAddr.IsUnspecified() || offer.BootFileName != "" || offer.Options.Has(dhcpv4.OptionBootfileName) {
		t.Errorf("ordinary client: yiaddr %s file %q", offer.YourIPAddr, offer.BootFileName)
	}

	// RELEASE keeps the binding but ends the lease.
	s.answerDHCP(request(t, testMAC, dhcpv4.MessageTypeRelease, dhcpv4.WithClientIP(yi)))
	for _, l := range s.Leases() {
		if l.MAC.String() == testMAC.String() && l.Expiry.After(s.now()) {
			t.Errorf("lease still runs after release: %+v", l)
		}
	}
	again, _ := s.answerDHCP(request(t, testMAC, dhcpv4.MessageTypeDiscover, ipxeMods...))
	if !again.YourIPAddr.Equal(yi) {
		t.Errorf("after release got %s, want the same %s", again.YourIPAddr, yi)
	}
}

func TestAnswerProxyDHCP(t *testing.T) {
	cfg := validConfig(t)
	cfg.Mode = ModeProxy
	s, err := New(cfg, computePlanner)
	if err != nil {
		t.Fatal(err)
	}
	bcast := &net.UDPAddr{IP: net.IPv4bcast, Port: 68}

	offer, dst := s.answerProxyDHCP(request(t, testMAC, dhcpv4.MessageTypeDiscover, uefiMods...), bcast, 67)
	if offer == nil {
		t.Fatal("no proxy offer for UEFI PXE")
	}
	offer = wire(t, offer)
	if !offer.YourIPAddr.IsUnspecified() {
		t.Errorf("proxy offer hands out %s", offer.YourIPAddr)
	}
	if offer.ClassIdentifier() != "PXEClient" || !bytes.Equal(offer.Options.Get(dhcpv4.OptionVendorSpecificInformation), []byte{6, 1, 8, 255}) {
		t.Errorf("option 60 %q option 43 %v", offer.ClassIdentifier(), offer.Options.Get(dhcpv4.OptionVendorSpecificInformation))
	}
	if offer.BootFileName != FileUEFI || !offer.ServerIPAddr.Equal(cfg.ServerIP) || !dst.IP.Equal(net.IPv4bcast) {
		t.Errorf("file %q siaddr %s to %s", offer.BootFileName, offer.ServerIPAddr, dst)
	}
	if len(offer.Options.Get(dhcpv4.OptionClientMachineIdentifier)) != 17 {
		t.Error("option 97 not echoed")
	}

	// The ProxyDHCP REQUEST on port 4011 gets an ACK back to the client's address.
	peer := &net.UDPAddr{IP: net.ParseIP("10.0.5.5"), Port: 4011}
	ack, dst := s.answerProxyDHCP(request(t, testMAC, dhcpv4.MessageTypeRequest,
		append(ipxeMods, dhcpv4.WithClientIP(peer.IP))...), peer, 4011)
	if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck || dst != peer || ack.BootFileName != "http://10.0.0.1/boot.ipxe" {
		t.Fatalf("4011 request: got %v to %v", ack, dst)
	}
	if !ack.YourIPAddr.IsUnspecified() {
		t.Errorf("proxy ack hands out %s", ack.YourIPAddr)
	}

	// Not a PXE client, a REQUEST on port 67, a DISCOVER on 4011: silence.
	for name, r := range map[string]*dhcpv4.DHCPv4{
		"ordinary discover": request(t, testMAC, dhcpv4.MessageTypeDiscover),
		"request on 67":     request(t, testMAC, dhcpv4.MessageTypeRequest, uefiMods...),
	} {
		if resp, _ := s.answerProxyDHCP(r, bcast, 67); resp != nil {
			t.Errorf("%s answered: %v", name, resp)
		}
	}
	if resp, _ := s.answerProxyDHCP(request(t, testMAC, dhcpv4.MessageTypeDiscover, uefiMods...), peer, 4011); resp != nil {
		t.Errorf("discover on 4011 answered: %v", resp)
	}
	if len(s.Leases()) != 0 {
		t.Errorf("proxy mode made leases: %v", s.Leases())
	}
}
