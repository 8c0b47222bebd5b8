package testimage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"time"
)

// WaitForLine waits until the serial log at path (a file qemu or libvirt writes the
// guest's console to) matches re at or after byte offset from, and returns the match
// with its groups and the offset just after it, so that a caller can wait for the
// next line from there. When ctx ends first, the error carries the end of the log,
// which usually shows why the guest did not get there.
func WaitForLine(ctx context.Context, path string, from int, re *regexp.Regexp) ([]string, int, error) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		b, err := os.ReadFile(path)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, 0, fmt.Errorf("serial log: %w", err)
		}
		if from < len(b) {
			if loc := re.FindSubmatchIndex(b[from:]); loc != nil {
				m := make([]string, len(loc)/2)
				for i := range m {
					if loc[2*i] >= 0 {
						m[i] = string(b[from+loc[2*i] : from+loc[2*i+1]])
					}
				}
				return m, from + loc[1], nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, 0, fmt.Errorf("serial log %s: no line matching %q: %w; the log ends with:\n%s", path, re, ctx.Err(), tail(b, 2000))
		case <-tick.C:
		}
	}
}

// tail returns the last n bytes of b.
func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
