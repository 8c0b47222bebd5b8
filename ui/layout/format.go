package layout

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Bytes formats n in binary units: "512 MiB", "15.6 GiB", "2 TiB".
func Bytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatUint(n, 10) + " B"
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v := float64(n) / unit
	i := 0
	for v >= unit && i < len(units)-1 {
		v /= unit
		i++
	}
	s := strconv.FormatFloat(v, 'f', 1, 64)
	if v >= 100 {
		s = strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strings.TrimSuffix(s, ".0") + " " + units[i]
}

// VCPUs formats a CPU count: "1 vCPU", "4 vCPUs".
func VCPUs(n int) string {
	if n == 1 {
		return "1 vCPU"
	}
	return strconv.Itoa(n) + " vCPUs"
}

// Ago says how long before now t was: "3 s ago", "5 min ago", "2 h ago", "4 d ago";
// "never" for the zero time.
func Ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%d s ago", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h ago", int(d/time.Hour))
	default:
		return fmt.Sprintf("%d d ago", int(d/(24*time.Hour)))
	}
}

// Duration formats d coarsely for people: "45 s", "12 min", "3 h 5 min", "6 d 2 h".
func Duration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d/time.Minute))
	case d < 24*time.Hour:
		return fmt.Sprintf("%d h %d min", int(d/time.Hour), int(d%time.Hour/time.Minute))
	default:
		return fmt.Sprintf("%d d %d h", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
	}
}

// Percent is used as a whole percentage of total, clamped to 0..100.
func Percent(used, total uint64) int {
	if total == 0 {
		return 0
	}
	if used >= total {
		return 100
	}
	return int(float64(used) / float64(total) * 100)
}

// Used is total minus free, never below zero.
func Used(total, free uint64) uint64 {
	if free > total {
		return 0
	}
	return total - free
}

// Time formats t for tables and detail lists, in UTC: "2025-11-22 14:03 UTC".
func Time(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}
