package vnet

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ParsePorts parses a port list such as "80,443,192.168.0.0/16:445,udp/53".
// Each comma-separated item is [source ":"] [proto "/"] port: source is an IPv4 prefix
// or address (an address means just that host), proto is tcp (the default) or udp.
// An empty or blank string means all ports and returns nil.
func ParsePorts(s string) ([]PortRule, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var rules []PortRule
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, fmt.Errorf("port list %q: empty item between commas", s)
		}
		r := PortRule{Proto: "tcp"}
		rest := item
		if i := strings.LastIndex(item, ":"); i >= 0 {
			src := item[:i]
			rest = item[i+1:]
			p, err := parseSource(src)
			if err != nil {
				return nil, fmt.Errorf("port list item %q: source %q is not an IPv4 address or prefix such as 192.168.0.0/16", item, src)
			}
			r.From = p
		}
		if i := strings.Index(rest, "/"); i >= 0 {
			r.Proto = strings.ToLower(rest[:i])
			if r.Proto != "tcp" && r.Proto != "udp" {
				return nil, fmt.Errorf("port list item %q: protocol %q must be tcp or udp", item, rest[:i])
			}
			rest = rest[i+1:]
		}
		n, err := strconv.ParseUint(rest, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("port list item %q: port %q must be a number from 1 to 65535", item, rest)
		}
		r.Port = uint16(n)
		rules = append(rules, r)
	}
	return rules, nil
}

func parseSource(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil || !p.Addr().Is4() {
			return netip.Prefix{}, fmt.Errorf("bad prefix")
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Prefix{}, fmt.Errorf("bad address")
	}
	return netip.PrefixFrom(a, 32), nil
}

// String formats r the way ParsePorts reads it.
func (r PortRule) String() string {
	s := strconv.Itoa(int(r.Port))
	if r.Proto != "" && r.Proto != "tcp" {
		s = r.Proto + "/" + s
	}
	if r.From.IsValid() {
		s = r.From.String() + ":" + s
	}
	return s
}
