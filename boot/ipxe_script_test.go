package boot

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/cairn-os/cairn/internal/testutil"
)

var testMAC = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}

var computeArgs = []string{
	"cairn.role=compute",
	"cairn.admin=https://10.0.0.1",
	"cairn.token=jt_4f9a-Zk_81.x",
	"cairn.ca=sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
}

func TestIPXEScriptsGolden(t *testing.T) {
	testutil.Golden(t, "chain", chainScript("http://10.0.0.1"))
	testutil.Golden(t, "chain_port", chainScript("http://10.0.0.1:8080"))

	s, err := nodeScript("http://10.0.0.1", testMAC, Plan{Action: ActionCompute, KernelArgs: computeArgs})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Golden(t, "node_compute", s)

	s, err = nodeScript("http://10.0.0.1", testMAC, Plan{Action: ActionCompute,
		KernelArgs: append([]string{"console=ttyS1,9600"}, computeArgs...)})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Golden(t, "node_compute_console", s)

	s, err = nodeScript("http://10.0.0.1", testMAC, Plan{Action: ActionLocal, KernelArgs: []string{"ignored"}})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Golden(t, "node_local", s)
}

func TestNodeScriptRefusesBadPlans(t *testing.T) {
	for _, tc := range []struct {
		name string
		plan Plan
		want string
	}{
		{"unknown action", Plan{Action: "reinstall"}, `action "reinstall"`},
		{"empty action", Plan{}, `action ""`},
		{"space", Plan{Action: ActionCompute, KernelArgs: []string{"cairn.token=a b"}}, `holds " "`},
		{"newline", Plan{Action: ActionCompute, KernelArgs: []string{"a\nchain http://evil/x"}}, `holds "\n"`},
		{"carriage return", Plan{Action: ActionCompute, KernelArgs: []string{"a\r"}}, `holds "\r"`},
		{"tab", Plan{Action: ActionCompute, KernelArgs: []string{"a\tb"}}, `holds "\t"`},
		{"quote", Plan{Action: ActionCompute, KernelArgs: []string{`a"b`}}, `holds "\""`},
		{"settings expansion", Plan{Action: ActionCompute, KernelArgs: []string{"x=${net0/ip}"}}, `holds "$"`},
		{"backslash", Plan{Action: ActionCompute, KernelArgs: []string{`a\b`}}, `holds "\\"`},
		{"and", Plan{Action: ActionCompute, KernelArgs: []string{"a&&b"}}, `holds "&"`},
		{"option", Plan{Action: ActionCompute, KernelArgs: []string{"--name"}}, `begins with '-'`},
		{"empty", Plan{Action: ActionCompute, KernelArgs: []string{""}}, "empty kernel argument"},
		{"non-ascii", Plan{Action: ActionCompute, KernelArgs: []string{"a=é"}}, "holds"},
		{"too long", Plan{Action: ActionCompute, KernelArgs: []string{"x=" + strings.Repeat("a", 2100)}}, "at most 2047"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := nodeScript("http://10.0.0.1", testMAC, tc.plan)
			if err == nil {
				t.Fatalf("got a script, want an error:\n%s", s)
			}
			if !errors.Is(err, ErrInvalidPlan) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q: want ErrInvalidPlan mentioning %q", err, tc.want)
			}
		})
	}
}
