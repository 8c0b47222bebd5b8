package pools

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/ui/layout"
)

// StateTone is the badge colour of a pool state: ready green, unavailable red.
func StateTone(s engine.PoolState) string {
	switch s {
	case engine.PoolReady:
		return layout.ToneGreen
	case engine.PoolUnavailable:
		return layout.ToneRed
	}
	return layout.ToneGray
}

// scheduleText describes a pool's daily snapshots.
func scheduleText(p engine.Pool) string {
	switch {
	case !p.Snapshots:
		return "Not supported by " + p.Driver + " pools"
	case p.SnapshotAt == "":
		return "No daily snapshots"
	}
	return fmt.Sprintf("Daily at %s, keeping %d", p.SnapshotAt, max(p.SnapshotKeep, 1))
}

// ownerBytes is one user's share of a pool.
type ownerBytes struct {
	Name  string
	Bytes uint64
}

// owners lists what each user's images take in p, largest first, with user names.
func owners(p engine.Pool, names map[string]string) []ownerBytes {
	var out []ownerBytes
	for id, b := range p.ImageBytesByOwner {
		out = append(out, ownerBytes{Name: layout.OwnerName(names, id), Bytes: b})
	}
	slices.SortFunc(out, func(a, b ownerBytes) int {
		return cmp.Or(cmp.Compare(b.Bytes, a.Bytes), cmp.Compare(a.Name, b.Name))
	})
	return out
}

// usageRows are the viewer's bytes per pool, with pool names, by pool number.
type usageRow struct {
	Pool  string
	Bytes int64
}

func usageRows(us engine.Usage, pools []engine.Pool) []usageRow {
	var ids []int
	for k := range us.BytesByPool {
		if n, err := strconv.Atoi(k); err == nil {
			ids = append(ids, n)
		}
	}
	slices.Sort(ids)
	var out []usageRow
	for _, id := range ids {
		name := "pool " + strconv.Itoa(id)
		for _, p := range pools {
			if p.ID == id {
				name = p.Name
			}
		}
		out = append(out, usageRow{Pool: name, Bytes: us.BytesByPool[strconv.Itoa(id)]})
	}
	return out
}

// place is where a pool keeps its files: its directory, or its device and mount point.
func place(p engine.Pool) string {
	if p.Device != "" {
		return p.Device + " at " + p.Path
	}
	return p.Path
}

// used is what a pool's file system has in use: what its driver reported, or total
// minus free when it reported nothing.
func used(p engine.Pool) uint64 {
	if p.UsedBytes > 0 {
		return p.UsedBytes
	}
	return layout.Used(p.TotalBytes, p.FreeBytes)
}

// byteCount formats a possibly negative count.
func byteCount(n int64) string { return layout.Bytes(uint64(max(n, 0))) }

// imageLabel is an image in the restore list: "web-1 (i-abc123)".

// snapshotImageLabel names an image a snapshot holds: "web (i-…), qcow2 10 GiB", and
// says when it was deleted since (it can then only come back as a new image).
func snapshotImageLabel(im engine.SnapshotImage) string {
	l := im.Name + " (" + im.ID + "), " + im.Format
	if im.VirtualSize > 0 {
		l += " " + layout.Bytes(uint64(im.VirtualSize))
	}
	if im.Deleted {
		l += " — deleted since: restore as a new image"
	}
	return l
}

// snapshotKind is "Daily" or "Manual".
func snapshotKind(s engine.PoolSnapshot) string {
	if s.Daily {
		return "Daily"
	}
	return "Manual"
}

// subtitle sums the pools up: "3 pools · 1.2 TiB free of 2 TiB".
func subtitle(list []engine.Pool) string {
	var total, free uint64
	for _, p := range list {
		total += p.TotalBytes
		free += p.FreeBytes
	}
	noun := "pools"
	if len(list) == 1 {
		noun = "pool"
	}
	return fmt.Sprintf("%d %s · %s free of %s", len(list), noun, layout.Bytes(free), layout.Bytes(total))
}

// keepValue is what the schedule form's keep box starts with.
func keepValue(p engine.Pool) string { return strconv.Itoa(max(p.SnapshotKeep, 1)) }

// connectionsText is "1 connection", "3 connections".
func connectionsText(n int) string {
	if n == 1 {
		return "1 connection"
	}
	return strconv.Itoa(n) + " connections"
}
