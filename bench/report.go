package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cairn-os/cairn/qemu-tests/engineapi"
	"github.com/cairn-os/cairn/qemu-tests/lab"
)

// Report is everything one run of the benchmark measured.
type Report struct {
	Date        time.Time
	Machine     Machine
	Accel       string
	AccelReason string
	Runs        int
	// DnsmasqRA says whether the dnsmasq baseline answered router solicitations and
	// told iPXE not to wait for proxyDHCP.
	DnsmasqRA bool
	// Idle is how long the guests idled before memory was read.
	Idle time.Duration

	AdminBoot        Pair
	ISOBoot          Pair // only the baseline side: the grub-mkrescue ISO
	ComputeBoot      Pair
	ComputeFirstLine Pair // only Cairn's side: power-on → the supervisor's first line

	Sizes          []SizeRow
	AdminMemory    []memory
	BaselineMemory []memory
	Services       []engineapi.Service
	AdminUptime    time.Duration

	// CairnError is the first failure on Cairn's side, if any, and CairnConsoleErrors
	// the error lines of the admin's console then.
	CairnError         string
	CairnConsoleErrors []string
	// Notes are things the reader must know to trust the figures.
	Notes []string
}

// Pair holds both sides of one figure over the runs, and why a side has no figure.
type Pair struct {
	Cairn, Baseline       []Sample
	CairnErr, BaselineErr string
}

