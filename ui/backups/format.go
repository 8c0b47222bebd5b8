package backups

import (
	"fmt"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/ui/layout"
)

// methodLabel says how a backup was copied.
func methodLabel(m string) string {
	switch m {
	case "reflink":
		return "Reflink (shared blocks)"
	case "copy":
		return "Full copy (holes kept)"
	case "rsync":
		// Backups made before Cairn copied the data itself.
		return "rsync (full copy)"
	case "":
		return "—"
	}
	return m
}

// size formats a byte count that may be unknown as "—".
func size(n int64) string {
	if n <= 0 {
		return "—"
	}
	return layout.Bytes(uint64(n))
}

// columns is how many columns the table has.
func columns(lv listView) int {
	if lv.Viewer.User.Role == engine.RoleAdmin {
		return 6
	}
	return 5
}

// restoredName is the name the restore form suggests for a new image: the image's
// name with the backup's date ("web-1-20260301"); the backup's name alone when the
// image is gone (its name is free again).
func restoredName(lv listView, b engine.Backup) string {
	if _, ok := lv.Images[b.Image]; !ok {
		return b.Name
	}
	return b.Name + "-" + b.CreatedAt.UTC().Format("20060102")
}

// subtitle sums the backups up: "12 backups · 31 GiB".
func subtitle(lv listView) string {
	if len(lv.Backups) == 0 {
		return "Copies of images in the backup pool, made on demand or daily."
	}
	var total int64
	for _, b := range lv.Backups {
		total += max(b.Size, 0)
	}
	noun := "backups"
	if len(lv.Backups) == 1 {
		noun = "backup"
	}
	return fmt.Sprintf("%d %s · %s", len(lv.Backups), noun, layout.Bytes(uint64(total)))
}
