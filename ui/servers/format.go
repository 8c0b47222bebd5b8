package servers

import (
	"cmp"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/ui/layout"
)

// StateLabel names a server state for people: "Running", "Suspended", "Shutting down",
// "Off", "Crashed", "Unknown".
func StateLabel(s engine.ServerState) string {
	switch s {
	case engine.ServerRunning:
		return "Running"
	case engine.ServerPaused:
		return "Suspended"
	case engine.ServerStopping:
		return "Shutting down"
	case engine.ServerShutoff:
		return "Off"
	case engine.ServerCrashed:
		return "Crashed"
	case engine.ServerUnknown:
		return "Unknown"
	}
	return layout.Capitalize(string(s))
}

// StateTone is the badge colour of a server state: running green, shutting down
// blue, suspended and unknown amber, crashed red, off gray.
func StateTone(s engine.ServerState) string {
	switch s {
	case engine.ServerRunning:
		return layout.ToneGreen
	case engine.ServerStopping:
		return layout.ToneBlue
	case engine.ServerPaused, engine.ServerUnknown:
		return layout.ToneAmber
	case engine.ServerCrashed:
		return layout.ToneRed
	}
	return layout.ToneGray
}

// stateNote explains a state whose label alone does not say what to do.
func stateNote(s engine.Server) string {
	switch s.State {
	case engine.ServerUnknown:
		return "The engine cannot reach the server's node; it shows the state again when the node is back."
	case engine.ServerCrashed:
		return "The guest crashed. Start it again, or delete it."
	}
	return ""
}

// isOff is a server that can be started and deleted.
func isOff(s engine.ServerState) bool {
	return s == engine.ServerShutoff || s == engine.ServerCrashed
}

// isLive is a server on a node that can be forced off.
func isLive(s engine.ServerState) bool {
	switch s {
	case engine.ServerRunning, engine.ServerPaused, engine.ServerStopping, engine.ServerUnknown:
		return true
	}
	return false
}

// hasConsole is a server whose consoles can be opened.
func hasConsole(s engine.ServerState) bool {
	return s == engine.ServerRunning || s == engine.ServerPaused || s == engine.ServerStopping
}

// offersForceOff reports whether the page shows the failed shutdown op and offers to
// force the server off in its place.
func (d detailView) offersForceOff() bool {
	return d.canChange && d.op != nil && d.op.Kind == "shutdown" && d.op.State == engine.OpFailed && isLive(d.s.State)
}

// canMigrate reports whether the page offers to migrate the server.
func (d detailView) canMigrate() bool {
	return d.canChange && (d.s.State == engine.ServerRunning || d.s.State == engine.ServerPaused) &&
		d.s.LockNode == "" && len(d.migrateTo) > 0
}

// migrationTargets are the ready nodes other than the one s runs on.
func migrationTargets(nodes []engine.Node, s engine.Server) []engine.Node {
	var out []engine.Node
	for _, n := range sortedNodes(nodes) {
		if n.State == engine.NodeReady && n.ID != s.Node {
			out = append(out, n)
		}
	}
	return out
}

// attachable are the images that can become a disk of s: ready, not ISOs, not
// masters, used by no server, and not on another node's local storage.
func attachable(images []engine.Image, s engine.Server) []engine.Image {
	var out []engine.Image
	for _, im := range sortedImages(images) {
		if im.State == engine.ImageReady && !isISO(im) && !im.Master && len(im.UsedBy) == 0 &&
			(im.Node == "" || s.Node == "" || im.Node == s.Node) {
			out = append(out, im)
		}
	}
	return out
}

// isoImages are the ready ISO images, for the CD-ROM.
func isoImages(images []engine.Image) []engine.Image {
	var out []engine.Image
	for _, im := range sortedImages(images) {
		if im.State == engine.ImageReady && isISO(im) {
			out = append(out, im)
		}
	}
	return out
}

func isISO(im engine.Image) bool {
	return im.Format == "iso"
}

func sortedImages(images []engine.Image) []engine.Image {
	out := slices.Clone(images)
	slices.SortFunc(out, func(a, b engine.Image) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
	})
	return out
}

