package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"

	"github.com/cairn-os/cairn/supervisor/hostcmd"
	"github.com/cairn-os/cairn/supervisor/vnet"
	"github.com/vishvananda/netns"
)

// site is the run's network namespaces. Every namespace it makes is named
// cbnet-<run>-<role> and removed by close, in the reverse order of the steps.
type site struct {
	log *slog.Logger
	// id is the run's random part of the names.
	id    string
	undos []func()
}

func newSite(log *slog.Logger) *site {
	return &site{log: log, id: randomHex(3)}
}

// close undoes every step, newest first. It runs on a context of its own, so that an
// interrupted run still cleans up.
func (s *site) close() {
	for i := len(s.undos) - 1; i >= 0; i-- {
		s.undos[i]()
	}
	s.undos = nil
}

// onClose registers an undo.
func (s *site) onClose(f func()) { s.undos = append(s.undos, f) }

// netns makes the namespace of role with loopback up and returns its name.
func (s *site) netns(ctx context.Context, role string) (string, error) {
	name := "cbnet-" + s.id + "-" + role
	if _, err := ip(ctx, "netns", "add", name); err != nil {
		return "", err
	}
	s.onClose(func() {
		if _, err := ip(context.Background(), "netns", "del", name); err != nil {
			s.log.Warn("remove namespace", "netns", name, "err", err)
		}
	})
	if _, err := ip(ctx, "-n", name, "link", "set", "lo", "up"); err != nil {
		return "", err
	}
	return name, nil
}

// veth joins nsA and nsB with a veth pair made inside nsA (never in the host's own
// namespace), puts the addresses given on its ends and brings both up.
func veth(ctx context.Context, nsA, ifA, cidrA, nsB, ifB, cidrB string) error {
	if _, err := ip(ctx, "-n", nsA, "link", "add", ifA, "type", "veth", "peer", "name", ifB, "netns", nsB); err != nil {
		return err
	}
	for _, c := range [][3]string{{nsA, ifA, cidrA}, {nsB, ifB, cidrB}} {
		if c[2] != "" {
			if _, err := ip(ctx, "-n", c[0], "addr", "add", c[2], "dev", c[1]); err != nil {
				return err
			}
		}
		if _, err := ip(ctx, "-n", c[0], "link", "set", c[1], "up"); err != nil {
			return err
		}
	}
	return nil
}

// ip runs ip(8).
func ip(ctx context.Context, args ...string) (string, error) {
	out, err := hostcmd.Exec{}.Run(ctx, "ip", args...)
	return string(out), err
}

// apply runs vnet's Apply in the namespace called ns, logging nothing.
func apply(ctx context.Context, ns string, st vnet.State) error {
	h, err := netns.GetFromName(ns)
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", ns, err)
	}
	defer h.Close()
	return (&vnet.Node{NS: h, Logger: slog.New(slog.DiscardHandler)}).Apply(ctx, st)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
