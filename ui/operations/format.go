package operations

import (
	"context"
	"net/url"
	"strconv"
	"unicode"
	"unicode/utf8"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/ui/layout"
)

// kindLabels name the engine's kinds of operation for people.
var kindLabels = map[string]string{
	"shutdown": "Shutdown",
	"migrate":  "Migration",
	"convert":  "Conversion",
	"copy":     "Copy",
	"flatten":  "Flatten",
	"backup":   "Backup",
	"restore":  "Restore",
	"upload":   "Upload",
}

// KindLabel names an operation's kind: "Shutdown", "Conversion"; an unknown kind
// capitalized.
func KindLabel(kind string) string {
	if l, ok := kindLabels[kind]; ok {
		return l
	}
	return layout.Capitalize(kind)
}

// Title is an operation's name in a heading: its kind and what it works on.
func Title(op engine.Operation) string {
	if op.Target == "" {
		return KindLabel(op.Kind)
	}
	return KindLabel(op.Kind) + " of " + op.Target
}

// StateLabel names an operation's state: "Running", "Succeeded", "Failed", "Canceled".
func StateLabel(s engine.OperationState) string {
	return layout.Capitalize(string(s))
}

// StateTone is the badge colour of an operation's state: running blue, succeeded
// green, failed red, canceled gray.
func StateTone(s engine.OperationState) string {
	switch s {
	case engine.OpRunning:
		return layout.ToneBlue
	case engine.OpSucceeded:
		return layout.ToneGreen
	case engine.OpFailed:
		return layout.ToneRed
	}
	return layout.ToneGray
}

// TargetURL is the page of what an operation works on: a server for shutdowns and
// migrations, an image otherwise.
func TargetURL(op engine.Operation) string {
	switch op.Kind {
	case "shutdown", "migrate":
		return "/servers/" + url.PathEscape(op.Target)
	}
	return "/images/" + url.PathEscape(op.Target)
}

// resultURL is the page of what an operation made, when that is an image; "" for
// other results (a backup, the server a shutdown worked on).
func resultURL(op engine.Operation) string {
	switch op.Kind {
	case "convert", "copy", "restore":
		return "/images/" + url.PathEscape(op.Result)
	}
	return ""
}

// percent is how far op is, 0..100.
func percent(op engine.Operation) int {
	return int(min(max(op.Progress, 0), 1) * 100)
}

// indeterminate is a running operation that has not reported any progress: its bar
// shows activity instead of a fraction (a shutdown waits without knowing how long).
func indeterminate(op engine.Operation) bool {
	return op.State == engine.OpRunning && op.Progress <= 0
}

// message is the line under the bar.
func message(op engine.Operation) string {
	switch op.State {
	case engine.OpRunning:
		if op.Message != "" {
			return sentence(op.Message)
		}
		return "Working…"
	case engine.OpSucceeded:
		return "Done."
	case engine.OpCanceled:
		return "Canceled; what it had done was undone."
	case engine.OpFailed:
		if op.Error != "" {
			return op.Error
		}
		return "Failed; the engine's log says why."
	}
	return op.Message
}

func barLabel(op engine.Operation) string {
	if indeterminate(op) {
		return Title(op) + ": under way"
	}
	return Title(op) + ": " + strconv.Itoa(percent(op)) + " % done"
}

// canCancel reports whether the viewer of ctx may cancel operations: read-only
// users only look.
func canCancel(ctx context.Context) bool {
	v, ok := layout.ViewerFrom(ctx)
	return ok && v.User.Role != engine.RoleReadonly
}

func owner(names map[string]string, id string) string {
	if n, ok := names[id]; ok {
		return n
	}
	return id
}

// sentence returns s with its first letter upper-case and the rest as it is (an
// engine message may name things whose case matters).
func sentence(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError {
		return s
	}
	return string(unicode.ToUpper(r)) + s[n:]
}
