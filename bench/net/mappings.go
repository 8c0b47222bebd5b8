package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/cairn-os/cairn/supervisor/vnet"
)

// The port lists of the Apply figure: every mapping forwards basePorts; the changed
// mapping gets changedPorts instead.
const (
	basePorts    = "22,80,443"
	changedPorts = "22,80,443,8080"
	// hostsPerNet internal addresses (.2 upwards) are used in each /24.
	hostsPerNet = 250
)

// ApplyFigures are the times of vnet.Apply with many mappings in one admin namespace.
type ApplyFigures struct {
	// Mappings is how many mappings the State holds, Networks over how many gateway
	// networks their internal addresses are spread.
	Mappings, Networks int
	// First adds all mappings to a namespace that has the networks and none; Same
	// applies the same State again; Change changes one mapping's port list.
	First, Same, Change Series
	// Rules is the table's rules after First, chain by chain; RulesChanged the total
	// after Change. Addresses is how many external addresses the uplink then carries.
	Rules        []ChainRules
	RulesChanged int
	Addresses    int
	// Check is what did not come out as expected (rule or address counts).
	Check string
	// Limit is set when adding the mappings failed.
	Limit *Limit
}

// Limit is what a failed Apply of many mappings left behind, and how many mappings
// one Apply could write instead.
type Limit struct {
	// Rules and Addresses are what the namespace held after the failed Apply: the
	// kernel may have committed the batch although Apply reported an error.
	Rules, Addresses int
	// WantRules is how many rules the State needs (Rules of the largest State that
	// applied, extended by the rules per mapping); 0 when no State applied.
	WantRules int
	// MaxMappings is the largest number of mappings (each with basePorts) that one
	// Apply wrote without an error, MaxRules the rules of the table it made; 0 when
	// even one failed.
	MaxMappings, MaxRules int
	// Err is the error of an Apply of MaxMappings+1 mappings, when that is fewer
	// than all of them.
	Err string
}

// diagnose looks at what the failed Apply of full left in ns, then finds by
// bisection the largest number of mappings that one Apply writes there, starting
// each attempt from base. It ends with base applied.
func diagnose(ctx context.Context, ns string, full, base vnet.State, n int) *Limit {
	l := &Limit{}
	if rules, err := countRules(ns); err == nil {
		l.Rules = total(rules)
	}
	l.Addresses, _ = externalAddresses(ctx, ns)
	try := func(k int) error {
		if err := apply(ctx, ns, base); err != nil {
			return err
		}
		st := base
		st.Mappings = full.Mappings[:k]
		return apply(ctx, ns, st)
	}
	lo, hi := 0, n // try(lo) succeeds (none), try(hi) fails
	for hi-lo > 1 && ctx.Err() == nil {
		mid := (lo + hi) / 2
		if err := try(mid); err != nil {
			hi = mid
			l.Err = firstLine(err.Error())
		} else {
			lo = mid
		}
	}
	l.MaxMappings = lo
	if lo > 0 && try(lo) == nil {
		if rules, err := countRules(ns); err == nil {
			l.MaxRules = total(rules)
			perMapping := len(full.Mappings[0].Ports) + 2
			l.WantRules = l.MaxRules + (n-lo)*perMapping
		}
	}
	apply(context.WithoutCancel(ctx), ns, base)
	return l
}

