package settings

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Parse reads cairn.yaml. It never fails as a whole: each key that is unknown, of the
// wrong kind or invalid gives a Problem that names the key and says what to write, and
// that key keeps its default. Bad YAML keeps every default. Settings that contradict
// each other (a gateway without an address) are reported on the key that is ignored.
func Parse(data []byte) (Settings, []Problem) {
	s := Defaults()
	p := &parser{}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		p.add("", "is not valid YAML (%s); every setting keeps its default. Write one key: value per line and indent with spaces under lan: and uplink:%s",
			strings.TrimPrefix(err.Error(), "yaml: "), tabHint(data))
		return s, p.problems
	}
	if len(doc.Content) == 0 {
		return s, nil
	}
	root := resolve(doc.Content[0])
	if isNull(root) {
		return s, nil
	}
	if root.Kind != yaml.MappingNode {
		p.add("", "must hold settings as key: value lines, like admin_password: \"s3cret-pass\"; every setting keeps its default")
		return s, p.problems
	}
	top := p.mapping("", root, []string{"admin_password", "hostname", "lan", "uplink", "pxe", "debug"})

	if v, ok := p.scalar("admin_password", top["admin_password"], `admin_password: "s3cret-pass"`); ok {
		if msg := checkPassword(v); msg != "" {
			p.add("admin_password", "%s", msg)
		} else {
			s.AdminPassword = v
		}
	}
	if v, ok := p.scalar("hostname", top["hostname"], `hostname: "cairn"`); ok {
		if msg := checkHostname(v); msg != "" {
			p.add("hostname", "%s", msg)
		} else {
			s.Hostname = v
		}
	}
	if v, ok := p.scalar("pxe", top["pxe"], "pxe: dhcp"); ok {
		switch m := strings.ToLower(strings.TrimSpace(v)); m {
		case PXEDHCP, PXEProxy, PXEOff:
			s.PXE = m
		default:
			p.add("pxe", "%s is not a PXE mode; write dhcp (Cairn runs the LAN's DHCP server), proxy (the LAN already has a DHCP server) or off", quote(v))
		}
	}
	if v, ok := p.scalar("debug", top["debug"], "debug: false"); ok {
		if b, ok := parseBool(v); ok {
			s.Debug = b
		} else {
			p.add("debug", "%s is not true or false; write debug: true for a root shell on the second serial port", quote(v))
		}
	}
	p.parseLAN(&s, top["lan"])
	p.parseUplink(&s, top["uplink"])
	p.crossCheck(&s)
	return s, p.problems
}

type parser struct {
	problems []Problem
	// set records the keys whose values were accepted, for the cross checks.
	set map[string]bool
}

func (p *parser) add(key, format string, args ...any) {
	p.problems = append(p.problems, Problem{Key: key, Message: fmt.Sprintf(format, args...)})
}

func (p *parser) accept(key string) {
	if p.set == nil {
		p.set = map[string]bool{}
	}
	p.set[key] = true
}

// mapping returns the values of a mapping by key. Unknown and repeated keys are
// problems, and a repeated key's values are all dropped: which one the author meant
// is not knowable, so the default is the safe choice.
func (p *parser) mapping(prefix string, n *yaml.Node, known []string) map[string]*yaml.Node {
	out := map[string]*yaml.Node{}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		key := join(prefix, k.Value)
		if k.Kind != yaml.ScalarNode {
			p.add(prefix, "line %d has a key that is not a plain name; write key: value", k.Line)
			continue
		}
		if !slices.Contains(known, k.Value) {
			p.add(key, "is not a setting%s", suggest(prefix, k.Value, known))
			continue
		}
		if line, dup := seen[k.Value]; dup {
			if line > 0 {
				p.add(key, "is set twice (lines %d and %d); keep one of them", line, k.Line)
				seen[k.Value] = 0 // report a key once, however often it repeats
			}
			delete(out, k.Value)
			continue
		}
		seen[k.Value] = k.Line
		out[k.Value] = v
	}
	return out
}

// scalar returns a single value. A missing or empty (null) value is not a problem: the
// key keeps its default.
func (p *parser) scalar(key string, n *yaml.Node, example string) (string, bool) {
	if n == nil || isNull(n) {
		return "", false
	}
	if n.Kind != yaml.ScalarNode {
		p.add(key, "must be a single value, not a %s; write it like %s", kindName(n), example)
		return "", false
	}
	return n.Value, true
}