func (p *Pair) add(cairn bool, s Sample, err error) {
	switch {
	case err != nil && cairn && p.CairnErr == "":
		p.CairnErr = firstLine(err.Error())
	case err != nil && !cairn && p.BaselineErr == "":
		p.BaselineErr = firstLine(err.Error())
	case err == nil && cairn:
		p.Cairn = append(p.Cairn, s)
	case err == nil:
		p.Baseline = append(p.Baseline, s)
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// median returns the median of the samples' seconds, or 0 for none.
func median(ss []Sample) float64 {
	if len(ss) == 0 {
		return 0
	}
	v := make([]float64, len(ss))
	for i, s := range ss {
		v[i] = s.Seconds
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// seconds renders the samples: one value, or the median and every value.
func seconds(ss []Sample, missing string) string {
	switch len(ss) {
	case 0:
		if missing == "" {
			missing = "not measured"
		}
		return "— (" + escape(missing) + ")"
	case 1:
		return fmt.Sprintf("%.1f s", ss[0].Seconds)
	}
	vals := make([]string, len(ss))
	for i, s := range ss {
		vals[i] = fmt.Sprintf("%.1f", s.Seconds)
	}
	return fmt.Sprintf("%.1f s (median of %s)", median(ss), strings.Join(vals, ", "))
}

// loads renders the 1-minute load averages at the samples' starts, and the other
// qemu processes running then.
func loads(ss []Sample) string {
	if len(ss) == 0 {
		return ""
	}
	lo, hi, others := ss[0].Load1, ss[0].Load1, 0
	for _, s := range ss {
		lo, hi, others = min(lo, s.Load1), max(hi, s.Load1), max(others, s.OtherQEMUs)
	}
	l := fmt.Sprintf("%.2f", lo)
	if hi != lo {
		l = fmt.Sprintf("%.2f–%.2f", lo, hi)
	}
	if others > 0 {
		l += fmt.Sprintf(" (%d other qemu)", others)
	}
	return l
}

func ratio(a, b float64) string {
	if a == 0 || b == 0 {
		return "—"
	}
	return fmt.Sprintf("**%.1f×**", a/b)
}

func mib(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func medianMemory(ms []memory) (inUse, total uint64) {
	if len(ms) == 0 {
		return 0, 0
	}
	v := make([]uint64, len(ms))
	for i, m := range ms {
		v[i] = m.InUse()
	}
	slices.Sort(v)
	return v[len(v)/2], ms[0].Total
}

// escape keeps text from breaking a table row.
func escape(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}

// Markdown renders the report as docs/benchmarks.md.
func (r Report) Markdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	m := r.Machine

	w("# Benchmarks\n\n")
	w("Cairn side by side with bare baselines, measured in one run under the same qemu by\n")
	w("`go run ./bench` (`make bench`), which wrote this page. Times are wall clock from qemu's\n")
	w("start; they depend on the machine and on what else ran on it, so the load average is\n")
	w("given next to every figure. Compare the ratios; seconds from another machine are not\n")
	w("comparable. These are benchmarks: no test asserts a timing.\n\n")

	w("| | |\n|---|---|\n")
	w("| date | %s |\n", r.Date.UTC().Format("2006-01-02 15:04 UTC"))
	w("| qemu | %s, accelerator **%s** (%s) |\n", escape(m.QEMU), r.Accel, escape(r.AccelReason))
	w("| machine | %s, nproc %d, Linux %s |\n", escape(m.CPU), m.NProc, escape(m.Kernel))
	w("| load average (1, 5, 15 min) | %.2f %.2f %.2f at the start, %.2f %.2f %.2f at the end |\n",
		m.Load[0], m.Load[1], m.Load[2], m.LoadEnd[0], m.LoadEnd[1], m.LoadEnd[2])
	w("| runs | %d (each run: baselines first, then Cairn; one guest, or the admin and one compute node, at a time) |\n", r.Runs)
	w("\n")
	for _, n := range r.Notes {
		w("**Note:** %s\n\n", escape(n))
	}

	w("## Admin: boot → API ready\n\n")
	w("Both guests have the admin's size (%d MiB, %d vCPUs, q35, SeaBIOS).\n\n", lab.AdminMemoryMiB, lab.AdminCPUs)
	w("| | time | load (1 min) at start |\n|---|---|---|\n")
	w("| Cairn: the admin ISO from a CD-ROM, blank data disk, CAIRNCFG disk → `/api/v1/health` answers 200 through the forwarded port | %s | %s |\n",
		seconds(r.AdminBoot.Cairn, r.AdminBoot.CairnErr), loads(r.AdminBoot.Cairn))
	w("| baseline: Debian kernel + busybox initramfs (`-kernel`) → its shell's first line on the serial console | %s | %s |\n",
		seconds(r.AdminBoot.Baseline, r.AdminBoot.BaselineErr), loads(r.AdminBoot.Baseline))
	w("| **Cairn / baseline** | %s | |\n", ratio(median(r.AdminBoot.Cairn), median(r.AdminBoot.Baseline)))
	if len(r.ISOBoot.Baseline) > 0 || r.ISOBoot.BaselineErr != "" {
		w("| for reference: the same kernel + initramfs in a grub-mkrescue ISO from a CD-ROM → shell | %s | %s |\n",
			seconds(r.ISOBoot.Baseline, r.ISOBoot.BaselineErr), loads(r.ISOBoot.Baseline))
		w("| Cairn / ISO baseline | %s | |\n", ratio(median(r.AdminBoot.Cairn), median(r.ISOBoot.Baseline)))
	}
	w("\nCairn's figure includes what the baseline does not: SeaBIOS and grub reading the ISO,\n")
	w("stage 1 finding the medium and mounting the squashfs root, formatting the blank data\n")
	w("disk (btrfs), making the engine's CA and certificates, DHCP on the uplink, starting\n")
	w("libvirtd and the other services, and the HTTPS listener.\n\n")

	w("## Compute node: power-on → ready\n\n")
	w("Both guests have the compute node's size (%d MiB, %d vCPUs, q35, SeaBIOS, no disk) and\n", lab.ComputeMemoryMiB, lab.ComputeCPUs)
	w("network-boot with qemu's iPXE NIC ROM over a private hub, loading the same kernel and\n")
	w("initramfs (%s).\n\n", r.computeImageDesc())
	w("| | time | load (1 min) at start |\n|---|---|---|\n")
	w("| Cairn: PXE from the admin (already up, not timed) → the node `ready` in `/api/v1/nodes` (polled every %s) | %s | %s |\n",
		pollInterval, seconds(r.ComputeBoot.Cairn, r.ComputeBoot.CairnErr), loads(r.ComputeBoot.Cairn))
	w("| baseline: dnsmasq DHCP + TFTP, iPXE script → kernel + initramfs over TFTP → the supervisor's first line (`cairn supervisor starting`) | %s | %s |\n",
		seconds(r.ComputeBoot.Baseline, r.ComputeBoot.BaselineErr), loads(r.ComputeBoot.Baseline))
	w("| **Cairn / baseline** | %s | |\n", ratio(median(r.ComputeBoot.Cairn), median(r.ComputeBoot.Baseline)))
	w("| for reference: Cairn, power-on → the supervisor's first line (same end point as the baseline) | %s | |\n",
		seconds(r.ComputeFirstLine.Cairn, r.ComputeFirstLine.CairnErr))
	w("| Cairn first line / baseline | %s | |\n", ratio(median(r.ComputeFirstLine.Cairn), median(r.ComputeBoot.Baseline)))
	w("\nBoth include iPXE's DHCP and the kernel + initramfs load. Cairn's PXE server sends\n")
	w("them over HTTP; dnsmasq can only use TFTP, one round trip per block. ")
	if r.DnsmasqRA {
		w("dnsmasq is set up as\n")
		w("Cairn's server is: it answers IPv6 router solicitations (`enable-ra`), without which\n")
		w("iPXE waits about 16 s, and tells iPXE not to wait for proxyDHCP (option 175.176).\n")
	} else {
		w("dnsmasq runs without\n")
		w("`enable-ra` (`--dnsmasq-ra=false`), so iPXE waits about 16 s for IPv6 router\n")
		w("advertisements that Cairn's server sends at once.\n")
	}
	w("Cairn's figure adds, after the first line: the supervisor's DHCP, loading the kernel\n")
	w("modules, starting virtlogd and libvirtd, the join (CSR, certificate) and the first\n")
	w("heartbeat. During it the admin runs beside the compute node on the same %d cores.\n\n", m.NProc)

	w("## Sizes\n\n")
	w("| artefact | Cairn | baseline | Cairn / baseline |\n|---|---|---|---|\n")
	for _, s := range r.Sizes {
		c := "— (not found)"
		switch {
		case s.Missing != "":
			c = "— (" + escape(s.Missing) + ")"
		case s.Cairn > 0:
			c = fmt.Sprintf("%s (`%s`)", mib(uint64(s.Cairn)), relPath(s.CairnFrom))
		}
		base := "—"
		if s.Baseline > 0 {
			base = fmt.Sprintf("%s (%s)", mib(uint64(s.Baseline)), escape(s.BaselineWhat))
		}
		w("| %s | %s | %s | %s |\n", s.What, c, base, ratio(float64(s.Cairn), float64(s.Baseline)))
	}
	w("\n")

	w("## Admin memory at idle\n\n")
	inUse, total := medianMemory(r.AdminMemory)
	bInUse, bTotal := medianMemory(r.BaselineMemory)
	w("In use = MemTotal − MemAvailable. Cairn's is what the admin node's heartbeat reports\n")
	w("(`GET /api/v1/nodes/admin`: `memory_bytes` − `memory_free_bytes`), read %s after one\n", r.Idle)
	w("compute node became ready; the baseline's is its `/proc/meminfo`, read %s after its shell started.\n\n", r.Idle)
	w("| | in use | MemTotal |\n|---|---|---|\n")
	if len(r.AdminMemory) > 0 {
		w("| Cairn admin, one compute node joined, services as listed below | %s | %s |\n", mib(inUse), mib(total))
	} else {
		msg := r.CairnError
		if msg == "" {
			msg = "not measured"
		}
		w("| Cairn admin | — (%s) | |\n", escape(firstLine(msg)))
	}
	if len(r.BaselineMemory) > 0 {
		w("| baseline: Debian kernel + busybox at its shell | %s | %s |\n", mib(bInUse), mib(bTotal))
	} else {
		w("| baseline | — (not measured) | |\n")
	}
	w("| **Cairn / baseline** | %s | |\n", ratio(float64(inUse), float64(bInUse)))
	if len(r.Services) > 0 {
		w("\nThe admin's services then (`GET /api/v1/services`; the admin had been up %s):\n\n", r.AdminUptime.Round(time.Second))
		w("| service | state | restarts |\n|---|---|---|\n")
		var notRunning []string
		for _, s := range r.Services {
			w("| %s | %s | %d |\n", escape(s.Name), escape(s.State), s.Restarts)
			if s.State != "running" && s.State != "done" {
				notRunning = append(notRunning, fmt.Sprintf("%s is %s after %d restarts", s.Name, s.State, s.Restarts))
			}
		}
		if len(notRunning) > 0 {
			w("\nNot every service was running: %s. The figure above is with them as they were.\n", escape(strings.Join(notRunning, "; ")))
		}
	}
	w("\n")

	if r.CairnError != "" {
		w("## What failed\n\n")
		w("Cairn's side did not reach every figure: %s\n", r.CairnError)
		if len(r.CairnConsoleErrors) > 0 {
			w("\nErrors on the admin's console:\n\n```\n%s\n```\n", strings.Join(r.CairnConsoleErrors, "\n"))
		}
		w("\n")
	}

	w("## Reproduce\n\n")
	w("As root on Debian 12 with the build's host packages (`make deps`): `make bench` builds\n")
	w("the ISO and the compute image and runs `go run ./bench --iso build/cairn.iso --compute\n")
	w("build/compute --out docs/benchmarks.md`; `--runs N` boots everything N times and reports\n")
	w("medians. It installs `dnsmasq-base` if it is missing, downloads Debian's kernel once for\n")
	w("the baseline (`~/.cache/cairn`), and puts its disks and every guest's console log in\n")
	w("`build/bench/`. The dnsmasq baseline runs in a network namespace of its own, its tap\n")
	w("device plugged into the guests' hub (`qemu-tests/vm/hub_tap_linux.go`); nothing touches\n")
	w("the host's interfaces. Run it on an otherwise idle machine: other qemu processes and\n")
	w("the load average are recorded above because they move every figure.\n")
	return b.String()
}

func (r Report) computeImageDesc() string {
	for _, s := range r.Sizes {
		if s.What == "compute initramfs" && s.Cairn > 0 {
			return fmt.Sprintf("`build/compute/vmlinuz` and `build/compute/%s`, %s", filepath.Base(s.CairnFrom), mib(uint64(s.Cairn)))
		}
	}
	return "`build/compute/`"
}

// relPath shows a file of the build by its path in the repository when it is in one.
func relPath(p string) string {
	if i := strings.Index(p, "/build/"); i >= 0 {
		return p[i+1:]
	}
	return p
}
