package images

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/ui/layout"
	"github.com/cairn-os/cairn/ui/operations"
)

// Formats are the image formats Cairn stores, the default first (as package qimg
// lists them).
var Formats = []string{"qcow2", "raw", "iso", "vmdk", "vdi", "vhdx"}

// convertFormats are the formats an image can be converted into: all but iso.
var convertFormats = []string{"qcow2", "raw", "vmdk", "vdi", "vhdx"}

// units are the size units the resize form offers.
var units = map[string]int64{"MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}

// ParseSize reads a size typed into a form ("20", "GiB"; "1.5", "TiB") into bytes,
// rounded up to a whole MiB so the engine's 512-byte rule always holds.
func ParseSize(number, unit string) (int64, error) {
	mult, ok := units[unit]
	if !ok {
		return 0, formError("Choose MiB, GiB or TiB.")
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(number), 64)
	if err != nil || v <= 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, formError("Type the new size as a number greater than 0, like 40 or 1.5.")
	}
	bytes := v * float64(mult)
	if bytes > float64(engine.MaxImageSize) {
		return 0, formError("An image can be at most 64 TiB.")
	}
	mib := int64(math.Ceil(bytes / (1 << 20)))
	return mib << 20, nil
}

// StateTone is the badge colour of an image state: ready green, uploading blue,
// busy amber.
func StateTone(s engine.ImageState) string {
	switch s {
	case engine.ImageReady:
		return layout.ToneGreen
	case engine.ImageUploading:
		return layout.ToneBlue
	case engine.ImageBusy:
		return layout.ToneAmber
	}
	return layout.ToneGray
}

// stateLabel is an image's state for people; an upload says how far it is.
func stateLabel(im engine.Image) string {
	if im.State == engine.ImageUploading && im.Upload != nil && im.Upload.Size > 0 {
		return fmt.Sprintf("Uploading %d %%", im.Upload.Offset*100/im.Upload.Size)
	}
	return layout.Capitalize(string(im.State))
}

// poolName is the name of pool id, or "pool 3" when the pool is not listed.
func poolName(pools []engine.Pool, id int) string {
	for _, p := range pools {
		if p.ID == id {
			return p.Name
		}
	}
	return "pool " + strconv.Itoa(id)
}

// location is where an image lives: its pool's name, or "local on <node>".
func location(im engine.Image, pools []engine.Pool) string {
	if im.Node != "" {
		return "local on " + im.Node
	}
	return poolName(pools, im.Pool)
}

// size formats a byte count that may be unknown (0 or less) as "—".
func size(n int64) string {
	if n <= 0 {
		return "—"
	}
	return layout.Bytes(uint64(n))
}

// readyPools are the pools an image can be put in.
func readyPools(pools []engine.Pool) []engine.Pool {
	var out []engine.Pool
	for _, p := range pools {
		if p.State == engine.PoolReady {
			out = append(out, p)
		}
	}
	return out
}

// canChange reports whether the viewer may change image im: its owner or an admin,
// and not a read-only user.
func canChange(v layout.Viewer, im engine.Image) bool {
	return CanWrite(v) && (IsAdmin(v) || im.Owner == v.User.ID)
}

// inPool reports whether an image is in a pool (not on a node's local storage).
func inPool(im engine.Image) bool { return im.Node == "" }

// isISO reports whether an image is installer media.
func isISO(im engine.Image) bool { return im.Format == "iso" }

// scheduleText describes an image's backup schedule.
func scheduleText(im engine.Image) string {
	if im.BackupAt == "" {
		return "None"
	}
	return fmt.Sprintf("Daily at %s, keeping %d", im.BackupAt, max(im.BackupKeep, 1))
}

// resizeDefault is the resize form's starting value: the current size in GiB, rounded up.
func resizeDefault(im engine.Image) string {
	gib := (im.VirtualSize + 1<<30 - 1) >> 30
	return strconv.FormatInt(max(gib, 1), 10)
}

// subtitle sums the images up: "5 images · 2 masters · 41 GiB used".
func subtitle(list []engine.Image) string {
	if len(list) == 0 {
		return "Disk images for servers: upload one, or clone a master."
	}
	masters := 0
	var used int64
	for _, im := range list {
		if im.Master {
			masters++
		}
		used += max(im.ActualSize, 0)
	}
	return fmt.Sprintf("%s · %s · %s used", plural(len(list), "image"), plural(masters, "master"), layout.Bytes(uint64(used)))
}

// plural is "1 image", "3 images".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// anyBusy reports whether an operation writes one of the images, so the table polls.
func anyBusy(list []engine.Image) bool {
	for _, im := range list {
		if im.State == engine.ImageBusy {
			return true
		}
	}
	return false
}

// tableTrigger is when the table reloads: after uploads and operations end, and
// every 3 s while an image is busy.
func tableTrigger(list []engine.Image) string {
	t := EventChanged + " from:body, " + operations.EndedEvent + " from:body"
	if anyBusy(list) {
		t += ", every 3s"
	}
	return t
}

// csrf is the viewer's CSRF token, for upload.js's requests.
func csrf(v layout.Viewer) string { return v.Session.CSRF }

// serverName is a server's name, or its ID when the viewer cannot see it.
func serverName(names map[string]string, id string) string {
	if n := names[id]; n != "" {
		return n
	}
	return id
}

// backupsURL lists the backups of image id.
func backupsURL(id string) string { return WithQuery("/backups", "image", id) }

// itoa64 formats n in decimal.
func itoa64(n int64) string { return strconv.FormatInt(n, 10) }