func (p *parser) parseLAN(s *Settings, n *yaml.Node) {
	if n == nil || isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		p.add("lan", "must hold interface: and address: on indented lines below it, like\n  lan:\n    interface: \"eth1\"\n    address: 10.0.0.1/16")
		return
	}
	m := p.mapping("lan", n, []string{"interface", "address"})
	if v, ok := p.scalar("lan.interface", m["interface"], `interface: "eth1"`); ok {
		if name, msg := checkInterface(v); msg != "" {
			p.add("lan.interface", "%s", msg)
		} else {
			s.LAN.Interface = name
			p.accept("lan.interface")
		}
	}
	if v, ok := p.scalar("lan.address", m["address"], "address: 10.0.0.1/16"); ok {
		if pf, msg := checkLANAddress(v); msg != "" {
			p.add("lan.address", "%s", msg)
		} else {
			s.LAN.Address = pf
			p.accept("lan.address")
		}
	}
}

func (p *parser) parseUplink(s *Settings, n *yaml.Node) {
	if n == nil || isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		p.add("uplink", "must hold interface: and dhcp: true (or address: and gateway:) on indented lines below it, like\n  uplink:\n    interface: \"eth0\"\n    dhcp: true")
		return
	}
	m := p.mapping("uplink", n, []string{"interface", "dhcp", "address", "gateway", "dns"})
	if v, ok := p.scalar("uplink.interface", m["interface"], `interface: "eth0"`); ok {
		if name, msg := checkInterface(v); msg != "" {
			p.add("uplink.interface", "%s", msg)
		} else {
			s.Uplink.Interface = name
		}
	}

	// dhcp, address and gateway depend on each other; read all three, then decide.
	dhcpSet, dhcp := false, false
	if v, ok := p.scalar("uplink.dhcp", m["dhcp"], "dhcp: true"); ok {
		if b, valid := parseBool(v); valid {
			dhcpSet, dhcp = true, b
		} else {
			p.add("uplink.dhcp", "%s is not true or false; write dhcp: true, or dhcp: false with address: and gateway:", quote(v))
		}
	}
	addrGiven, addrOK := false, false
	var addr netip.Prefix
	if v, ok := p.scalar("uplink.address", m["address"], "address: 192.168.1.10/24"); ok {
		addrGiven = true
		if dhcpSet && dhcp {
			p.add("uplink.address", "is set but uplink.dhcp is true, so it is ignored; remove address:, or write dhcp: false to use it")
		} else if pf, msg := checkHostPrefix(v, "192.168.1.10/24"); msg != "" {
			p.add("uplink.address", "%s; the uplink uses DHCP instead", msg)
		} else {
			addr, addrOK = pf, true
		}
	}
	gwOK := false
	var gw netip.Addr
	if v, ok := p.scalar("uplink.gateway", m["gateway"], "gateway: 192.168.1.1"); ok {
		a, err := netip.ParseAddr(strings.TrimSpace(v))
		switch {
		case err != nil:
			p.add("uplink.gateway", "%s is not an IP address; write it like 192.168.1.1 (no prefix length)", quote(v))
		case !addrOK && !addrGiven:
			p.add("uplink.gateway", "is only used with a static uplink.address; remove it, or add address: (like 192.168.1.10/24) and dhcp: false")
		case !addrOK:
			// The address was rejected and has its own problem; the gateway goes with it.
		case !addr.Contains(a) || a == addr.Addr():
			p.add("uplink.gateway", "%s is not another address in the uplink's network %s; write the router's address in that network", quote(v), addr.Masked())
		default:
			gw, gwOK = a, true
		}
	}
	switch {
	case addrOK:
		s.Uplink.DHCP = false
		s.Uplink.Address = addr
		if gwOK {
			s.Uplink.Gateway = gw
		}
	case dhcpSet && !dhcp && !addrGiven:
		p.add("uplink.dhcp", "is false but there is no uplink.address; add address: (like 192.168.1.10/24) and gateway:, or write dhcp: true. The uplink uses DHCP for now")
	}

	if n := m["dns"]; n != nil && !isNull(n) {
		var items []*yaml.Node
		switch n.Kind {
		case yaml.ScalarNode:
			items = []*yaml.Node{n}
		case yaml.SequenceNode:
			items = n.Content
		default:
			p.add("uplink.dns", "must be a list of addresses, like dns: [192.168.1.1, 9.9.9.9]")
		}
		for _, it := range items {
			it = resolve(it)
			a, err := netip.ParseAddr(strings.TrimSpace(it.Value))
			if it.Kind != yaml.ScalarNode || err != nil {
				p.add("uplink.dns", "%s is not an IP address; write name servers like dns: [192.168.1.1, 9.9.9.9]", quote(it.Value))
				continue
			}
			s.Uplink.DNS = append(s.Uplink.DNS, a)
		}
	}
}

