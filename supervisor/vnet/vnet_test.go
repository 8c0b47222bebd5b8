package vnet

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestValidateExternal(t *testing.T) {
	a := netip.MustParseAddr
	internal := Network{ID: 1, Prefix: netip.MustParsePrefix("10.1.1.0/24"), Gateway: true}
	ext := Network{ID: 3, External: true, Gateway: true, Routed: []netip.Addr{a("198.51.100.100")}}
	ok := State{Uplink: "up0", Networks: []Network{internal, ext},
		Mappings: []Mapping{{External: a("198.51.100.10"), Internal: a("10.1.1.11")}}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid state refused: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*State)
		want string
	}{
		{"external with prefix", func(s *State) { s.Networks[1].Prefix = netip.MustParsePrefix("10.1.3.0/24") }, "no prefix"},
		{"routed on an internal network", func(s *State) { s.Networks[0].Routed = []netip.Addr{a("198.51.100.101")} }, "only to an external segment"},
		{"routed off the gateway node", func(s *State) { s.Networks[1].Gateway = false }, "only to an external segment"},
		{"routed without uplink", func(s *State) { s.Uplink, s.Mappings = "", nil }, "without an uplink"},
		{"routed IPv6", func(s *State) { s.Networks[1].Routed = []netip.Addr{a("2001:db8::1")} }, "IPv4"},
		{"routed twice", func(s *State) {
			s.Networks = append(s.Networks, Network{ID: 4, External: true, Gateway: true, Routed: []netip.Addr{a("198.51.100.100")}})
		}, "already routed to network 3"},
		{"routed and mapped", func(s *State) { s.Mappings[0].External = a("198.51.100.100") }, "own external address"},
	} {
		s := ok
		s.Networks = append([]Network(nil), ok.Networks...)
		s.Networks[0].Routed = nil
		s.Mappings = append([]Mapping(nil), ok.Mappings...)
		tc.edit(&s)
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one containing %q", tc.name, err, tc.want)
		}
	}
	// On a compute node an external segment is a plain bridge.
	if err := (State{Networks: []Network{{ID: 3, External: true}}}).Validate(); err != nil {
		t.Errorf("external segment on a compute node refused: %v", err)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	in := State{
		Underlay: "lan0",
		Peers:    []netip.Addr{netip.MustParseAddr("192.168.77.2")},
		Networks: []Network{
			{ID: 1, Prefix: netip.MustParsePrefix("10.1.1.0/24"), Gateway: true},
			{ID: 3, External: true, Gateway: true, Routed: []netip.Addr{netip.MustParseAddr("198.51.100.100")}},
			{ID: 4, External: true},
		},
		Uplink: "up0",
		Mappings: []Mapping{{External: netip.MustParseAddr("198.51.100.10"), Internal: netip.MustParseAddr("10.1.1.11"),
			Ports: []PortRule{{Proto: "tcp", Port: 80}, {Proto: "udp", Port: 53, From: netip.MustParsePrefix("192.0.2.0/24")}}}},
	}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	// The zero prefixes of external segments and open port rules are left out.
	for _, absent := range []string{`"prefix":""`, `"from":""`, `"routed":null`} {
		if strings.Contains(string(b), absent) {
			t.Errorf("JSON has %s: %s", absent, b)
		}
	}
	if !strings.Contains(string(b), `{"id":4,"external":true}`) {
		t.Errorf("compute node's external segment is not {\"id\":4,\"external\":true}: %s", b)
	}
	var out State
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Errorf("round trip changed the state:\n%+v\n%+v", in, out)
	}
	if out.Networks[2].Prefix.IsValid() || out.Mappings[0].Ports[0].From.IsValid() {
		t.Errorf("zero prefixes came back valid")
	}
	if err := out.Validate(); err != nil {
		t.Errorf("decoded state refused: %v", err)
	}
}
