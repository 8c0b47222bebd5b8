package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cairn-os/cairn/supervisor/hostcmd"
	"github.com/cairn-os/cairn/supervisor/vnet"
)

// The throughput figure's addresses: the admin's uplink network (TEST-NET-3), the
// server on network 1 and the mapping's external address.
const (
	uplinkAdmin   = "203.0.113.1"
	uplinkOutside = "203.0.113.2"
	serverAddr    = "10.1.1.11"
	externalAddr  = "203.0.113.10"
	iperfPort     = "5201"
)

// ThroughputFigures are iperf3's received bits per second, outside to server.
type ThroughputFigures struct {
	// Plain is routed to the server's internal address with no nftables table;
	// Mapped goes to the external address and is DNATed by table inet cairn.
	Plain, Mapped Series
	// Seconds is how long each iperf3 run sent.
	Seconds int
	// Pairs are mapped / plain of each run in which both paths were measured: the two
	// ran next to each other, under the same load.
	Pairs []float64
	// Retransmits are the senders' TCP retransmissions over all runs of each path.
	PlainRetrans, MappedRetrans int
}

// measureThroughput builds the outside, admin and server namespaces once and runs
// iperf3 through both paths runs times each, alternating.
func measureThroughput(ctx context.Context, log *slog.Logger, s *site, o options) ThroughputFigures {
	f := ThroughputFigures{Seconds: o.seconds}
	fail := func(err error) ThroughputFigures {
		f.Plain.note(err)
		f.Mapped.note(err)
		return f
	}
	admin, outside, server, err := throughputNamespaces(ctx, s)
	if err != nil {
		return fail(err)
	}
	net1 := vnet.Network{ID: 1, Prefix: netip.MustParsePrefix("10.1.1.0/24"), Gateway: true}
	ports, err := vnet.ParsePorts(iperfPort)
	if err != nil {
		return fail(err)
	}
	plain := vnet.State{Networks: []vnet.Network{net1}, Uplink: "up0"}
	mapped := plain
	mapped.Mappings = []vnet.Mapping{{
		External: netip.MustParseAddr(externalAddr), Internal: netip.MustParseAddr(serverAddr), Ports: ports,
	}}
	// The bridge (and the gateway address on it) exists only once vnet has made it:
	// attach the server to it like a guest's tap.
	if err := apply(ctx, admin, plain); err != nil {
		return fail(err)
	}
	if err := veth(ctx, admin, "tsrv", "", server, "eth0", serverAddr+"/24"); err != nil {
		return fail(err)
	}
	if _, err := ip(ctx, "-n", admin, "link", "set", "tsrv", "master", vnet.BridgeName(net1.ID)); err != nil {
		return fail(err)
	}
	if _, err := ip(ctx, "-n", server, "route", "add", "default", "via", "10.1.1.1"); err != nil {
		return fail(err)
	}
	if err := startIperfServer(ctx, s, server); err != nil {
		return fail(err)
	}

	runPlain := func() {
		err := apply(ctx, admin, plain)
		if err == nil {
			err = deleteTable(admin)
		}
		if err == nil {
			if has, herr := hasTable(admin); herr != nil {
				err = herr
			} else if has {
				err = errors.New("the admin namespace still has an nftables table")
			}
		}
		if err != nil {
			f.Plain.note(fmt.Errorf("set up plain routing: %w", err))
			return
		}
		bps, retrans, load, err := iperf(ctx, outside, serverAddr, o.seconds)
		f.Plain.add(bps, load, err)
		f.PlainRetrans += retrans
	}
	runMapped := func() {
		if err := apply(ctx, admin, mapped); err != nil {
			f.Mapped.note(fmt.Errorf("set up the mapping: %w", err))
			return
		}
		bps, retrans, load, err := iperf(ctx, outside, externalAddr, o.seconds)
		f.Mapped.add(bps, load, err)
		f.MappedRetrans += retrans
	}
	for i := range o.runs {
		if ctx.Err() != nil {
			break
		}
		np, nm := len(f.Plain.Samples), len(f.Mapped.Samples)
		alternate(i, runPlain, runMapped)
		if len(f.Plain.Samples) > np && len(f.Mapped.Samples) > nm {
			f.Pairs = append(f.Pairs, last(f.Mapped)/last(f.Plain))
		}
		log.Info("throughput", "run", i+1, "plain_gbit", last(f.Plain)/1e9, "mapped_gbit", last(f.Mapped)/1e9)
	}
	return f
}