// crossCheck finds settings that are each valid but wrong together.
func (p *parser) crossCheck(s *Settings) {
	if s.LAN.Interface != "" && s.LAN.Interface == s.Uplink.Interface {
		p.add("lan.interface", "is the same interface as uplink.interface; the LAN needs an interface of its own, or the uplink's network would get Cairn's DHCP offers. The LAN interface is decided at boot")
		s.LAN.Interface = ""
	}
	if !s.Uplink.DHCP && s.Uplink.Address.IsValid() && s.LAN.Address.Overlaps(s.Uplink.Address.Masked()) {
		fallback := Defaults().LAN.Address
		for _, c := range []string{"10.0.0.1/16", "172.16.0.1/16", "192.168.100.1/24"} {
			if pf := netip.MustParsePrefix(c); !pf.Overlaps(s.Uplink.Address.Masked()) {
				fallback = pf
				break
			}
		}
		if p.set["lan.address"] {
			p.add("lan.address", "%s overlaps the uplink's network %s; pick a LAN network the uplink does not use. Using %s for now",
				s.LAN.Address, s.Uplink.Address.Masked(), fallback)
		} else {
			p.add("lan.address", "the default %s overlaps the uplink's network %s; set lan.address to a network the uplink does not use. Using %s for now",
				s.LAN.Address, s.Uplink.Address.Masked(), fallback)
		}
		s.LAN.Address = fallback
	}
}

func checkPassword(v string) string {
	switch {
	case utf8.RuneCountInString(v) < MinPasswordLength:
		return fmt.Sprintf("is shorter than %d characters; write a longer one, or remove admin_password: and a password is generated and shown on the console", MinPasswordLength)
	case len(v) > MaxPasswordBytes:
		return fmt.Sprintf("is longer than %d bytes; write a shorter one, or remove admin_password: and a password is generated and shown on the console", MaxPasswordBytes)
	case strings.IndexFunc(v, unicode.IsControl) >= 0:
		return "contains a line break or another control character; write it on one line in quotes"
	}
	return ""
}

func checkHostname(v string) string {
	const bad = "; write letters, digits and hyphens, like cairn or cairn-admin.example.org"
	if v == "" || len(v) > 63 {
		return fmt.Sprintf("%s must have 1 to 63 characters%s", quote(v), bad)
	}
	for _, label := range strings.Split(v, ".") {
		if label == "" || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
			return fmt.Sprintf("%s is not a host name%s", quote(v), bad)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return fmt.Sprintf("%s is not a host name%s", quote(v), bad)
			}
		}
	}
	return ""
}

// checkInterface accepts a link name or an Ethernet MAC address, which it returns in
// canonical lowercase form.
func checkInterface(v string) (string, string) {
	v = strings.TrimSpace(v)
	const how = `write an interface name like "eth1" or a MAC address like "52:54:00:12:34:56"`
	if v == "" {
		return "", "is empty; " + how
	}
	if hw, err := net.ParseMAC(v); err == nil {
		if len(hw) != 6 {
			return "", fmt.Sprintf("%s is not an Ethernet MAC address (six hex pairs); %s", quote(v), how)
		}
		return hw.String(), ""
	}
	if strings.Contains(v, ":") {
		return "", fmt.Sprintf("%s is not a MAC address; %s", quote(v), how)
	}
	if len(v) > 15 || v == "." || v == ".." || strings.ContainsAny(v, "/") || strings.IndexFunc(v, unicode.IsSpace) >= 0 {
		return "", fmt.Sprintf("%s is not an interface name (at most 15 characters, no spaces or slashes); %s", quote(v), how)
	}
	return v, ""
}