// measureApply times Apply in an admin namespace whose uplink leads nowhere: the
// mappings' rules and addresses do not depend on what is behind the uplink, and no
// server needs to exist behind an internal address for its mapping to be written.
func measureApply(ctx context.Context, log *slog.Logger, s *site, o options) ApplyFigures {
	f := ApplyFigures{Mappings: o.mappings, Networks: (o.mappings + hostsPerNet - 1) / hostsPerNet}
	fail := func(err error) ApplyFigures {
		f.First.note(err)
		f.Same.note(err)
		f.Change.note(err)
		return f
	}
	base, full, changed, err := applyStates(o.mappings)
	if err != nil {
		return fail(err)
	}
	admin, err := s.netns(ctx, "apply")
	if err != nil {
		return fail(err)
	}
	// The uplink is one end of a veth pair whose other end stays in the namespace:
	// not every kernel has the dummy link type.
	if err := veth(ctx, admin, "up0", "198.18.0.1/15", admin, "up0peer", ""); err != nil {
		return fail(err)
	}

	timed := func(ser *Series, st vnet.State) bool {
		load := loadAverage()[0]
		start := time.Now()
		err := apply(ctx, admin, st)
		ser.add(time.Since(start).Seconds(), load, err)
		return err == nil
	}
	var checks []string
	check := func(format string, args ...any) {
		if msg := fmt.Sprintf(format, args...); len(checks) == 0 || checks[len(checks)-1] != msg {
			checks = append(checks, msg)
		}
	}
	for i := range o.runs {
		if ctx.Err() != nil {
			break
		}
		// Each run starts from the networks without mappings.
		if err := apply(ctx, admin, base); err != nil {
			f.First.note(fmt.Errorf("remove the mappings: %w", err))
			break
		}
		if !timed(&f.First, full) {
			if f.Limit == nil {
				f.Limit = diagnose(ctx, admin, full, base, o.mappings)
			}
			continue
		}
		rules, err := countRules(admin)
		if err != nil {
			check("%v", err)
		} else if f.Rules == nil {
			f.Rules = rules
		} else if total(rules) != total(f.Rules) {
			check("run %d made %d rules, run 1 %d", i+1, total(rules), total(f.Rules))
		}
		if n, err := externalAddresses(ctx, admin); err != nil {
			check("%v", err)
		} else {
			f.Addresses = n
			if n != o.mappings {
				check("%d external addresses on the uplink, not %d", n, o.mappings)
			}
		}
		timed(&f.Same, full)
		if timed(&f.Change, changed) {
			if rules, err := countRules(admin); err != nil {
				check("%v", err)
			} else {
				f.RulesChanged = total(rules)
				if f.Rules != nil && total(rules) != total(f.Rules)+1 {
					check("changing one port list from %s to %s made %d rules of %d, not one more", basePorts, changedPorts, total(rules), total(f.Rules))
				}
			}
		}
		log.Info("apply", "run", i+1, "mappings", o.mappings, "first_s", last(f.First), "same_s", last(f.Same), "change_s", last(f.Change),
			"rules", total(f.Rules), "addresses", f.Addresses)
	}
	if len(f.First.Samples) == 0 && f.First.Err != "" {
		why := fmt.Errorf("not measured: adding the %s mappings failed", thousands(o.mappings))
		f.Same.note(why)
		f.Change.note(why)
	}
	f.Check = strings.Join(checks, "; ")
	// Removing the mappings and the networks is not timed; the namespace goes anyway.
	return f
}

// applyStates returns the admin's State without mappings, with n mappings each
// forwarding basePorts, and the same with the middle mapping forwarding changedPorts.
// Mapping i maps 198.18.<1+i/250>.<2+i%250> to 10.1.<1+i/250>.<2+i%250>.
func applyStates(n int) (base, full, changed vnet.State, err error) {
	if n < 1 || n > 250*hostsPerNet {
		return base, full, changed, fmt.Errorf("-mappings %d: give 1 to %d", n, 250*hostsPerNet)
	}
	ports, err := vnet.ParsePorts(basePorts)
	if err != nil {
		return base, full, changed, err
	}
	more, err := vnet.ParsePorts(changedPorts)
	if err != nil {
		return base, full, changed, err
	}
	base = vnet.State{Uplink: "up0"}
	for k := range (n + hostsPerNet - 1) / hostsPerNet {
		base.Networks = append(base.Networks, vnet.Network{
			ID: k + 1, Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(k + 1), 0}), 24), Gateway: true,
		})
	}
	full = base
	for i := range n {
		net, host := byte(1+i/hostsPerNet), byte(2+i%hostsPerNet)
		full.Mappings = append(full.Mappings, vnet.Mapping{
			External: netip.AddrFrom4([4]byte{198, 18, net, host}),
			Internal: netip.AddrFrom4([4]byte{10, 1, net, host}),
			Ports:    ports,
		})
	}
	changed = full
	changed.Mappings = append([]vnet.Mapping(nil), full.Mappings...)
	changed.Mappings[n/2].Ports = more
	if err := full.Validate(); err != nil {
		return base, full, changed, err
	}
	return base, full, changed, nil
}

// externalAddresses counts the addresses labelled "up0:cairn" in ns.
func externalAddresses(ctx context.Context, ns string) (int, error) {
	out, err := ip(ctx, "-n", ns, "-4", "-o", "addr", "show", "dev", "up0")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, " up0:cairn") {
			n++
		}
	}
	return n, nil
}
