package networks

import (
	"cmp"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/ui/layout"
)

// sortedNetworks orders networks by number.
func sortedNetworks(list []engine.Network) []engine.Network {
	out := slices.Clone(list)
	slices.SortFunc(out, func(a, b engine.Network) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// sortedConnections orders connections by name, then ID, so that rows keep their
// places.
func sortedConnections(list []engine.Connection) []engine.Connection {
	out := slices.Clone(list)
	slices.SortFunc(out, func(a, b engine.Connection) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// sortedServers orders servers by name, then ID.
func sortedServers(list []engine.Server) []engine.Server {
	out := slices.Clone(list)
	slices.SortFunc(out, func(a, b engine.Server) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// KindTone is the badge colour of a connection or network kind: internal gray,
// external blue, mapping amber.
func KindTone(kind string) string {
	switch kind {
	case string(engine.ConnExternal):
		return layout.ToneBlue
	case string(engine.ConnMapping):
		return layout.ToneAmber
	}
	return layout.ToneGray
}

// dnsText is a network's name servers; for one that names none, the engine's.
func dnsText(n engine.Network, defaults []string) string {
	switch {
	case len(n.DNS) > 0:
		return strings.Join(n.DNS, ", ")
	case len(defaults) > 0:
		return "Default: " + strings.Join(defaults, ", ")
	}
	return "Default: none set"
}

// networkLabel is "3 · lab (10.1.2.0/24)", or "3 · external" for a segment.
func networkLabel(n engine.Network) string {
	if n.Prefix == "" {
		return strconv.Itoa(n.ID) + " · " + n.Name
	}
	return strconv.Itoa(n.ID) + " · " + n.Name + " (" + n.Prefix + ")"
}

// networkName names network id for a table: its label, or its number when the
// viewer does not see it.
func (cv connectionsView) networkName(id int) string {
	if n, ok := cv.Networks[id]; ok {
		return networkLabel(n)
	}
	return strconv.Itoa(id)
}

// serverName is a server's name, or its ID when the viewer does not see it.
func (cv connectionsView) serverName(id string) string {
	for _, s := range cv.Servers {
		if s.ID == id {
			return s.Name
		}
	}
	return id
}

// serversFor are the servers a connection can be attached to: its owner's.
func (cv connectionsView) serversFor(owner string) []engine.Server {
	var out []engine.Server
	for _, s := range cv.Servers {
		if s.Owner == owner {
			out = append(out, s)
		}
	}
	return out
}

// canChange reports whether the viewer may change what owner owns: the owner, or an
// admin; never a read-only user.
func canChange(v layout.Viewer, owner string) bool {
	return v.User.Role != engine.RoleReadonly && (v.User.Role == engine.RoleAdmin || owner == v.User.ID)
}

// portsText is a mapping's port list, "All ports" for an empty one.
func portsText(c engine.Connection) string {
	if c.Ports == "" {
		return "All ports"
	}
	return c.Ports
}

// quotaText is "1 of 4".
func quotaText(us engine.Usage) string {
	return fmt.Sprintf("%d of %d", us.ExternalAddresses, us.ExternalQuota)
}

// networksSubtitle sums the networks up: "3 networks · 5 connections".
func networksSubtitle(nv networksView) string {
	conns := 0
	for _, list := range nv.Conns {
		conns += len(list)
	}
	return plural(len(nv.Networks), "network") + " · " + plural(conns, "connection")
}

// connectionsSubtitle sums the connections up: "5 connections · 3 attached".
func connectionsSubtitle(cv connectionsView) string {
	attached := 0
	for _, c := range cv.Conns {
		if c.Server != "" {
			attached++
		}
	}
	return plural(len(cv.Conns), "connection") + " · " + strconv.Itoa(attached) + " attached to servers"
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// kindChecked reports whether the create form's kind is kind (internal by default).
func (f connForm) kindChecked(kind engine.ConnectionKind) bool {
	if f.Kind == "" {
		return kind == engine.ConnInternal
	}
	return f.Kind == string(kind)
}

// joinDNS is a list of name servers as the forms show it.
func joinDNS(dns []string) string { return strings.Join(dns, ", ") }

// serverURL is the path of a server's page.
func serverURL(id string) string { return "/servers/" + url.PathEscape(id) }