func checkLANAddress(v string) (netip.Prefix, string) {
	v = strings.TrimSpace(v)
	pf, err := netip.ParsePrefix(v)
	if err != nil {
		if a, err := netip.ParseAddr(v); err == nil && a.Is4() {
			return pf, fmt.Sprintf("%s is not an address with a prefix length; write it like %s/%d", quote(v), a, classicBits(a))
		}
		return pf, fmt.Sprintf("%s is not an IPv4 address with a prefix length; write it like 10.0.0.1/16", quote(v))
	}
	a := pf.Addr()
	if a.Is4In6() || !a.Is4() {
		return pf, fmt.Sprintf("%s is not an IPv4 address; compute nodes PXE-boot over IPv4, so write one like 10.0.0.1/16", quote(v))
	}
	if pf.Bits() < 8 || pf.Bits() > 30 {
		return pf, fmt.Sprintf("%s has prefix length /%d; a LAN with compute nodes needs /8 to /30, like 10.0.0.1/16", quote(v), pf.Bits())
	}
	if msg := checkUsable(pf, "10.0.0.1/16"); msg != "" {
		return pf, fmt.Sprintf("%s %s", quote(v), msg)
	}
	return pf, ""
}

// checkHostPrefix accepts an IPv4 or IPv6 host address with its prefix length.
func checkHostPrefix(v, example string) (netip.Prefix, string) {
	v = strings.TrimSpace(v)
	pf, err := netip.ParsePrefix(v)
	if err != nil {
		if a, err := netip.ParseAddr(v); err == nil && a.Is4() {
			return pf, fmt.Sprintf("%s is not an address with a prefix length; write it like %s/%d", quote(v), a, classicBits(a))
		}
		return pf, fmt.Sprintf("%s is not an address with a prefix length; write it like %s", quote(v), example)
	}
	if pf.Addr().Is4In6() {
		return pf, fmt.Sprintf("%s is an IPv4-mapped IPv6 address; write it like %s", quote(v), example)
	}
	if msg := checkUsable(pf, example); msg != "" {
		return pf, fmt.Sprintf("%s %s", quote(v), msg)
	}
	return pf, ""
}

// checkUsable rejects addresses that no interface of a host may carry.
func checkUsable(pf netip.Prefix, example string) string {
	a := pf.Addr()
	if a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() || a.IsLinkLocalUnicast() || a == netip.IPv4Unspecified().Prev() {
		return fmt.Sprintf("is not an address a host can have on a network; write one like %s", example)
	}
	if a.Is4() && pf.Bits() <= 30 {
		if a == pf.Masked().Addr() {
			return fmt.Sprintf("is the network's own address, which no host can have; write a host address like %s/%d", a.Next(), pf.Bits())
		}
		if a == lastAddr(pf) {
			return fmt.Sprintf("is the network's broadcast address; write a host address like %s/%d", pf.Masked().Addr().Next(), pf.Bits())
		}
	}
	return ""
}

func lastAddr(pf netip.Prefix) netip.Addr {
	b := pf.Masked().Addr().As4()
	host := uint32(1)<<(32-pf.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// classicBits suggests a prefix length for an address written without one.
func classicBits(a netip.Addr) int {
	switch b := a.As4(); {
	case b[0] == 10 || b[0] == 172:
		return 16
	default:
		return 24
	}
}

func parseBool(v string) (bool, bool) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "yes", "on":
		return true, true
	case "false", "no", "off":
		return false, true
	}
	return false, false
}

func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "list"
	case yaml.MappingNode:
		return "group of settings"
	}
	return "value"
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// quote shows a value in a message, shortened so a pasted blob stays readable.
func quote(v string) string {
	if r := []rune(v); len(r) > 40 {
		v = string(r[:40]) + "…"
	}
	return strconv.Quote(v)
}

func tabHint(data []byte) string {
	if strings.Contains(string(data), "\t") {
		return " (the file has tab characters: YAML indents with spaces only)"
	}
	return ""
}

// suggest names the closest known key, or lists them all.
func suggest(prefix, key string, known []string) string {
	best, bestDist := "", 3
	lower := strings.ToLower(key)
	for _, k := range known {
		if d := editDistance(lower, k); d < bestDist {
			best, bestDist = k, d
		}
	}
	for _, k := range known { // "pxe_mode" for "pxe", "admin" for "admin_password"
		if best == "" && lower != "" && (strings.HasPrefix(lower, k) || strings.HasPrefix(k, lower)) {
			best = k
		}
	}
	if best != "" {
		return fmt.Sprintf("; did you mean %s?", join(prefix, best))
	}
	where := "the settings are "
	if prefix != "" {
		where = "the settings under " + prefix + ": are "
	}
	return "; " + where + strings.Join(known[:len(known)-1], ", ") + " and " + known[len(known)-1]
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
