package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The markers around this command's section of the report.
const (
	beginMarker = "<!-- storage:begin -->"
	endMarker   = "<!-- storage:end -->"
)

// Report is everything one run measured.
type Report struct {
	Date    time.Time
	Machine Machine
	Runs    int
	Servers ServerFigures
	Images  []ImageFigures
	// Notes are things the reader must know to trust the figures.
	Notes []string
}

// Sample is one timing and the 1-minute load average when it began.
type Sample struct {
	Seconds float64
	Load1   float64
}

// Series is one figure over the runs, and the first error met while taking it.
type Series struct {
	Samples []Sample
	Err     string
	// stopped is set when the figure cannot be taken at all (its set-up failed).
	stopped bool
}

// add records one run: a sample, or its error.
func (s *Series) add(d time.Duration, load float64, err error) {
	if err != nil {
		s.note(err)
		return
	}
	s.Samples = append(s.Samples, Sample{Seconds: d.Seconds(), Load1: load})
}

// note records err (the first one only), if there is one.
func (s *Series) note(err error) {
	if err != nil && s.Err == "" {
		s.Err = firstLine(err.Error())
	}
}

// fail records err and stops the figure.
func (s *Series) fail(err error) {
	s.note(err)
	s.stopped = true
}

// median returns the median seconds, or 0 for none.
func (s Series) median() float64 {
	if len(s.Samples) == 0 {
		return 0
	}
	v := make([]float64, len(s.Samples))
	for i, x := range s.Samples {
		v[i] = x.Seconds
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// seconds renders the figure: one value, or the median and every value in the
// median's unit, and the error of a failed run.
func (s Series) seconds() string {
	scale, unit, prec := 1.0, "s", 1
	switch med := s.median(); {
	case med < 0.01:
		scale, unit, prec = 1000, "ms", 1
	case med < 1:
		scale, unit, prec = 1000, "ms", 0
	case med < 10:
		prec = 2
	}
	return s.render(func(sec float64) string { return strconv.FormatFloat(sec*scale, 'f', prec, 64) }, unit)
}

// rate renders the figure as MB/s of bytes (MB = 10⁶ bytes).
func (s Series) rate(bytes int64) string {
	prec := 0
	if med := s.median(); med > 0 && float64(bytes)/med/1e6 < 10 {
		prec = 1
	}
	return s.render(func(sec float64) string { return strconv.FormatFloat(float64(bytes)/sec/1e6, 'f', prec, 64) }, "MB/s")
}

// render writes the median of the samples' seconds through f, then every sample.
func (s Series) render(f func(seconds float64) string, unit string) string {
	var out string
	switch len(s.Samples) {
	case 0:
		msg := s.Err
		if msg == "" {
			msg = "not measured"
		}
		return "— (" + escape(msg) + ")"
	case 1:
		out = f(s.Samples[0].Seconds) + " " + unit
	default:
		vals := make([]string, len(s.Samples))
		for i, x := range s.Samples {
			vals[i] = f(x.Seconds)
		}
		out = fmt.Sprintf("%s %s (median of %s)", f(s.median()), unit, strings.Join(vals, ", "))
	}
	if s.Err != "" {
		out += "; a run failed: " + escape(s.Err)
	}
	return out
}

// loads renders the 1-minute load averages at the samples' starts.
func (s Series) loads() string {
	if len(s.Samples) == 0 {
		return ""
	}
	lo, hi := s.Samples[0].Load1, s.Samples[0].Load1
	for _, x := range s.Samples {
		lo, hi = min(lo, x.Load1), max(hi, x.Load1)
	}
	if hi == lo {
		return fmt.Sprintf("%.2f", lo)
	}
	return fmt.Sprintf("%.2f–%.2f", lo, hi)
}

// ratio renders a / b, or "—" when either is missing.
func ratio(a, b float64) string {
	if a == 0 || b == 0 {
		return "—"
	}
	r := a / b
	switch {
	case r >= 10:
		return fmt.Sprintf("**%.0f×**", r)
	case r < 0.1:
		return fmt.Sprintf("**%.2g×**", r)
	}
	return fmt.Sprintf("**%.1f×**", r)
}

// rateRatio is the throughput of a over that of b for the same bytes: b's time over a's.
func rateRatio(a, b Series) string { return ratio(b.median(), a.median()) }

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// escape keeps text from breaking a table row.
func escape(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}

// size renders bytes in GiB from 1 GiB up, in MiB below.
func size(n int64) string {
	if n >= 1<<30 {
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// mbyte renders bytes in MB (10⁶ bytes).
func mbyte(n int64) string { return fmt.Sprintf("%.0f MB", float64(n)/1e6) }

// Markdown renders the report's section, markers included.
func (r Report) Markdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	m := r.Machine

	w("%s\n", beginMarker)
	w("## Servers and images\n\n")
	w("Cairn's API side by side with the commands an administrator would type instead,\n")
	w("measured in one run on this host by `go run ./bench/storage` (`make bench-storage`),\n")
	w("which wrote this section. Cairn runs in-process as the host tests run it: the engine\n")
	w("on a temporary state folder, this host's libvirtd as its node, its API on a local TLS\n")
	w("listener, driven over HTTPS. Cairn and the baseline alternate (Cairn first in odd\n")
	w("runs); with several runs the median is shown with every value, and the 1-minute load\n")
	w("average when each run began. Times are wall clock and depend on the machine and on\n")
	w("what else ran on it: compare the ratios. No test asserts a timing.\n\n")

	w("| | |\n|---|---|\n")
	w("| date | %s |\n", r.Date.UTC().Format("2006-01-02 15:04 UTC"))
	w("| machine | %s, %d cores, %s memory, Linux %s |\n", escape(m.CPU), m.Cores, size(int64(m.MemoryBytes)), escape(m.Kernel))
	w("| qemu | %s (domain type `qemu`: TCG) |\n", escape(m.QEMU))
	w("| libvirt | %s |\n", escape(m.Libvirt))
	w("| rsync | %s |\n", escape(m.Rsync))
	w("| load average (1, 5, 15 min) | %.2f %.2f %.2f at the start, %.2f %.2f %.2f at the end |\n",
		m.Load[0], m.Load[1], m.Load[2], m.LoadEnd[0], m.LoadEnd[1], m.LoadEnd[2])
	w("| runs | %d of each figure |\n", r.Runs)
	w("\n")
	if hi := r.maxLoad(); hi > float64(m.Cores) {
		w("**Note:** the machine was not idle: the 1-minute load average reached %.2f on %d cores\n", hi, m.Cores)
		if m.OtherQEMUs > 0 {
			procs := fmt.Sprintf("%d qemu processes of other work were", m.OtherQEMUs)
			if m.OtherQEMUs == 1 {
				procs = "a qemu process of other work was"
			}
			w("(%s running when the run began), ", procs)
		} else {
			w("(other work on the host), ")
		}
		w("which spreads the\nsamples. Cairn and its baseline ran next to each other under the same load, so their\n")
		w("ratios hold better than the seconds.\n\n")
	}
	for _, n := range r.Notes {
		w("**Note:** %s\n\n", escape(n))
	}

	s := r.Servers
	w("### A server from a master: clone + define + start\n\n")
	w("Both sides make a qcow2 child of the same master (the host tests' busybox image, a\n")
	w("%s qcow2 file) and start a domain of %d vCPU and %d MiB with that child on\n", size(s.MasterBytes), serverVCPUs, serverMemoryMiB)
	w("virtio, an empty CD-ROM, the serial console and VNC on unix sockets: the same\n")
	w("definition, because the baseline's XML comes from `virt.DomainXML`, the function the\n")
	w("engine defines its domains with. After each run the domain is forced off and removed\n")
	w("with its child.\n\n")
	w("| | time | load (1 min) at start |\n|---|---|---|\n")
	w("| Cairn: `POST /api/v1/servers` `{\"disks\": [{\"image\": master, \"clone\": true}], \"start\": true}` → the answer says `running` | %s | %s |\n",
		s.Cairn.seconds(), s.Cairn.loads())
	w("| baseline: `qemu-img create -f qcow2 -b master -F qcow2 child` + `virsh define dom.xml` + `virsh start` → `virsh start` returns | %s | %s |\n",
		s.Baseline.seconds(), s.Baseline.loads())
	w("| **Cairn / baseline** | %s | |\n\n", ratio(s.Cairn.median(), s.Baseline.median()))
	w("Both end when libvirt has started qemu, not when the guest has booted. Cairn's figure\n")
	w("adds the HTTPS request, its checks (name, master, room on the node), recording the\n")
	w("child and the server in its database, and talking to libvirtd over its RPC socket;\n")
	w("the baseline's adds starting qemu-img once and virsh twice.\n\n")

	for _, f := range r.Images {
		f.markdown(w, m)
	}

	w("### Reproduce\n\n")
	w("As root on Debian 12 with the build's host packages (`make deps`) and libvirtd running\n")
	w("(`make libvirtd`): `make bench-storage`, which runs `go run ./bench/storage -out\n")
	w("docs/benchmarks.md` and rewrites only this section. `-runs N` sets the runs,\n")
	w("`-size-gib` and `-data-mib` the big master, `-dir` where the temporary folder goes (its\n")
	w("filesystem is the first one measured), `-btrfs=false` skips the loop device. The\n")
	w("test image is built once into `~/.cache/cairn`; every domain, image, backup, the loop\n")
	w("device and the temporary folder are removed at the end.\n")
	w("%s\n", endMarker)
	return b.String()
}

func (f ImageFigures) markdown(w func(string, ...any), m Machine) {
	w("### Images with pool 0 on %s\n\n", f.Label)
	if f.Err != "" {
		w("Not measured: %s\n\n", escape(f.Err))
		return
	}
	w("%s\n\n", wrap("Pool 0: "+f.Setup+".", 88))
	w("The master is a qcow2 image of %s virtual size with %s written into it\n", size(f.VirtualBytes), size(f.DataBytes))
	w("(`qemu-io -c \"write -P 0xab …\"`, flushed before the runs); its file has %s (%s),\n", mbyte(f.FileBytes), size(f.FileBytes))
	w("the bytes every copy moves. The baseline's copies go to a folder of pool 0 beside\n")
	w("Cairn's images; a baseline copy runs next to each of Cairn's full copy, backup and\n")
	w("restore, so it has three samples per run. The master's file stays in the page cache\n")
	w("(%s of memory), so the copies measure writing, flushed to disk on both sides.\n\n", size(int64(m.MemoryBytes)))

	w("#### Linked clone and full copy\n\n")
	w("| | time | load (1 min) at start |\n|---|---|---|\n")
	w("| Cairn: linked clone, `POST /api/v1/images/{id}/clone` `{\"linked\": true}` → the answer with the child | %s | %s |\n", f.Linked.seconds(), f.Linked.loads())
	w("| Cairn: full copy, `POST /api/v1/images/{id}/clone` `{\"linked\": false}` → its operation succeeded (`GET /api/v1/operations/{id}?wait=60s`) | %s | %s |\n", f.Copy.seconds(), f.Copy.loads())
	w("| **full copy / linked clone** | %s | |\n", ratio(f.Copy.median(), f.Linked.median()))
	w("| baseline: `qemu-img create -f qcow2 -b master -F qcow2 child` | %s | %s |\n", f.Child.seconds(), f.Child.loads())
	w("| Cairn linked clone / baseline | %s | |\n", ratio(f.Linked.median(), f.Child.median()))
	w("| baseline: `rsync --sparse master copy` + `sync copy` | %s | %s |\n", f.Rsync.seconds(), f.Rsync.loads())
	w("| Cairn full copy / rsync | %s | |\n", ratio(f.Copy.median(), f.Rsync.median()))
	if f.Reflinked {
		w("| baseline: `cp --reflink=always master copy` + `sync copy` | %s | %s |\n", f.CpReflnk.seconds(), f.CpReflnk.loads())
		w("| Cairn full copy / cp --reflink | %s | |\n", ratio(f.Copy.median(), f.CpReflnk.median()))
	}
	w("\nA linked clone only writes a qcow2 header naming the master, so it takes as long for\n")
	w("any master; ")
	switch f.Method {
	case "reflink":
		w("here the full copy is a reflink too (Cairn clones the file's extents with\n")
		w("FICLONE, as `cp --reflink` does), so it also moves no data and the ratio is small:\n")
		w("what is left is the operation, the flush and qemu-img reading the new file's header.\n\n")
	case "copy", "rsync":
		w("a full copy moves the file's data (the filesystem cannot share extents), which\n")
		w("is what the full copy / linked clone ratio shows.\n\n")
	default:
		w("a full copy moves the whole file unless the filesystem can share its extents.\n\n")
	}

	w("#### Backup and restore throughput\n\n")
	w("MB/s of the file's %s (MB = 10⁶ bytes).\n\n", mbyte(f.FileBytes))
	w("| | time | throughput | load (1 min) at start |\n|---|---|---|---|\n")
	method := ""
	switch f.Method {
	case "":
	case "copy":
		method = " (a copy of the data that keeps holes)"
	default:
		method = fmt.Sprintf(" (copied by %s)", f.Method)
	}
	w("| Cairn: back up, `POST /api/v1/images/{id}/backup` → its operation succeeded%s | %s | %s | %s |\n", method, f.Backup.seconds(), f.Backup.rate(f.FileBytes), f.Backup.loads())
	w("| Cairn: restore as a new image, `POST /api/v1/backups/{id}/restore` `{\"name\": …}` → its operation succeeded | %s | %s | %s |\n", f.Restore.seconds(), f.Restore.rate(f.FileBytes), f.Restore.loads())
	w("| baseline: `rsync --sparse` + `sync` of the same file | %s | %s | %s |\n", f.Rsync.seconds(), f.Rsync.rate(f.FileBytes), f.Rsync.loads())
	w("| **Cairn backup / rsync** (throughput) | | %s | |\n", rateRatio(f.Backup, f.Rsync))
	w("| **Cairn restore / rsync** (throughput) | | %s | |\n", rateRatio(f.Restore, f.Rsync))
	if f.Reflinked {
		w("| baseline: `cp --reflink=always` + `sync` of the same file | %s | %s | %s |\n", f.CpReflnk.seconds(), f.CpReflnk.rate(f.FileBytes), f.CpReflnk.loads())
		w("| Cairn backup / cp --reflink (throughput) | | %s | |\n", rateRatio(f.Backup, f.CpReflnk))
		w("| Cairn restore / cp --reflink (throughput) | | %s | |\n", rateRatio(f.Restore, f.CpReflnk))
	}
	w("\n")
	switch f.Method {
	case "reflink":
		w("On this filesystem a backup and a restore share the file's extents instead of\n")
		w("moving its bytes, so their MB/s are those of a metadata operation: a backup of\n")
		w("a big image takes about as long as one of a small image, and the ratio against\n")
		w("`cp --reflink` is Cairn's own overhead (the operation, flushing the file and its\n")
		w("folder, the rename into place, its records).\n\n")
	case "rsync":
		w("Cairn copies with `rsync --sparse` too when the filesystem cannot share extents,\n")
		w("and adds flushing the file and its folder, the rename into place and its records\n")
		w("(a restore also reads the new file's header with qemu-img): a ratio near 1× means\n")
		w("that overhead is small against moving the bytes.\n\n")
	default:
		w("Where the filesystem cannot share extents Cairn copies the data itself: it asks\n")
		w("the filesystem where the data is (`SEEK_DATA`/`SEEK_HOLE`), reads only that and\n")
		w("leaves runs of zeros as holes, where `rsync --sparse` reads every hole as zeros.\n")
		w("Throughput is counted over the whole file, so a ratio above 1× is what skipping\n")
		w("the holes saves; Cairn also flushes the file and its folder, renames it into place\n")
		w("and keeps its records (a restore also reads the new file's header with qemu-img).\n\n")
	}
}

// maxLoad is the highest 1-minute load average at the start of any sample.
func (r Report) maxLoad() float64 {
	all := []Series{r.Servers.Cairn, r.Servers.Baseline}
	for _, f := range r.Images {
		all = append(all, f.Linked, f.Child, f.Copy, f.Rsync, f.CpReflnk, f.Backup, f.Restore)
	}
	hi := max(r.Machine.Load[0], r.Machine.LoadEnd[0])
	for _, s := range all {
		for _, x := range s.Samples {
			hi = max(hi, x.Load1)
		}
	}
	return hi
}

// wrap breaks text into lines of at most width bytes at spaces.
func wrap(text string, width int) string {
	var b strings.Builder
	n := 0
	for i, word := range strings.Fields(text) {
		if i > 0 && n+1+len(word) > width {
			b.WriteByte('\n')
			n = 0
		} else if i > 0 {
			b.WriteByte(' ')
			n++
		}
		b.WriteString(word)
		n += len(word)
	}
	return b.String()
}

// writeSection puts section into the file at path in place of the old section, or
// at its end when it has none; the rest of the file is left as it was. The file is
// replaced atomically.
func writeSection(path, section string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read report %s: %w", path, err)
	}
	doc, err := splice(string(old), section)
	if err != nil {
		return fmt.Errorf("report %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write report %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(doc); err != nil {
		tmp.Close()
		return fmt.Errorf("write report %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write report %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write report %s: %w", path, err)
	}
	return nil
}

// splice returns doc with section (which starts with beginMarker and ends with
// endMarker and a newline) in place of the lines between the markers, or appended
// after a blank line when doc has no section yet.
func splice(doc, section string) (string, error) {
	begin := strings.Index(doc, beginMarker)
	if begin < 0 {
		switch {
		case doc == "":
		case strings.HasSuffix(doc, "\n\n"):
		case strings.HasSuffix(doc, "\n"):
			doc += "\n"
		default:
			doc += "\n\n"
		}
		return doc + section, nil
	}
	n := strings.Index(doc[begin:], endMarker)
	if n < 0 {
		return "", fmt.Errorf("it has %s but no %s after it: put the end marker back, or delete the section, and run again", beginMarker, endMarker)
	}
	end := begin + n + len(endMarker)
	if strings.HasPrefix(doc[end:], "\n") {
		end++
	}
	if strings.Contains(doc[end:], beginMarker) {
		return "", fmt.Errorf("it has two %s sections: delete one and run again", beginMarker)
	}
	return doc[:begin] + section + doc[end:], nil
}
