package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-os/cairn/internal/testutil"
)

func series(err string, vals ...float64) Series {
	s := Series{Err: err}
	for i, v := range vals {
		s.Samples = append(s.Samples, Sample{Value: v, Load1: 1 + float64(i)/4})
	}
	return s
}

func testReport() Report {
	return Report{
		Date: time.Date(2026, 11, 22, 5, 30, 0, 0, time.UTC),
		Machine: Machine{CPU: "Test CPU @ 2.80GHz", Cores: 2, Kernel: "6.1.0-test", IPerf: "iperf 3.12 (cJSON 1.7.15)",
			Load: [3]float64{0.5, 0.6, 0.7}, LoadEnd: [3]float64{1.5, 1, 0.8}},
		Runs: 3,
		Throughput: ThroughputFigures{
			Seconds: 5,
			Plain:   series("", 10.5e9, 10.1e9, 10.7e9),
			Mapped:  series("", 9.1e9, 9.4e9, 9.2e9),
			// 1234 retransmissions render with a comma.
			PlainRetrans: 1234, MappedRetrans: 17,
			Pairs: []float64{0.8667, 0.9307, 0.8598},
		},
		Apply: ApplyFigures{
			Mappings: 1000, Networks: 4,
			First:        series("", 0.41, 0.38, 0.44),
			Same:         series("", 0.21, 0.2, 0.22),
			Change:       series("", 0.22, 0.21, 0.23),
			Rules:        []ChainRules{{"forward", 7}, {"input", 1000}, {"prerouting", 3000}, {"postrouting", 1004}},
			RulesChanged: 5012, Addresses: 1000,
		},
		Took: 95 * time.Second,
	}
}

// TestMarkdown checks the section against its golden file, and that it is framed by
// the markers that writeSection looks for.
func TestMarkdown(t *testing.T) {
	md := testReport().Markdown()
	flat := strings.Join(strings.Fields(md), " ")
	testutil.Golden(t, "section", md)
	if !strings.HasPrefix(md, beginMarker+"\n") || !strings.HasSuffix(md, endMarker+"\n") {
		t.Errorf("the section is not framed by %s … %s:\n%s", beginMarker, endMarker, md)
	}
	if strings.Count(md, beginMarker) != 1 || strings.Count(md, endMarker) != 1 {
		t.Error("the section holds a marker twice")
	}
	for _, want := range []string{
		"| **mapping / plain** (of the medians) | **0.88×** |", // 9.2 / 10.5
		"| mapping / plain run by run (the two paths next to each other) | 0.87× (median of 0.87, 0.93, 0.86) |",
		"10.50 Gbit/s (median of 10.50, 10.10, 10.70)",
		"kept 88% of plain routing's throughput", // outside the spread of the samples
		"| change one / add all | **0.54×** |",   // 0.22 / 0.41
		"| rules in table `inet cairn` with 1,000 mappings | 5,011 (forward 7, input 1,000, prerouting 3,000, postrouting 1,004) |",
		"| wall time of the run | 1 min 35 s |",
		"retransmitted 1,234 segments",
	} {
		if !strings.Contains(flat, want) {
			t.Errorf("the section lacks %q", want)
		}
	}
	if strings.Contains(md, "not idle") {
		t.Error("an idle machine is said to be busy")
	}
}

// TestMarkdownFailures: a failed Apply is shown with what it left behind and the
// largest count that applied; a busy machine and a difference within the noise are
// said so.
func TestMarkdownFailures(t *testing.T) {
	r := testReport()
	r.Machine.LoadEnd[0] = 3.5
	r.Throughput.Mapped = series("", 10.4e9, 9.6e9, 10.9e9)
	why := errors.New("not measured: adding the 1,000 mappings failed")
	r.Apply = ApplyFigures{Mappings: 1000, Networks: 4,
		First: series("vnet apply: write nftables table inet cairn: netlink receive: recvmsg: no buffer space available")}
	r.Apply.Same.note(why)
	r.Apply.Change.note(why)
	r.Apply.Limit = &Limit{Rules: 5011, WantRules: 5011, Addresses: 1000, MaxMappings: 24, MaxRules: 131,
		Err: "vnet apply: write nftables table inet cairn: netlink receive: recvmsg: no buffer space available"}
	md := r.Markdown()
	flat := strings.Join(strings.Fields(md), " ")
	for _, want := range []string{
		"| 1,000 mappings onto the networks, which have none | — (vnet apply: write nftables table inet cairn: netlink receive: recvmsg: no buffer space available) |",
		"| the same State again: nothing changes | — (not measured: adding the 1,000 mappings failed) |",
		"**Adding 1,000 mappings failed**",
		"The kernel had committed the whole table nonetheless: it held all 5,011 rules",
		"wrote without an error here is 24, a table of 131 rules.",
		"| external addresses on the uplink | — |",
		"cannot tell the mapping's cost from the noise",
		"the 1-minute load average reached 3.50 on 2 cores",
	} {
		if !strings.Contains(flat, want) {
			t.Errorf("the section lacks %q:\n%s", want, md)
		}
	}
	// The first Apply's error is not repeated for the count after the largest.
	if strings.Contains(flat, "; with 25:") {
		t.Error("the limit repeats the first Apply's error")
	}
}

