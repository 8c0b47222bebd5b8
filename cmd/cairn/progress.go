package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/cairn-os/cairn/supervisor/engine"
	"golang.org/x/term"
)

// terminalWidth is the width of w when it is a terminal, and 0 when it is not.
func terminalWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return 0
	}
	if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 20 {
		return cols
	}
	return 80
}

// statusLine redraws one line of stderr in place (a progress bar, a spinner) when
// stderr is a terminal, at most ten times a second; elsewhere it draws nothing.
type statusLine struct {
	mu    sync.Mutex
	w     io.Writer
	width int
	last  time.Time
	shown bool
}

func (a *app) statusLine() *statusLine {
	return &statusLine{w: a.stderr, width: terminalWidth(a.stderr)}
}

// on reports whether the line is drawn at all.
func (s *statusLine) on() bool { return s != nil && s.width > 0 }

// draw shows text, cut to the terminal's width; unless force, not more often than
// ten times a second.
func (s *statusLine) draw(text string, force bool) {
	if !s.on() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if !force && now.Sub(s.last) < 100*time.Millisecond {
		return
	}
	s.last = now
	if r := []rune(text); len(r) > s.width-1 {
		text = string(r[:s.width-1])
	}
	fmt.Fprintf(s.w, "\r\033[K%s", text)
	s.shown = true
}

// clear removes the line, so that what is printed next starts on a clean line.
func (s *statusLine) clear() {
	if !s.on() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shown {
		fmt.Fprint(s.w, "\r\033[K")
		s.shown = false
	}
}

// byteProgress draws a transfer's progress bar.
type byteProgress struct {
	line  *statusLine
	label string
	start time.Time
	// from is where the transfer stood when it began, so the rate counts only
	// what moved in this run.
	from      int64
	fromKnown bool
}

func (a *app) byteProgress(label string) *byteProgress {
	return &byteProgress{line: a.statusLine(), label: label, start: time.Now()}
}

// set is a Transfer.Progress callback.
func (p *byteProgress) set(done, total int64) {
	if !p.fromKnown {
		p.from, p.fromKnown = done, true
	}
	p.line.draw(transferLine(p.label, done, total, done-p.from, time.Since(p.start), p.line.width), done == total)
}

// transferLine is one progress line: label, percent, bar, bytes and rate. moved is
// what moved in elapsed, for the rate.
func transferLine(label string, done, total, moved int64, elapsed time.Duration, width int) string {
	rate := ""
	if s := elapsed.Seconds(); s >= 0.5 && moved > 0 {
		rate = "  " + bytesText(uint64(float64(moved)/s)) + "/s"
	}
	if total <= 0 {
		return fmt.Sprintf("%s  %s%s", label, bytesText(uint64(max(done, 0))), rate)
	}
	frac := float64(done) / float64(total)
	tail := fmt.Sprintf(" %3d%%  %s / %s%s", int(frac*100), bytesText(uint64(done)), bytesText(uint64(total)), rate)
	return label + " " + bar(frac, width-len([]rune(label))-len(tail)-2) + tail
}

// bar is "[=====>    ]" of width cells (at least 10, at most 40) for frac done.
func bar(frac float64, width int) string {
	width = min(max(width, 10), 40)
	inner := width - 2
	n := int(min(max(frac, 0), 1) * float64(inner))
	switch {
	case n >= inner:
		return "[" + strings.Repeat("=", inner) + "]"
	case n == 0:
		return "[" + strings.Repeat(" ", inner) + "]"
	}
	return "[" + strings.Repeat("=", n-1) + ">" + strings.Repeat(" ", inner-n) + "]"
}

var spinnerFrames = []string{"|", "/", "-", "\\"}

// operationLine is one line about an operation under way: a bar when it reports
// progress, a spinner with the time it has taken otherwise.
func operationLine(op engine.Operation, elapsed time.Duration, tick, width int) string {
	label := fmt.Sprintf("%s %s", op.Kind, op.Target)
	msg := ""
	if op.Message != "" {
		msg = ": " + op.Message
	}
	took := elapsed.Truncate(time.Second).String()
	if op.Progress <= 0 {
		return fmt.Sprintf("%s %s%s (%s)", spinnerFrames[tick%len(spinnerFrames)], label, msg, took)
	}
	tail := fmt.Sprintf(" %3d%%%s (%s)", int(op.Progress*100), msg, took)
	return label + " " + bar(op.Progress, width-len([]rune(label))-len([]rune(tail))-2) + tail
}
