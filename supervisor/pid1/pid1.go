// Package pid1 does what the first process of a Linux system must do and nobody else
// does for Cairn: mount the kernel's filesystems, load kernel modules, reap orphans,
// write to the console, react to ctrl-alt-del and the power button, and power off or
// reboot cleanly. It follows gokrazy and Talos' machined: PID 1 never just exits; on a
// fatal error it stops everything, unmounts, syncs and reboots.
package pid1

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"runtime/debug"
	"strings"
	"unicode/utf8"
)

// IsPID1 reports whether this process is the first process of its PID namespace.
func IsPID1() bool { return os.Getpid() == 1 }

// Action is how the machine goes down.
type Action int

// The ways the machine can go down.
const (
	Poweroff Action = iota
	Reboot
	Halt
)

// String returns the action's name as logs show it.
func (a Action) String() string {
	switch a {
	case Poweroff:
		return "poweroff"
	case Reboot:
		return "reboot"
	case Halt:
		return "halt"
	}
	return fmt.Sprintf("action(%d)", int(a))
}

// Recover is meant to be deferred at the top of a goroutine that runs one part of the
// supervisor: it recovers a panic there, logs it with its stack and calls onPanic (to
// mark the part degraded), so that one broken part does not take PID 1, and with it
// the machine, down. It must be deferred directly (`defer pid1.Recover(…)`), or
// recover has nothing to catch.
func Recover(logger *slog.Logger, part string, onPanic func(any)) {
	p := recover()
	if p == nil {
		return
	}
	logger.Error("panic recovered, part degraded", "part", part, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
	if onPanic != nil {
		onPanic(p)
	}
}

// bannerWidth keeps a banner inside an 80-column VGA text screen.
const bannerWidth = 76

// Banner writes lines in a frame, for the console: where the web console is and how to
// log in. Lines longer than the frame are wrapped at spaces, continuing under the text
// after a "Label:  " prefix. The frame is ASCII: a serial terminal may not show
// box-drawing characters.
func Banner(w io.Writer, lines ...string) {
	var body []string
	for _, l := range lines {
		body = append(body, wrap(l, bannerWidth)...)
	}
	width := 0
	for _, l := range body {
		width = max(width, utf8.RuneCountInString(l))
	}
	var b strings.Builder
	rule := "+" + strings.Repeat("-", width+2) + "+\n"
	b.WriteString("\n" + rule)
	for _, l := range body {
		b.WriteString("| " + l + strings.Repeat(" ", width-utf8.RuneCountInString(l)) + " |\n")
	}
	b.WriteString(rule + "\n")
	_, _ = io.WriteString(w, b.String())
}

// labelRE matches a short "Label:   " prefix; wrapped text continues under the text
// after it.
var labelRE = regexp.MustCompile(`^([^\s:][^:]{0,19}:\s+)(\S.*)$`)

// wrap breaks s at spaces into lines of at most width runes; a word longer than that
// (a generated password, a URL) stays whole on its own line.
func wrap(s string, width int) []string {
	s = strings.TrimRight(s, " \t\r\n")
	if utf8.RuneCountInString(s) <= width {
		return []string{s}
	}
	first, indent, text := "", "  ", s
	if m := labelRE.FindStringSubmatch(s); m != nil {
		first, text = m[1], m[2]
		indent = strings.Repeat(" ", utf8.RuneCountInString(first))
	}
	var out []string
	line := first
	empty := true // line holds no word yet
	for _, word := range strings.Fields(text) {
		if !empty && utf8.RuneCountInString(line)+1+utf8.RuneCountInString(word) > width {
			out = append(out, line)
			line, empty = indent, true
		}
		if !empty {
			line += " "
		}
		line += word
		empty = false
	}
	return append(out, line)
}
