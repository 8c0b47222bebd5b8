package vm

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// TAP is a tap device plugged into a Hub as one more port: programs on the host side
// of the tap (dnsmasq in a network namespace, say) share the hub's LAN with the
// guests. Frames from the tap go to the hub in qemu's stream framing (4-byte
// big-endian length, then the frame), and frames from the hub go to the tap. The tap
// is not persistent: it disappears when Close closes its file descriptor.
type TAP struct {
	name   string
	file   *os.File
	conn   net.Conn
	logger *slog.Logger

	wg   sync.WaitGroup
	once sync.Once
}

// AttachTAP creates the tap device name (at most 15 bytes) in the network namespace
// at netns (a file such as /run/netns/NAME; "" means this process's namespace),
// connects it to the hub listening on hubPath and relays frames until Close. The
// device is left down and without addresses: configure it in its namespace
// (`ip -n NAME …`). It needs CAP_NET_ADMIN, and CAP_SYS_ADMIN for another namespace.
func AttachTAP(hubPath, netns, name string, logger *slog.Logger) (*TAP, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	f, err := openTAPIn(netns, name)
	if err != nil {
		return nil, err
	}
	conn, err := net.Dial("unix", hubPath)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("tap %s: connect to hub %s: %w", name, hubPath, err)
	}
	t := &TAP{name: name, file: f, conn: conn, logger: logger.With("component", "tap", "tap", name, "hub", hubPath)}
	t.wg.Add(2)
	go t.toHub()
	go t.fromHub()
	return t, nil
}

// Name returns the tap device's name.
func (t *TAP) Name() string { return t.name }

// Close stops relaying, removes the tap device and leaves the hub.
func (t *TAP) Close() error {
	var err error
	t.once.Do(func() {
		err = errors.Join(t.conn.Close(), t.file.Close())
		t.wg.Wait()
	})
	return err
}

// toHub reads frames from the tap and writes each one to the hub with its length.
func (t *TAP) toHub() {
	defer t.wg.Done()
	defer t.conn.Close()
	buf := make([]byte, 4+maxFrame)
	for {
		n, err := t.file.Read(buf[4:])
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				t.logger.Debug("tap read ended", "err", err)
			}
			return
		}
		binary.BigEndian.PutUint32(buf[:4], uint32(n))
		if _, err := t.conn.Write(buf[:4+n]); err != nil {
			t.logger.Debug("hub write ended", "err", err)
			return
		}
	}
}

// fromHub reads length-prefixed frames from the hub and writes each to the tap.
func (t *TAP) fromHub() {
	defer t.wg.Done()
	defer t.file.Close()
	r := bufio.NewReaderSize(t.conn, 64<<10)
	var hdr [4]byte
	frame := make([]byte, maxFrame)
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n > maxFrame {
			t.logger.Warn("frame too long, leaving the hub", "bytes", n)
			return
		}
		if _, err := io.ReadFull(r, frame[:n]); err != nil {
			return
		}
		// A frame the tap refuses (the device is still down, say) is dropped, as a
		// cable into a port that is off would drop it.
		if _, err := t.file.Write(frame[:n]); err != nil && errors.Is(err, os.ErrClosed) {
			return
		}
	}
}

// openTAPIn creates the tap device inside netns. Namespaces belong to OS threads, so
// the work runs on a locked thread of its own; if that thread cannot be put back
// into the original namespace it is not unlocked, and the Go runtime ends it with
// the goroutine instead of reusing a thread in the wrong namespace.
func openTAPIn(netns, name string) (*os.File, error) {
	if netns == "" {
		return openTAP(name)
	}
	type result struct {
		f   *os.File
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("tap %s: %w", name, err)}
			return
		}
		defer orig.Close()
		target, err := os.Open(netns)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("tap %s: network namespace: %w", name, err)}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("tap %s: enter network namespace %s: %w", name, netns, err)}
			return
		}
		f, err := openTAP(name)
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		}
		ch <- result{f, err}
	}()
	r := <-ch
	return r.f, r.err
}

// openTAP creates the tap device in the calling thread's network namespace. The file
// is non-blocking, so that reads go through Go's poller and Close ends them.
func openTAP(name string) (*os.File, error) {
	if len(name) == 0 || len(name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("tap %q: a device name has 1 to %d bytes", name, unix.IFNAMSIZ-1)
	}
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("tap %s: open /dev/net/tun: %w", name, err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tap %s: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tap %s: TUNSETIFF: %w", name, err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tap %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun:"+name), nil
}
