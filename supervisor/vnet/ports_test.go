package vnet

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestParsePorts(t *testing.T) {
	p16 := netip.MustParsePrefix("192.168.0.0/16")
	for _, tc := range []struct {
		in      string
		want    []PortRule
		wantErr string
	}{
		{in: "", want: nil},
		{in: "  ", want: nil},
		{in: "80", want: []PortRule{{Proto: "tcp", Port: 80}}},
		{in: "80,443,192.168.0.0/16:445", want: []PortRule{{Proto: "tcp", Port: 80}, {Proto: "tcp", Port: 443}, {Proto: "tcp", Port: 445, From: p16}}},
		{in: "udp/53", want: []PortRule{{Proto: "udp", Port: 53}}},
		{in: "TCP/22", want: []PortRule{{Proto: "tcp", Port: 22}}},
		{in: "192.168.1.9/16:udp/500", want: []PortRule{{Proto: "udp", Port: 500, From: p16}}},
		{in: "10.0.0.5:22", want: []PortRule{{Proto: "tcp", Port: 22, From: netip.MustParsePrefix("10.0.0.5/32")}}},
		{in: " 80 , 81 ", want: []PortRule{{Proto: "tcp", Port: 80}, {Proto: "tcp", Port: 81}}},
		{in: "80,,81", wantErr: "empty item"},
		{in: "http", wantErr: `port "http"`},
		{in: "0", wantErr: `port "0"`},
		{in: "65536", wantErr: `port "65536"`},
		{in: "sctp/9", wantErr: `protocol "sctp"`},
		{in: "300.1.1.1/8:22", wantErr: `source "300.1.1.1/8"`},
		{in: "fe80::1:22", wantErr: `source "fe80::1"`},
		{in: "80,10.0.0.0/8:", wantErr: `item "10.0.0.0/8:"`},
	} {
		got, err := ParsePorts(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParsePorts(%q) error = %v, want one containing %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParsePorts(%q) = %v, %v, want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestPortRuleStringRoundTrip(t *testing.T) {
	rules, err := ParsePorts("80,udp/53,192.168.0.0/16:445,10.0.0.5/32:udp/9")
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for _, r := range rules {
		parts = append(parts, r.String())
	}
	again, err := ParsePorts(strings.Join(parts, ","))
	if err != nil || !reflect.DeepEqual(again, rules) {
		t.Fatalf("round trip of %v gave %v, %v", rules, again, err)
	}
}

func TestValidate(t *testing.T) {
	net1 := Network{ID: 1, Prefix: netip.MustParsePrefix("10.1.1.0/24"), Gateway: true}
	for _, tc := range []struct {
		s       State
		wantErr string
	}{
		{s: State{Networks: []Network{{ID: 0, Prefix: net1.Prefix}}}, wantErr: "id must be"},
		{s: State{Networks: []Network{{ID: 1, Prefix: netip.MustParsePrefix("10.1.0.0/16")}}}, wantErr: "/24"},
		{s: State{Networks: []Network{net1, {ID: 2, Prefix: net1.Prefix}}}, wantErr: "already used by network 1"},
		{s: State{Networks: []Network{net1}, Mappings: []Mapping{{External: netip.MustParseAddr("1.2.3.4"), Internal: netip.MustParseAddr("10.1.1.5")}}}, wantErr: "without an uplink"},
		{s: State{Uplink: "eth0", Networks: []Network{net1}, Mappings: []Mapping{{External: netip.MustParseAddr("1.2.3.4"), Internal: netip.MustParseAddr("10.9.1.5")}}}, wantErr: "no gateway network"},
		{s: State{Peers: []netip.Addr{netip.MustParseAddr("192.168.1.2")}}, wantErr: "without an underlay"},
		{s: State{Uplink: "eth0", Networks: []Network{net1}, Mappings: []Mapping{{External: netip.MustParseAddr("1.2.3.4"), Internal: netip.MustParseAddr("10.1.1.5")}}}},
	} {
		err := tc.s.Validate()
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.s, err, tc.wantErr)
		}
	}
}
