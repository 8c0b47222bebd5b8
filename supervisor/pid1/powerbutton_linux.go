package pid1

import (
	"context"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Linux input event codes (linux/input-event-codes.h).
const (
	evKey    = 0x01
	keyPower = 116
)

// inputEventSize is the size of struct input_event: a struct timeval, then type, code
// (u16) and value (s32).
const inputEventSize = int(unsafe.Sizeof(unix.Timeval{})) + 8

// watchPowerButton calls press each time a power key goes down on any input device
// that has one: the ACPI "Power Button" device, or a keyboard's power key. The kernel
// turns an ACPI power button event into a key press and sends no signal itself.
// Devices are looked for every few seconds until ctx ends, because the button module
// may be loaded after PID 1 starts.
func watchPowerButton(ctx context.Context, press func()) {
	watched := map[string]bool{}
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		devs, _ := filepath.Glob("/sys/class/input/event*")
		for _, sys := range devs {
			name := filepath.Base(sys)
			if watched[name] {
				continue
			}
			caps, err := os.ReadFile(filepath.Join(sys, "device/capabilities/key"))
			if err != nil || !hasKey(string(caps), keyPower) {
				continue
			}
			f, err := os.Open(filepath.Join("/dev/input", name))
			if err != nil {
				continue // devtmpfs may not have made the node yet; try again later
			}
			watched[name] = true
			go func() {
				<-ctx.Done()
				f.Close() // input devices are pollable: this ends the blocked Read
			}()
			go readPowerKey(f, press)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// readPowerKey reads input events from r until it fails and calls press for each
// press of the power key.
func readPowerKey(r io.Reader, press func()) {
	ev := make([]byte, inputEventSize)
	for {
		if _, err := io.ReadFull(r, ev); err != nil {
			return
		}
		tail := ev[len(ev)-8:]
		typ := binary.NativeEndian.Uint16(tail[0:2])
		code := binary.NativeEndian.Uint16(tail[2:4])
		value := int32(binary.NativeEndian.Uint32(tail[4:8]))
		if typ == evKey && code == keyPower && value == 1 {
			press()
		}
	}
}

// hasKey reports whether a capabilities bitmap from sysfs ("3 0 0 10000000000000 0")
// has the bit for code. The words are longs in hexadecimal, most significant first.
func hasKey(caps string, code int) bool {
	words := strings.Fields(caps)
	bits := strconv.IntSize // the kernel's long is as wide as ours
	i := len(words) - 1 - code/bits
	if i < 0 || i >= len(words) {
		return false
	}
	w, err := strconv.ParseUint(words[i], 16, 64)
	if err != nil {
		return false
	}
	return w&(1<<(code%bits)) != 0
}
