package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/cairn-os/cairn/supervisor/apiclient"
	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/spf13/cobra"
)

func (a *app) networksCmd() *cobra.Command {
	cmd := group("networks", "Internal networks: a private /24 each, with DHCP and a gateway on the admin")
	cmd.AddCommand(a.command("list", "List your networks (admins: all) with the connections on each", exactArgs(),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			nets, err := c.Networks(ctx)
			if err != nil {
				return err
			}
			conns, err := c.Connections(ctx)
			if err != nil {
				return err
			}
			names := userNames(ctx, c)
			return printList(a, nets, []string{"ID", "NAME", "KIND", "PREFIX", "GATEWAY", "DNS", "OWNER", "CONNECTIONS"}, func(n engine.Network) []string {
				return []string{strconv.Itoa(n.ID), n.Name, string(n.Kind), orDash(n.Prefix), orDash(n.Gateway), dnsText(n.DNS),
					nameOf(names, n.Owner), strconv.Itoa(len(connectionsOn(conns, n.ID)))}
			})
		}))
	cmd.AddCommand(a.command("show ID", "Show a network (by number or name) and the connections on it", exactArgs("ID"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			id, err := networkID(ctx, c, args[0])
			if err != nil {
				return err
			}
			n, err := c.Network(ctx, id)
			if err != nil {
				return err
			}
			conns, err := c.Connections(ctx)
			if err != nil {
				return err
			}
			return printNetwork(a, n, connectionsOn(conns, n.ID), userNames(ctx, c))
		}))
	var prefix string
	var dns []string
	create := a.command("create NAME", "Create an internal network: --prefix, or the next free /24 inside 10.0.0.0/8", exactArgs("NAME"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			n, err := c.CreateNetwork(ctx, engine.NetworkRequest{Name: args[0], Prefix: prefix, DNS: dns})
			if err != nil {
				return err
			}
			return printNetwork(a, n, nil, nil)
		})
	create.Example = "  cairn networks create lab\n  cairn networks create office --prefix 10.20.30.0/24 --dns 9.9.9.9,1.1.1.1"
	create.Flags().StringVar(&prefix, "prefix", "", "the /24 to use, like 10.1.2.0/24 (default: the next free one)")
	create.Flags().StringSliceVar(&dns, "dns", nil, "name servers DHCP hands out, up to 3 (default: the engine's)")
	cmd.AddCommand(create)
	cmd.AddCommand(a.command("rename ID NAME", "Rename a network", exactArgs("ID", "NAME"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			id, err := networkID(ctx, c, args[0])
			if err != nil {
				return err
			}
			n, err := c.UpdateNetwork(ctx, id, engine.NetworkUpdate{Name: &args[1]})
			if err != nil {
				return err
			}
			return printNetwork(a, n, nil, nil)
		}))
	cmd.AddCommand(a.command("dns ID [ADDRESS...]", "Set the name servers a network hands out; none for the engine's", rangeArgs(1, "ID", "ADDRESS", "ADDRESS", "ADDRESS"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			id, err := networkID(ctx, c, args[0])
			if err != nil {
				return err
			}
			list := splitList(strings.Join(args[1:], ","))
			if list == nil {
				list = []string{}
			}
			n, err := c.UpdateNetwork(ctx, id, engine.NetworkUpdate{DNS: &list})
			if err != nil {
				return err
			}
			return printNetwork(a, n, nil, nil)
		}))
	cmd.AddCommand(a.command("delete ID", "Delete a network no connection is on", exactArgs("ID"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			id, err := networkID(ctx, c, args[0])
			if err != nil {
				return err
			}
			if err := c.DeleteNetwork(ctx, id); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Deleted network %d\n", id)
			return nil
		}))
	return cmd
}

// networkID reads a network's number, or finds the one network with that name.
func networkID(ctx context.Context, c *apiclient.Client, s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 {
			return 0, usageErr("network %d: networks are numbered from 1", n)
		}
		return n, nil
	}
	nets, err := c.Networks(ctx)
	if err != nil {
		return 0, err
	}
	var found []int
	for _, n := range nets {
		if n.Name == s {
			found = append(found, n.ID)
		}
	}
	switch len(found) {
	case 0:
		return 0, &exitErr{code: exitNotFound, err: fmt.Errorf("network %q not found: give its number or name (see `cairn networks list`)", s)}
	case 1:
		return found[0], nil
	}
	return 0, usageErr("%d networks are named %q (numbers %s): give the number", len(found), s, joinInts(found))
}

// connectionsOn are the connections on network id.
func connectionsOn(conns []engine.Connection, id int) []engine.Connection {
	out := []engine.Connection{}
	for _, c := range conns {
		if c.Network == id {
			out = append(out, c)
		}
	}
	return out
}

// dnsText is a network's name servers, or "default" for the engine's.
func dnsText(dns []string) string {
	if len(dns) == 0 {
		return "default"
	}
	return strings.Join(dns, ", ")
}

// nameOf is user id's name from names, or the ID.
func nameOf(names map[string]string, id string) string {
	if n, ok := names[id]; ok && n != "" {
		return n
	}
	return orDash(id)
}

func joinInts(ns []int) string {
	parts := make([]string, len(ns))
	for i, n := range ns {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, ", ")
}

func printNetwork(a *app, n engine.Network, conns []engine.Connection, names map[string]string) error {
	on := make([]string, 0, len(conns))
	for _, c := range conns {
		on = append(on, c.ID+" "+c.Address)
	}
	fields := [][2]string{
		{"id", strconv.Itoa(n.ID)},
		{"name", n.Name},
		{"kind", string(n.Kind)},
		{"prefix", orDash(n.Prefix)},
		{"gateway", orDash(n.Gateway)},
		{"dns", dnsText(n.DNS)},
		{"owner", nameOf(names, n.Owner)},
	}
	if conns != nil {
		fields = append(fields, [2]string{"connections", listOrDash(on)})
	}
	fields = append(fields, [2]string{"created", n.CreatedAt.Local().Format("2006-01-02 15:04:05")})
	return printObject(a, n, fields)
}
