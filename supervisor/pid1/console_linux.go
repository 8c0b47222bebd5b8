package pid1

import (
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// consoleWriter writes to every console device; a device that fails is skipped, so a
// serial port without hardware does not silence the screen.
type consoleWriter struct {
	mu    sync.Mutex
	files []*os.File
}

func (c *consoleWriter) Write(p []byte) (int, error) {
	// One lock around all devices keeps a banner and a log line from interleaving.
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.files {
		_, _ = f.Write(p)
	}
	return len(p), nil
}

var console struct {
	once sync.Once
	w    io.Writer
}

// ConsoleWriter returns the writer for the machine's consoles: /dev/console, and also
// /dev/ttyS0 and /dev/tty1 when /dev/console is another device, so that people at the
// VGA screen and at the serial port both see the banner. The kernel's last console=
// argument decides what /dev/console is; with `console=tty0 console=ttyS0` it is the
// serial port and the screen would otherwise stay silent. Without /dev/console (not
// PID 1) it is standard error.
func ConsoleWriter() io.Writer {
	console.once.Do(func() {
		files := openConsoles()
		if len(files) == 0 {
			console.w = os.Stderr
			return
		}
		console.w = &consoleWriter{files: files}
	})
	return console.w
}

func openConsoles() []*os.File {
	if !IsPID1() {
		// A process in a terminal writes there; /dev/console belongs to the host.
		return nil
	}
	// O_NOCTTY: PID 1 must not get a controlling terminal, or a Ctrl-C typed there
	// would be sent to it. O_NONBLOCK on the extra devices: a serial port whose
	// buffer is full drops output rather than stopping PID 1's logging.
	f, err := os.OpenFile("/dev/console", os.O_WRONLY|unix.O_NOCTTY, 0)
	if err != nil {
		return nil
	}
	files := []*os.File{f}
	active := consoleDevice(readFile("/sys/class/tty/console/active"))
	for _, dev := range extraConsoles(active) {
		if f, err := os.OpenFile("/dev/"+dev, os.O_WRONLY|unix.O_NOCTTY|unix.O_NONBLOCK, 0); err == nil {
			files = append(files, f)
		}
	}
	return files
}

// consoleDevice returns the device behind /dev/console from the contents of
// /sys/class/tty/console/active, whose last entry it is ("tty0 ttyS0" → "ttyS0").
func consoleDevice(active string) string {
	f := strings.Fields(active)
	if len(f) == 0 {
		return ""
	}
	return f[len(f)-1]
}

// extraConsoles returns which of ttyS0 and tty1 to write to besides /dev/console.
// tty0 is "the foreground virtual terminal", which is tty1 on an appliance nobody
// switches terminals on.
func extraConsoles(consoleDev string) []string {
	var out []string
	if consoleDev != "ttyS0" {
		out = append(out, "ttyS0")
	}
	if consoleDev != "tty0" && consoleDev != "tty1" {
		out = append(out, "tty1")
	}
	return out
}

// ConsoleHandler returns a slog handler that writes text lines to ConsoleWriter, at
// info level or, with debug, at debug level. Times are shown as hh:mm:ss: the date
// of this boot is not news on a console.
func ConsoleHandler(debug bool) slog.Handler {
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	return slog.NewTextHandler(ConsoleWriter(), &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.String(slog.TimeKey, a.Value.Time().Format("15:04:05"))
			}
			return a
		},
	})
}

func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(b)
}
