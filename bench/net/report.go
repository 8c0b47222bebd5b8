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
	beginMarker = "<!-- net:begin -->"
	endMarker   = "<!-- net:end -->"
)

// Report is everything one run measured.
type Report struct {
	Date       time.Time
	Machine    Machine
	Runs       int
	Throughput ThroughputFigures
	Apply      ApplyFigures
	// Took is the run's wall time.
	Took time.Duration
}

// Sample is one value (bits per second or seconds) and the 1-minute load average
// when it was taken.
type Sample struct {
	Value float64
	Load1 float64
}

// Series is one figure over the runs, and the first error met while taking it.
type Series struct {
	Samples []Sample
	Err     string
}

// add records one run: a sample, or its error.
func (s *Series) add(v, load float64, err error) {
	if err != nil {
		s.note(err)
		return
	}
	s.Samples = append(s.Samples, Sample{Value: v, Load1: load})
}

// note records err (the first one only), if there is one.
func (s *Series) note(err error) {
	if err != nil && s.Err == "" {
		s.Err = firstLine(err.Error())
	}
}

// median returns the median value, or 0 for none.
func (s Series) median() float64 {
	if len(s.Samples) == 0 {
		return 0
	}
	v := make([]float64, len(s.Samples))
	for i, x := range s.Samples {
		v[i] = x.Value
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// last is the latest sample of s, for the log; -1 when there is none.
func last(s Series) float64 {
	if len(s.Samples) == 0 {
		return -1
	}
	return s.Samples[len(s.Samples)-1].Value
}

// gbit renders bits per second as Gbit/s (10⁹ bits).
func (s Series) gbit() string {
	return s.render(func(v float64) string { return strconv.FormatFloat(v/1e9, 'f', 2, 64) }, "Gbit/s")
}

// seconds renders seconds, in ms below 1 s.
func (s Series) seconds() string {
	scale, unit, prec := 1.0, "s", 2
	switch med := s.median(); {
	case med < 0.01:
		scale, unit, prec = 1000, "ms", 1
	case med < 1:
		scale, unit, prec = 1000, "ms", 0
	}
	return s.render(func(v float64) string { return strconv.FormatFloat(v*scale, 'f', prec, 64) }, unit)
}

// render writes the median through f, then every sample, and the error of a failed run.
func (s Series) render(f func(float64) string, unit string) string {
	var out string
	switch len(s.Samples) {
	case 0:
		msg := s.Err
		if msg == "" {
			msg = "not measured"
		}
		return "— (" + escape(msg) + ")"
	case 1:
		out = f(s.Samples[0].Value) + " " + unit
	default:
		vals := make([]string, len(s.Samples))
		for i, x := range s.Samples {
			vals[i] = f(x.Value)
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

// ratio renders a / b with two decimals, or "—" when either is missing.
func ratio(a, b float64) string {
	if a == 0 || b == 0 {
		return "—"
	}
	return fmt.Sprintf("**%.2f×**", a/b)
}

// escape keeps text from breaking a table row.
func escape(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}

// thousands renders n with commas between groups of three digits.
func thousands(n int) string {
	if n < 0 {
		return "-" + thousands(-n)
	}
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// duration renders a run's wall time in whole seconds.
func duration(d time.Duration) string {
	d = d.Round(time.Second)
	if d < time.Minute {
		return fmt.Sprintf("%d s", int(d.Seconds()))
	}
	return fmt.Sprintf("%d min %d s", int(d.Minutes()), int(d.Seconds())%60)
}

// Markdown renders the report's section, markers included.
func (r Report) Markdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	m := r.Machine

	w("%s\n", beginMarker)
	w("## Connections: IP mappings\n\n")
	w("Cairn's connections data plane (`supervisor/vnet`), measured in one run on this host\n")
	w("by `go run ./bench/net` (`make bench-net`), which wrote this section. Everything runs\n")
	w("in network namespaces the run makes and removes, as the package's tests set them up:\n")
	w("an admin, an outside host on the admin's uplink, and a server attached to the admin's\n")
	w("network bridge by a veth pair the way a guest's tap is. With several runs the median\n")
	w("is shown with every value, and the 1-minute load average when each run began. The\n")
	w("figures depend on the machine and on what else ran on it: compare the ratio. No test\n")
	w("asserts a figure.\n\n")

	w("| | |\n|---|---|\n")
	w("| date | %s |\n", r.Date.UTC().Format("2006-01-02 15:04 UTC"))
	w("| machine | %s, %d cores, Linux %s |\n", escape(m.CPU), m.Cores, escape(m.Kernel))
	w("| iperf3 | %s |\n", escape(m.IPerf))
	w("| load average (1, 5, 15 min) | %.2f %.2f %.2f at the start, %.2f %.2f %.2f at the end |\n",
		m.Load[0], m.Load[1], m.Load[2], m.LoadEnd[0], m.LoadEnd[1], m.LoadEnd[2])
	w("| runs | %d of each figure; iperf3 sends for %d s each time |\n", r.Runs, r.Throughput.Seconds)
	w("| wall time of the run | %s |\n\n", duration(r.Took))

	if hi := r.maxLoad(); hi > float64(m.Cores) {
		w("%s\n\n", wrap(fmt.Sprintf("**Note:** the machine was not idle: the 1-minute load average "+
			"reached %.2f on %d cores (other work on the host), which spreads the samples; the two paths "+
			"alternate, so the ratio holds better than the figures.", hi, m.Cores), 88))
	}

	t := r.Throughput
	w("### TCP throughput through a 1:1 mapping\n\n")
	w("`iperf3 -s` runs in the server's namespace (%s on network 1, bridge `cbr1`) and\n", serverAddr)
	w("`iperf3 -c … -t %d -J` in the outside host's (%s); the figure is iperf3's\n", t.Seconds, uplinkOutside)
	w("`end.sum_received.bits_per_second` (Gbit = 10⁹ bits). Both paths cross the same\n")
	w("namespaces and veth pairs, the admin routing between its uplink `up0` and the bridge;\n")
	w("they alternate, plain routing first in odd runs.\n\n")
	w("| path | throughput | load (1 min) at start |\n|---|---|---|\n")
	w("| plain routing: outside → admin → %s (the outside host routes 10.0.0.0/8 via %s), no nftables table in the admin | %s | %s |\n",
		serverAddr, uplinkAdmin, t.Plain.gbit(), t.Plain.loads())
	w("| through the mapping: outside → %s → DNAT to %s by table `inet cairn` (`vnet.Apply` of one mapping, port %s) | %s | %s |\n",
		externalAddr, serverAddr, iperfPort, t.Mapped.gbit(), t.Mapped.loads())
	w("| **mapping / plain** (of the medians) | %s | |\n", ratio(t.Mapped.median(), t.Plain.median()))
	w("| mapping / plain run by run (the two paths next to each other) | %s | |\n\n", t.pairs())
	w("%s\n\n", wrap(t.meaning(m.Cores), 88))

	a := r.Apply
	n := thousands(a.Mappings)
	w("### Applying %s mappings\n\n", n)
	w("%s\n\n", wrap(fmt.Sprintf("One admin namespace with %d gateway networks (10.1.1.0/24 upwards, "+
		"%d internal addresses each: a /24 holds at most 253 servers) and a veth `up0` as its uplink "+
		"(its peer in the same namespace). Mapping *i* maps the external address 198.18.*x*.*y* to "+
		"10.1.*x*.*y* with the port list `%s`. Each run first applies the networks without mappings "+
		"(not timed); each time is one `vnet.Node.Apply` call in that namespace.", a.Networks, hostsPerNet, basePorts), 88))
	w("| `vnet.Apply` | time | load (1 min) at start |\n|---|---|---|\n")
	w("| %s mappings onto the networks, which have none | %s | %s |\n", n, a.First.seconds(), a.First.loads())
	w("| the same State again: nothing changes | %s | %s |\n", a.Same.seconds(), a.Same.loads())
	w("| one mapping's port list `%s` → `%s`, the other %s unchanged | %s | %s |\n",
		basePorts, changedPorts, thousands(a.Mappings-1), a.Change.seconds(), a.Change.loads())
	w("| change one / add all | %s | |\n\n", ratio(a.Change.median(), a.First.median()))
	w("| after the Apply | |\n|---|---|\n")
	w("| rules in table `inet cairn` with %s mappings | %s |\n", n, ruleCount(a.Rules))
	changed := "—"
	if a.RulesChanged > 0 {
		changed = thousands(a.RulesChanged)
	}
	w("| rules after changing one port list | %s |\n", changed)
	addrs := "—"
	if len(a.Rules) > 0 {
		addrs = thousands(a.Addresses)
	}
	w("| external addresses on the uplink | %s |\n\n", addrs)
	if l := a.Limit; l != nil {
		w("%s\n\n", wrap(l.sentence(a), 88))
	}
	if a.Check != "" {
		w("**Note:** not as expected: %s\n\n", escape(a.Check))
	}
	if e := a.explanation(); e != "" {
		w("%s\n\n", wrap(e, 88))
	}

	w("### Reproduce\n\n")
	w("As root on Debian 12 with iperf3 and iproute2 (`make deps` installs them):\n")
	w("`make bench-net`, which runs `go run ./bench/net -out docs/benchmarks.md` and rewrites\n")
	w("only this section. `-runs N` sets the runs, `-seconds` how long each iperf3 run sends,\n")
	w("`-mappings` how many mappings the Apply figures hold. The namespaces are named\n")
	w("`cbnet-<random>-<role>`; all of them are removed at the end, also when the run fails\n")
	w("or is interrupted.\n")
	w("%s\n", endMarker)
	return b.String()
}

// explanation says why the times are what they are, from what the figures show:
// whether a small change costs about as much as adding all mappings, and how many
// rules each mapping adds to the chains.
func (a ApplyFigures) explanation() string {
	var parts []string
	first, change := a.First.median(), a.Change.median()
	if first > 0 && change > 0 && change/first >= 0.25 {
		parts = append(parts, fmt.Sprintf("`Apply` is declarative and does not diff: every call lists the addresses "+
			"of every link and replaces the whole table `inet cairn` in one atomic batch, so changing one "+
			"mapping, or nothing, writes every mapping's rules again, and its time grows with the number of "+
			"mappings, not with the size of the change. The first Apply also adds the %s external addresses "+
			"to the uplink, one netlink request each, which later ones find in place.", thousands(a.Mappings)))
	}
	if len(a.Rules) > 0 && a.Mappings > 0 {
		perMapping := float64(total(a.Rules)) / float64(a.Mappings)
		if perMapping >= 1 {
			parts = append(parts, fmt.Sprintf("The table holds %.1f rules per mapping (one prerouting rule per "+
				"forwarded port, one input and one postrouting rule) in plain chains rather than nftables maps, "+
				"and rules are matched in order: a new connection's first packet passes the prerouting rules of "+
				"the mappings before its own, and every packet addressed to the admin itself passes one input "+
				"rule per mapping.", perMapping))
		}
	}
	return strings.Join(parts, " ")
}

// meaning explains the ratio and says whether this run's difference stands out of
// the spread of the samples.
func (t ThroughputFigures) meaning(cores int) string {
	var b strings.Builder
	b.WriteString("The ratio is the share of plain routing's throughput that a TCP stream through a " +
		"mapping keeps: at 1× the mapping costs a bulk stream nothing measurable; below 1×, the " +
		"shortfall is what connection tracking, the address rewriting and the table's forward rules " +
		"cost each packet (only a connection's first packet passes the NAT chains, conntrack rewrites " +
		"the rest). ")
	p, m := t.Plain.median(), t.Mapped.median()
	if p > 0 && m > 0 {
		noise := max(t.Plain.spread(), t.Mapped.spread())
		switch r := m / p; {
		case len(t.Plain.Samples) > 1 && len(t.Mapped.Samples) > 1 && abs(r-1) <= noise:
			fmt.Fprintf(&b, "Here the two paths differ by %.0f%%, less than the runs of one path differ "+
				"among themselves (up to %.0f%% of its median), so this run cannot tell the mapping's "+
				"cost from the noise. ", abs(r-1)*100, noise*100)
		case r < 1:
			fmt.Fprintf(&b, "Here a stream through the mapping kept %.0f%% of plain routing's throughput. ", r*100)
		default:
			fmt.Fprintf(&b, "Here the stream through the mapping was %.0f%% faster than plain routing, "+
				"more than the runs of one path differ among themselves: something other than the "+
				"mapping differed between the runs. ", (r-1)*100)
		}
	}
	fmt.Fprintf(&b, "The iperf3 client and server and the admin's forwarding share the host's %d cores, "+
		"so both figures are bounded by the CPU, not by a wire. The senders retransmitted %s segments "+
		"over all plain runs and %s over all mapped ones.", cores, thousands(t.PlainRetrans), thousands(t.MappedRetrans))
	return b.String()
}

// pairs renders the median of the runs' own ratios, and each of them.
func (t ThroughputFigures) pairs() string {
	if len(t.Pairs) == 0 {
		return "—"
	}
	s := Series{}
	vals := make([]string, len(t.Pairs))
	for i, p := range t.Pairs {
		s.Samples = append(s.Samples, Sample{Value: p})
		vals[i] = fmt.Sprintf("%.2f", p)
	}
	if len(vals) == 1 {
		return fmt.Sprintf("%.2f×", t.Pairs[0])
	}
	return fmt.Sprintf("%.2f× (median of %s)", s.median(), strings.Join(vals, ", "))
}

// spread is (largest − smallest) / median of the samples; 0 for fewer than two.
func (s Series) spread() float64 {
	med := s.median()
	if len(s.Samples) < 2 || med == 0 {
		return 0
	}
	lo, hi := s.Samples[0].Value, s.Samples[0].Value
	for _, x := range s.Samples {
		lo, hi = min(lo, x.Value), max(hi, x.Value)
	}
	return (hi - lo) / med
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// sentence says what the failed Apply left and how many mappings one Apply wrote.
func (l Limit) sentence(a ApplyFigures) string {
	var b strings.Builder
	fmt.Fprintf(&b, "**Adding %s mappings failed** (%s). ", thousands(a.Mappings), escape(a.First.Err))
	switch {
	case strings.Contains(a.First.Err, "message too long"):
		b.WriteString("Apply sends the whole table as one netlink batch, and this one was larger than the " +
			"socket's send buffer, so none of it was written. ")
	case strings.Contains(a.First.Err, "no buffer space"):
		b.WriteString("Apply sends the whole table as one netlink batch and reads the kernel's answers, one " +
			"per rule, after it: they overflowed the socket's receive buffer. ")
	}
	switch {
	case l.WantRules > 0 && l.Rules == l.WantRules:
		fmt.Fprintf(&b, "The kernel had committed the whole table nonetheless: it held all %s rules, "+
			"and the uplink %s external addresses, while Apply reported an error. ", thousands(l.Rules), thousands(l.Addresses))
	default:
		fmt.Fprintf(&b, "Afterwards the table held %s rules, of the %s the State needs, and the uplink %s external addresses. ",
			thousands(l.Rules), thousandsOr(l.WantRules, "more"), thousands(l.Addresses))
	}
	if l.MaxMappings == 0 {
		b.WriteString("Not even one mapping could be applied.")
		return b.String()
	}
	fmt.Fprintf(&b, "The largest number of mappings (each with the port list `%s`) that one Apply wrote "+
		"without an error here is %s, a table of %s rules", basePorts, thousands(l.MaxMappings), thousands(l.MaxRules))
	if l.Err != "" && l.Err != a.First.Err {
		fmt.Fprintf(&b, "; with %s: %s", thousands(l.MaxMappings+1), escape(l.Err))
	}
	b.WriteString(".")
	return b.String()
}

// thousandsOr renders n, or or when it is 0.
func thousandsOr(n int, or string) string {
	if n == 0 {
		return or
	}
	return thousands(n)
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

// maxLoad is the highest 1-minute load average at the start of any sample.
func (r Report) maxLoad() float64 {
	hi := max(r.Machine.Load[0], r.Machine.LoadEnd[0])
	for _, s := range []Series{r.Throughput.Plain, r.Throughput.Mapped, r.Apply.First, r.Apply.Same, r.Apply.Change} {
		for _, x := range s.Samples {
			hi = max(hi, x.Load1)
		}
	}
	return hi
}

// ruleCount renders the total of rules and the chains' shares.
func ruleCount(rules []ChainRules) string {
	if len(rules) == 0 {
		return "—"
	}
	parts := make([]string, len(rules))
	for i, c := range rules {
		parts[i] = fmt.Sprintf("%s %s", c.Chain, thousands(c.Rules))
	}
	return fmt.Sprintf("%s (%s)", thousands(total(rules)), strings.Join(parts, ", "))
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
