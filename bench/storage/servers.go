package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/supervisor/hostcmd"
	"github.com/cairn-os/cairn/supervisor/virt"
)

// The size of the servers both sides make.
const (
	serverVCPUs     = 1
	serverMemoryMiB = 128
)

// ServerFigures are the figures of one server made from a master and started.
type ServerFigures struct {
	Cairn, Baseline Series
	// MasterBytes is the size of the master's file (the test image, qcow2).
	MasterBytes int64
}

// measureServers makes and starts a server from a master runs times on each side,
// alternating, and removes each again. dir is the baseline's folder; img the test
// image; consoles and logs the console folders both sides' domains use.
func measureServers(ctx context.Context, log *slog.Logger, l *lab, img, dir, consoles, logs string, runs int) ServerFigures {
	var f ServerFigures
	fi, err := os.Stat(img)
	if err != nil {
		f.Cairn.fail(err)
		f.Baseline.fail(err)
		return f
	}
	f.MasterBytes = fi.Size()

	master, err := l.upload(ctx, img, "bench-master-"+randomHex(3), "qcow2")
	if err == nil {
		defer func() {
			ctx := context.WithoutCancel(ctx)
			l.setMaster(ctx, master.ID, false)
			l.deleteImage(ctx, master.ID)
		}()
		err = l.setMaster(ctx, master.ID, true)
	}
	if err != nil {
		f.Cairn.fail(fmt.Errorf("make the master: %w", err))
	}
	baseMaster := filepath.Join(dir, "master.qcow2")
	if err := copyFile(img, baseMaster); err != nil {
		f.Baseline.fail(fmt.Errorf("copy the master: %w", err))
	}
	defer os.Remove(baseMaster)

	for i := range runs {
		cairn := func() {
			if f.Cairn.stopped {
				return
			}
			d, load, err := cairnServer(ctx, l, master.ID, fmt.Sprintf("bench-%d-%s", i, randomHex(3)))
			f.Cairn.add(d, load, err)
			log.Info("server from a master", "side", "cairn", "run", i+1, "seconds", d.Seconds(), "err", err)
		}
		baseline := func() {
			if f.Baseline.stopped {
				return
			}
			d, load, err := baselineServer(ctx, baseMaster, dir, consoles, logs)
			f.Baseline.add(d, load, err)
			log.Info("server from a master", "side", "baseline", "run", i+1, "seconds", d.Seconds(), "err", err)
		}
		alternate(i, cairn, baseline)
		if ctx.Err() != nil {
			break
		}
	}
	return f
}

// alternate runs cairn then baseline in even runs, the other way round in odd runs,
// so that neither side always runs on a machine the other has just warmed up.
func alternate(run int, cairn, baseline func()) {
	if run%2 == 0 {
		cairn()
		baseline()
	} else {
		baseline()
		cairn()
	}
}

// cairnServer times POST /servers cloning master and starting the server until the
// answer (or, if it is not yet, the server's state) says running, then removes the
// server with its disk.
func cairnServer(ctx context.Context, l *lab, master, name string) (time.Duration, float64, error) {
	req := engine.ServerRequest{
		Name: name, VCPUs: serverVCPUs, MemoryMiB: serverMemoryMiB, Start: true,
		Disks: []engine.ServerDiskRequest{{Image: master, Clone: true}},
	}
	load := loadAverage()[0]
	start := time.Now()
	var s engine.Server
	err := l.call(ctx, "POST", "/servers", req, &s)
	for err == nil && s.State != engine.ServerRunning {
		if time.Since(start) > 2*time.Minute {
			err = fmt.Errorf("server %s is %s (%s) two minutes after it was created", s.ID, s.State, s.Reason)
			break
		}
		time.Sleep(20 * time.Millisecond)
		err = l.call(ctx, "GET", "/servers/"+s.ID, nil, &s)
	}
	d := time.Since(start)
	if s.UUID != "" {
		l.uuids[s.UUID] = true
	}
	if s.ID != "" {
		if rerr := l.removeServer(ctx, s); rerr != nil && err == nil {
			err = fmt.Errorf("remove server %s: %w", s.ID, rerr)
		}
	}
	return d, load, err
}

// baselineServer times qemu-img create of a child of master, virsh define of the same
// machine definition Cairn gives libvirt, and virsh start until it returns; then it
// destroys and undefines the domain and removes its files.
func baselineServer(ctx context.Context, master, dir, consoles, logs string) (time.Duration, float64, error) {
	name := "cairn-bench-" + randomHex(4)
	child := filepath.Join(dir, name+".qcow2")
	xmlPath := filepath.Join(dir, name+".xml")
	xml, err := virt.DomainXML(virt.Domain{
		UUID: newUUID(), Name: name, Type: "qemu", VCPUs: serverVCPUs, MemoryMiB: serverMemoryMiB,
		ConsoleDir: consoles, LogDir: logs, Boot: []string{"hd"},
		Disks: []virt.Disk{{Path: child, Format: "qcow2", Bus: virt.BusVirtio, Serial: name}},
		CDROM: &virt.CDROM{},
	})
	if err != nil {
		return 0, 0, fmt.Errorf("baseline domain xml: %w", err)
	}
	if err := os.WriteFile(xmlPath, []byte(xml), 0o644); err != nil {
		return 0, 0, err
	}
	defer os.Remove(xmlPath)
	defer os.Remove(child)
	defer virshGone(ctx, name)

	run := hostcmd.Exec{}.Run
	load := loadAverage()[0]
	start := time.Now()
	if _, err := run(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-b", master, "-F", "qcow2", child); err != nil {
		return 0, load, err
	}
	if _, err := run(ctx, "virsh", "-c", "qemu:///system", "define", xmlPath); err != nil {
		return 0, load, err
	}
	if _, err := run(ctx, "virsh", "-c", "qemu:///system", "start", name); err != nil {
		return 0, load, err
	}
	return time.Since(start), load, nil
}

// copyFile copies src to dst (a new file, mode 0644).
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(dst)
		return err
	}
	return out.Close()
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// newUUID returns a random (version 4) UUID in the lower-case form libvirt uses.
func newUUID() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
