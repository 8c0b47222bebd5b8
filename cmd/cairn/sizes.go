package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// sizeUnits are the binary multipliers of a size's suffix.
var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
	"m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
	"g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
	"t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40,
}

// parseSize reads a size in bytes: a number of bytes, or a number with K, M, G or T
// (binary: 1K is 1024 bytes; KB, KiB and lower case mean the same). Fractions are
// allowed with a suffix: 1.5G.
func parseSize(s string) (int64, error) {
	return parseSizeIn(s, 1)
}

// parseSizeIn reads a size whose plain numbers are in units of unit bytes.
func parseSizeIn(s string, unit int64) (int64, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, suffix := t, ""
	if i >= 0 {
		num, suffix = t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	}
	mult, ok := sizeUnits[suffix]
	if num == "" || !ok {
		return 0, fmt.Errorf("size %q: give a number with K, M, G or T (binary), like 512M or 10G", s)
	}
	if suffix == "" {
		mult = unit
	}
	if !strings.Contains(num, ".") {
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil || n > math.MaxInt64/mult {
			return 0, fmt.Errorf("size %q: too large or not a number", s)
		}
		return n * mult, nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f*float64(mult) >= math.MaxInt64 {
		return 0, fmt.Errorf("size %q: too large or not a number", s)
	}
	return int64(math.Round(f * float64(mult))), nil
}

// parseMemoryMiB reads a server's memory: a plain number is MiB, a number with a
// suffix is converted (512M, 2G); it must come to whole MiB.
func parseMemoryMiB(s string) (int, error) {
	b, err := parseSizeIn(s, 1<<20)
	if err != nil {
		return 0, fmt.Errorf("--memory %s: give MiB (1024) or a size like 512M or 2G", s)
	}
	if b%(1<<20) != 0 {
		return 0, fmt.Errorf("--memory %s: memory is given in whole MiB", s)
	}
	if b>>20 > math.MaxInt32 {
		return 0, fmt.Errorf("--memory %s: too large", s)
	}
	return int(b >> 20), nil
}

// parseSeconds reads a duration (120s, 2m) or a plain number of seconds.
func parseSeconds(s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil {
		return n, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d%time.Second != 0 {
		return 0, fmt.Errorf("%q is not a duration in whole seconds, like 120s or 2m", s)
	}
	return int(d / time.Second), nil
}
