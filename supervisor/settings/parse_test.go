package settings

import (
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

func TestParseReadmeExample(t *testing.T) {
	data := []byte(`
admin_password: "s3cret-pass"
hostname: cairn-lab
lan:                       # the LAN that compute nodes PXE-boot from
  interface: "52:54:00:00:00:01"
  address: 10.0.0.1/16
uplink:
  interface: "52:54:00:00:00:02"
  dhcp: true
pxe: dhcp
`)
	s, problems := Parse(data)
	if len(problems) != 0 {
		t.Fatalf("problems: %v", problems)
	}
	want := Settings{
		AdminPassword: "s3cret-pass",
		Hostname:      "cairn-lab",
		LAN:           LAN{Interface: "52:54:00:00:00:01", Address: netip.MustParsePrefix("10.0.0.1/16")},
		Uplink:        Uplink{Interface: "52:54:00:00:00:02", DHCP: true},
		PXE:           PXEDHCP,
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("got  %+v\nwant %+v", s, want)
	}
}

func TestParseStaticUplink(t *testing.T) {
	s, problems := Parse([]byte(`
uplink:
  interface: eth0
  address: 192.168.1.10/24
  gateway: 192.168.1.1
  dns: [192.168.1.1, "2620:fe::fe"]
lan:
  interface: 52-54-00-AB-CD-EF
pxe: proxy
`))
	if len(problems) != 0 {
		t.Fatalf("problems: %v", problems)
	}
	want := Uplink{
		Interface: "eth0",
		Address:   netip.MustParsePrefix("192.168.1.10/24"),
		Gateway:   netip.MustParseAddr("192.168.1.1"),
		DNS:       []netip.Addr{netip.MustParseAddr("192.168.1.1"), netip.MustParseAddr("2620:fe::fe")},
	}
	if !reflect.DeepEqual(s.Uplink, want) {
		t.Errorf("uplink = %+v, want %+v", s.Uplink, want)
	}
	if s.LAN.Interface != "52:54:00:ab:cd:ef" {
		t.Errorf("lan.interface = %q, want the MAC in canonical form", s.LAN.Interface)
	}
	if s.PXE != PXEProxy || s.AdminPassword != "" {
		t.Errorf("pxe = %q, password = %q", s.PXE, s.AdminPassword)
	}
}

func TestParseEmpty(t *testing.T) {
	for _, in := range []string{"", "\n", "# only a comment\n", "---\n"} {
		s, problems := Parse([]byte(in))
		if len(problems) != 0 || !reflect.DeepEqual(s, Defaults()) {
			t.Errorf("Parse(%q) = %+v, %v; want defaults and no problems", in, s, problems)
		}
	}
}

// Each bad input gives a problem naming the key, with a message that says what to
// write, and the key keeps its default while the good keys are kept.
func TestParseProblems(t *testing.T) {
	good := `admin_password: "good-password"` + "\n"
	tests := []struct {
		name    string
		in      string
		key     string
		message string // a regexp the message must match
		check   func(t *testing.T, s Settings)
	}{
		{"bad yaml", "lan:\n  address: [10.0.0.1/16\n", "", `not valid YAML \(line \d+`, nil},
		{"tabs", "lan:\n\taddress: 10.0.0.1/16\n", "", `tab characters`, nil},
		{"not a mapping", "- a\n- b\n", "", `key: value`, nil},
		{"unknown top key", good + "pxe_mode: dhcp\n", "pxe_mode", `is not a setting; did you mean pxe\?`, nil},
		{"unknown nested key", good + "lan:\n  adress: 10.1.0.1/16\n", "lan.adress", `did you mean lan.address\?`, nil},
		{"unknown far key", good + "lan:\n  colour: blue\n", "lan.colour", `settings under lan: are interface and address`, nil},
		{"duplicate key", good + "pxe: off\npxe: proxy\n", "pxe", `set twice \(lines 2 and 3\)`, func(t *testing.T, s Settings) {
			if s.PXE != PXEDHCP {
				t.Errorf("pxe = %q, want the default", s.PXE)
			}
		}},
		{"address without prefix", good + "lan:\n  address: 10.0.0.1\n", "lan.address",
			`^"10\.0\.0\.1" is not an address with a prefix length; write it like 10\.0\.0\.1/16$`, nil},
		{"address garbage", good + "lan:\n  address: ten-dot-oh\n", "lan.address", `not an IPv4 address with a prefix length`, nil},
		{"address ipv6", good + "lan:\n  address: fd00::1/64\n", "lan.address", `not an IPv4 address; compute nodes PXE-boot over IPv4`, nil},
		{"address network", good + "lan:\n  address: 10.0.0.0/16\n", "lan.address", `network's own address.*10\.0\.0\.1/16`, nil},
		{"address broadcast", good + "lan:\n  address: 10.0.255.255/16\n", "lan.address", `broadcast address`, nil},
		{"address prefix too long", good + "lan:\n  address: 10.0.0.1/32\n", "lan.address", `prefix length /32`, nil},
		{"address loopback", good + "lan:\n  address: 127.0.0.1/8\n", "lan.address", `not an address a host can have`, nil},
		{"lan not a mapping", good + "lan: eth1\n", "lan", `must hold interface: and address:`, nil},
		{"bad MAC", good + "lan:\n  interface: \"52:54:00:00:01\"\n", "lan.interface", `not a MAC address; write .*52:54:00:12:34:56`, nil},
		{"long MAC", good + "lan:\n  interface: \"00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01\"\n", "lan.interface", `not an Ethernet MAC address`, nil},
		{"bad interface name", good + "uplink:\n  interface: \"my ethernet card\"\n", "uplink.interface", `not an interface name`, nil},
		{"interface list", good + "uplink:\n  interface: [eth0, eth1]\n", "uplink.interface", `must be a single value, not a list`, nil},
		{"same interface", good + "lan:\n  interface: eth0\nuplink:\n  interface: eth0\n", "lan.interface", `same interface as uplink.interface`, func(t *testing.T, s Settings) {
			if s.LAN.Interface != "" || s.Uplink.Interface != "eth0" {
				t.Errorf("lan.interface = %q, uplink.interface = %q", s.LAN.Interface, s.Uplink.Interface)
			}
		}},
		{"pxe maybe", good + "pxe: maybe\n", "pxe", `^"maybe" is not a PXE mode; write dhcp .*, proxy .* or off$`, nil},
		{"pxe false", good + "pxe: false\n", "pxe", `not a PXE mode`, nil},
		{"short password", "admin_password: abc\n", "admin_password", `shorter than 8 characters.*generated`, func(t *testing.T, s Settings) {
			if s.AdminPassword != "" {
				t.Errorf("password = %q, want empty (generated later)", s.AdminPassword)
			}
		}},
		{"long password", "admin_password: " + strings.Repeat("x", 73) + "\n", "admin_password", `longer than 72 bytes`, nil},
		{"multiline password", "admin_password: |\n  line-one-xx\n  line-two-xx\n", "admin_password", `line break`, nil},
		{"bad hostname", good + "hostname: cairn_admin\n", "hostname", `not a host name`, nil},
		{"dhcp true with address", good + "uplink:\n  dhcp: true\n  address: 192.168.1.10/24\n", "uplink.address", `uplink.dhcp is true`, func(t *testing.T, s Settings) {
			if !s.Uplink.DHCP || s.Uplink.Address.IsValid() {
				t.Errorf("uplink = %+v, want DHCP and no address", s.Uplink)
			}
		}},
		{"dhcp maybe", good + "uplink:\n  dhcp: sometimes\n", "uplink.dhcp", `not true or false`, nil},
		{"dhcp false without address", good + "uplink:\n  dhcp: false\n", "uplink.dhcp", `no uplink.address`, func(t *testing.T, s Settings) {
			if !s.Uplink.DHCP {
				t.Errorf("uplink.dhcp = false, want the DHCP default")
			}
		}},
		{"gateway without address", good + "uplink:\n  gateway: 192.168.1.1\n", "uplink.gateway", `only used with a static uplink.address`, func(t *testing.T, s Settings) {
			if s.Uplink.Gateway.IsValid() || !s.Uplink.DHCP {
				t.Errorf("uplink = %+v", s.Uplink)
			}
		}},
		{"gateway off net", good + "uplink:\n  address: 192.168.1.10/24\n  gateway: 192.168.2.1\n", "uplink.gateway", `not another address in the uplink's network 192\.168\.1\.0/24`, func(t *testing.T, s Settings) {
			if s.Uplink.DHCP || s.Uplink.Address.String() != "192.168.1.10/24" || s.Uplink.Gateway.IsValid() {
				t.Errorf("uplink = %+v, want the static address kept without a gateway", s.Uplink)
			}
		}},
		{"gateway bad", good + "uplink:\n  address: 192.168.1.10/24\n  gateway: 192.168.1.1/24\n", "uplink.gateway", `not an IP address; write it like 192\.168\.1\.1 \(no prefix length\)`, nil},
		{"uplink address bad", good + "uplink:\n  address: 192.168.1.10\n", "uplink.address", `write it like 192\.168\.1\.10/24; the uplink uses DHCP instead`, func(t *testing.T, s Settings) {
			if !s.Uplink.DHCP {
				t.Errorf("uplink.dhcp = false, want DHCP")
			}
		}},
		{"dns bad", good + "uplink:\n  dns: [9.9.9.9, dns.example.org]\n", "uplink.dns", `"dns.example.org" is not an IP address`, func(t *testing.T, s Settings) {
			if len(s.Uplink.DNS) != 1 || s.Uplink.DNS[0].String() != "9.9.9.9" {
				t.Errorf("dns = %v, want the good one kept", s.Uplink.DNS)
			}
		}},
		{"overlap", good + "lan:\n  address: 192.168.1.1/24\nuplink:\n  address: 192.168.1.10/24\n", "lan.address", `overlaps the uplink's network.*Using 10\.0\.0\.1/16`, func(t *testing.T, s Settings) {
			if s.LAN.Address.String() != "10.0.0.1/16" {
				t.Errorf("lan.address = %s", s.LAN.Address)
			}
		}},
		{"overlap default", good + "uplink:\n  address: 10.0.5.10/16\n", "lan.address", `default 10\.0\.0\.1/16 overlaps.*Using 172\.16\.0\.1/16`, func(t *testing.T, s Settings) {
			if s.LAN.Address.String() != "172.16.0.1/16" {
				t.Errorf("lan.address = %s", s.LAN.Address)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, problems := Parse([]byte(tt.in))
			var found *Problem
			for i := range problems {
				if problems[i].Key == tt.key {
					found = &problems[i]
				}
			}
			if found == nil {
				t.Fatalf("no problem for key %q; problems: %v", tt.key, problems)
			}
			if !regexp.MustCompile(tt.message).MatchString(found.Message) {
				t.Errorf("message %q does not match %q", found.Message, tt.message)
			}
			if want := FileName + ": "; !strings.HasPrefix(found.String(), want) {
				t.Errorf("String() = %q, want the prefix %q", found.String(), want)
			}
			if tt.key != "" && !strings.Contains(found.String(), tt.key+": ") {
				t.Errorf("String() = %q does not name the key", found.String())
			}
			if strings.HasPrefix(tt.in, good) && s.AdminPassword != "good-password" && tt.key != "" {
				t.Errorf("the good admin_password was lost: %q", s.AdminPassword)
			}
			if tt.check != nil {
				tt.check(t, s)
			}
			// Whatever went wrong, the settings are usable.
			if !s.LAN.Address.IsValid() || s.PXE == "" || s.Hostname == "" {
				t.Errorf("unusable settings: %+v", s)
			}
		})
	}
}

// Every problem is reported, not only the first one.
func TestParseReportsAllProblems(t *testing.T) {
	_, problems := Parse([]byte("pxe: maybe\nlan:\n  address: 10.0.0.1\n  interface: \"zz:zz\"\nfoo: 1\n"))
	var keys []string
	for _, p := range problems {
		keys = append(keys, p.Key)
	}
	want := []string{"foo", "pxe", "lan.interface", "lan.address"}
	if !reflect.DeepEqual(keys, want) {
		t.Errorf("problem keys = %v, want %v", keys, want)
	}
}

func TestProblemString(t *testing.T) {
	_, problems := Parse([]byte("lan:\n  address: 10.0.0.1\n"))
	want := `cairn.yaml: lan.address: "10.0.0.1" is not an address with a prefix length; write it like 10.0.0.1/16`
	if len(problems) != 1 || problems[0].String() != want {
		t.Errorf("problems = %v, want [%s]", problems, want)
	}
}

func TestPasswordNotEchoed(t *testing.T) {
	_, problems := Parse([]byte("admin_password: hunter2\n"))
	if len(problems) != 1 || strings.Contains(problems[0].String(), "hunter2") {
		t.Errorf("problems = %v: want one that does not show the password on the console", problems)
	}
}

func TestGeneratePassword(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 50; i++ {
		p := GeneratePassword()
		if !regexp.MustCompile(`^[a-km-z3-46-9]{4}(-[a-km-z3-46-9]{4}){3}$`).MatchString(p) {
			t.Fatalf("password %q is not four groups of four readable characters", p)
		}
		if seen[p] {
			t.Fatalf("password %q repeated", p)
		}
		seen[p] = true
		if msg := checkPassword(p); msg != "" {
			t.Fatalf("a generated password fails validation: %s", msg)
		}
	}
	s := Defaults()
	if !s.EnsurePassword() || s.AdminPassword == "" || s.EnsurePassword() {
		t.Errorf("EnsurePassword should generate once, then keep the password")
	}
}

// testdata/cairn.yaml documents every key; it must stay valid.
func TestExampleFile(t *testing.T) {
	data, err := os.ReadFile("testdata/cairn.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, problems := Parse(data)
	if len(problems) != 0 {
		t.Fatalf("the example has problems: %v", problems)
	}
	if s.AdminPassword != "s3cret-pass" || s.LAN.Interface != "52:54:00:00:00:01" || !s.Uplink.DHCP || s.PXE != PXEDHCP {
		t.Errorf("example parsed as %+v", s)
	}
}