func sortedNodes(nodes []engine.Node) []engine.Node {
	out := slices.Clone(nodes)
	slices.SortFunc(out, func(a, b engine.Node) int {
		return cmp.Or(cmp.Compare(nodeName(a), nodeName(b)), cmp.Compare(a.ID, b.ID))
	})
	return out
}

func nodeName(n engine.Node) string {
	if n.Name != "" {
		return n.Name
	}
	return n.ID
}

// imageLabel describes an image in a choice: "debian-12 · qcow2 · 20 GiB".
func imageLabel(im engine.Image) string {
	parts := []string{im.Name, im.Format}
	if im.VirtualSize > 0 {
		parts = append(parts, layout.Bytes(uint64(im.VirtualSize)))
	}
	if im.Node != "" {
		parts = append(parts, "on "+im.Node+"'s local storage")
	}
	return strings.Join(parts, " · ")
}

// nodeLabel describes a node in a choice: "rack1-node2 (ready)".
func nodeLabel(n engine.Node) string {
	return nodeName(n) + " (" + string(n.State) + ")"
}

// memory formats a size in MiB: "512 MiB", "2 GiB".
func memory(mib int) string {
	if mib <= 0 {
		return "—"
	}
	return layout.Bytes(uint64(mib) << 20)
}

// bootDeviceLabels name the engine's boot devices.
var bootDeviceLabels = map[string]string{"disk": "Disk", "cdrom": "CD-ROM", "network": "Network (PXE)"}

// bootDevices are the boot devices in the form's order.
var bootDevices = []string{"disk", "cdrom", "network"}

func bootLabel(b string) string {
	if l, ok := bootDeviceLabels[b]; ok {
		return l
	}
	return b
}

func bootOrder(boot []string) string {
	if len(boot) == 0 {
		return "—"
	}
	labels := make([]string, len(boot))
	for i, b := range boot {
		labels[i] = bootLabel(b)
	}
	return strings.Join(labels, " → ")
}

// buses are the disk buses, in the form's order.
var buses = []string{engine.BusVirtio, engine.BusSCSI, engine.BusIDE}

func busLabel(b string) string {
	switch b {
	case engine.BusVirtio:
		return "virtio (fastest)"
	case engine.BusSCSI:
		return "SCSI"
	case engine.BusIDE:
		return "IDE (oldest guests)"
	}
	return b
}

func disksCount(s engine.Server) string {
	n := len(s.Disks)
	if n == 1 {
		return "1 disk"
	}
	return strconv.Itoa(n) + " disks"
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func named(names map[string]string, id string) string {
	if n := names[id]; n != "" {
		return n
	}
	return id
}

func nodeURL(id string) string {
	return "/nodes/" + url.PathEscape(id)
}

func imageURL(id string) string {
	return "/images/" + url.PathEscape(id)
}

func diskNumber(i int) string {
	return strconv.Itoa(i + 1)
}

func hasImage(images []engine.Image, id string) bool {
	return slices.ContainsFunc(images, func(im engine.Image) bool { return im.ID == id })
}

// connName is connection id's name, or its ID when the viewer does not see it.
func (d detailView) connName(id string) string {
	if c, ok := d.conns[id]; ok && c.Name != "" {
		return c.Name
	}
	return id
}

// connLabel is a connection in the attach list: "lan — internal 10.1.2.10 (c-abc)",
// with "→ 198.51.100.7" for a mapping.
func connLabel(c engine.Connection) string {
	s := c.Name + " — " + string(c.Kind) + " " + c.Address
	if c.External != "" {
		s += " → " + c.External
	}
	return s + " (" + c.ID + ")"
}

// hasPlaceholder reports whether s has a NIC without a connection.
func hasPlaceholder(s engine.Server) bool {
	return slices.ContainsFunc(s.NICs, func(n engine.ServerNIC) bool { return n.Connection == "" })
}

// Addresses are a server's addresses for the table: each connection's address, with
// "→ external" for a mapping.
func Addresses(s engine.Server) []string {
	var out []string
	for _, n := range s.NICs {
		switch {
		case n.Address != "" && n.External != "":
			out = append(out, n.Address+" → "+n.External)
		case n.Address != "":
			out = append(out, n.Address)
		}
	}
	return out
}