// throughputNamespaces makes the admin with its uplink up0 to the outside host, which
// routes the internal networks through the admin, and the server's namespace.
func throughputNamespaces(ctx context.Context, s *site) (admin, outside, server string, err error) {
	if admin, err = s.netns(ctx, "admin"); err != nil {
		return
	}
	if outside, err = s.netns(ctx, "outside"); err != nil {
		return
	}
	if server, err = s.netns(ctx, "server"); err != nil {
		return
	}
	if err = veth(ctx, admin, "up0", uplinkAdmin+"/24", outside, "eth0", uplinkOutside+"/24"); err != nil {
		return
	}
	_, err = ip(ctx, "-n", outside, "route", "add", "10.0.0.0/8", "via", uplinkAdmin)
	return
}

// startIperfServer runs iperf3 -s in ns until the site closes, and waits until it
// listens.
func startIperfServer(ctx context.Context, s *site, ns string) error {
	var out hostcmd.Tail
	cmd := exec.Command("ip", "netns", "exec", ns, "iperf3", "-s", "-p", iperfPort)
	cmd.Stdout, cmd.Stderr = &out, &out
	p, err := hostcmd.Start(cmd)
	if err != nil {
		return fmt.Errorf("start iperf3 -s in %s: %w", ns, err)
	}
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = p.Wait(); close(exited) }()
	// ip netns exec execs iperf3 itself: the process is the server. It must end
	// before its namespace is removed, or the namespace lives on without a name.
	stop := sync.OnceFunc(func() {
		cmd.Process.Kill()
		<-exited
	})
	s.onClose(stop)
	deadline := time.Now().Add(10 * time.Second)
	for {
		listening, err := ip(ctx, "netns", "exec", ns, "ss", "-Hltn", "sport = :"+iperfPort)
		if err == nil && strings.TrimSpace(listening) != "" {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("iperf3 -s in %s exited: %v: %s", ns, waitErr, out.LastLine())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return fmt.Errorf("iperf3 -s in %s does not listen on port %s after 10s: %s", ns, iperfPort, out.LastLine())
		}
	}
}

// iperfResult is the part of iperf3 -J's output used here.
type iperfResult struct {
	End struct {
		SumReceived struct {
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
		SumSent struct {
			Retransmits int `json:"retransmits"`
		} `json:"sum_sent"`
	} `json:"end"`
	Error string `json:"error"`
}

// iperf runs one iperf3 client in ns against addr for seconds and returns the bits per
// second the server received, the sender's retransmissions and the 1-minute load
// average when it began.
func iperf(ctx context.Context, ns, addr string, seconds int) (bps float64, retrans int, load float64, err error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(seconds)*time.Second+30*time.Second)
	defer cancel()
	load = loadAverage()[0]
	out, runErr := hostcmd.Exec{}.Run(ctx, "ip", "netns", "exec", ns,
		"iperf3", "-c", addr, "-p", iperfPort, "-t", strconv.Itoa(seconds), "-J", "--connect-timeout", "5000")
	var r iperfResult
	jerr := json.Unmarshal(out, &r)
	switch {
	case jerr == nil && r.Error != "":
		return 0, 0, load, fmt.Errorf("iperf3 -c %s: %s", addr, r.Error)
	case runErr != nil:
		return 0, 0, load, runErr
	case jerr != nil:
		return 0, 0, load, fmt.Errorf("iperf3 -c %s: read its JSON: %w", addr, jerr)
	case r.End.SumReceived.BitsPerSecond <= 0:
		return 0, 0, load, fmt.Errorf("iperf3 -c %s: no bits_per_second in end.sum_received", addr)
	}
	return r.End.SumReceived.BitsPerSecond, r.End.SumSent.Retransmits, load, nil
}

// alternate runs a and b, b first in odd runs, so that neither always follows the
// other.
func alternate(run int, a, b func()) {
	if run%2 == 0 {
		a()
		b()
	} else {
		b()
		a()
	}
}