func TestSeries(t *testing.T) {
	var s Series
	s.add(2, 0.5, nil)
	s.add(1, 0.7, nil)
	s.add(0, 0, errors.New("boom\nsecond line"))
	s.add(0, 0, errors.New("later error"))
	s.note(nil)
	if got := s.median(); got != 1.5 {
		t.Errorf("median of 1 and 2 = %v, want 1.5", got)
	}
	if s.Err != "boom" {
		t.Errorf("error = %q, want the first line of the first error", s.Err)
	}
	if got, want := s.seconds(), "1.50 s (median of 2.00, 1.00); a run failed: boom"; got != want {
		t.Errorf("seconds() = %q, want %q", got, want)
	}
	if got, want := series("", 0.0123).seconds(), "12 ms"; got != want {
		t.Errorf("seconds() of 12.3 ms = %q, want %q", got, want)
	}
	if got := s.loads(); got != "0.50–0.70" {
		t.Errorf("loads() = %q", got)
	}
	if got := (Series{Err: "a|b"}).gbit(); got != `— (a\|b)` {
		t.Errorf("a figure with no sample renders %q", got)
	}
	if got := ratio(1, 0); got != "—" {
		t.Errorf("ratio with a missing side = %q", got)
	}
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -5011: "-5,011"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}

const section = beginMarker + "\nnew figures\n" + endMarker + "\n"

func TestSplice(t *testing.T) {
	boot := "# Benchmarks\n\nboot figures\n"
	storage := "<!-- storage:begin -->\nstorage figures\n<!-- storage:end -->\n"
	for _, c := range []struct{ name, doc, want string }{
		{"empty file", "", section},
		{"appended after the other sections", boot + "\n" + storage, boot + "\n" + storage + "\n" + section},
		{"no newline at the end", "# B", "# B\n\n" + section},
		{"replaced between other sections", boot + "\n" + beginMarker + "\nold\n" + endMarker + "\n" + storage,
			boot + "\n" + section + storage},
	} {
		got, err := splice(c.doc, section)
		if err != nil || got != c.want {
			t.Errorf("%s: splice = %q, %v; want %q", c.name, got, err, c.want)
		}
	}
	if _, err := splice("x\n"+beginMarker+"\nno end\n", section); err == nil || !strings.Contains(err.Error(), endMarker) {
		t.Errorf("a section without its end marker: %v, want an error naming %s", err, endMarker)
	}
	two := beginMarker + "\n" + endMarker + "\n" + beginMarker + "\n" + endMarker + "\n"
	if _, err := splice(two, section); err == nil {
		t.Error("two sections: no error")
	}
}

// TestWriteSection writes the section into a report twice: the other benchmarks'
// text stays byte for byte, and the section appears once, with the newer figures.
func TestWriteSection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "benchmarks.md")
	others := "# Benchmarks\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n<!-- storage:begin -->\nstorage\n<!-- storage:end -->\n"
	if err := os.WriteFile(path, []byte(others), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeSection(path, section); err != nil {
		t.Fatal(err)
	}
	newer := strings.Replace(section, "new figures", "newer figures", 1)
	if err := writeSection(path, newer); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := others + "\n" + newer; string(got) != want {
		t.Errorf("report after two runs:\n%s\nwant:\n%s", got, want)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("report mode: %v, %v; want 0644", fi.Mode(), err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("writeSection left %d files in the folder, want only the report", len(entries))
	}
}

func TestApplyStates(t *testing.T) {
	base, full, changed, err := applyStates(1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(base.Networks) != 4 || len(base.Mappings) != 0 || len(full.Mappings) != 1000 {
		t.Fatalf("base has %d networks and %d mappings, full %d mappings; want 4, 0, 1000",
			len(base.Networks), len(base.Mappings), len(full.Mappings))
	}
	if err := changed.Validate(); err != nil {
		t.Errorf("changed State: %v", err)
	}
	diff := 0
	for i := range full.Mappings {
		if len(full.Mappings[i].Ports) != len(changed.Mappings[i].Ports) {
			diff++
		}
	}
	if diff != 1 {
		t.Errorf("%d mappings differ between full and changed, want 1", diff)
	}
	if got := full.Mappings[999].Internal.String(); got != "10.1.4.251" {
		t.Errorf("last internal address = %s, want 10.1.4.251", got)
	}
	if _, _, _, err := applyStates(0); err == nil {
		t.Error("0 mappings: no error")
	}
}
