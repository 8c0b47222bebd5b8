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

// portsHint is how a mapping's port list is written.
const portsHint = "TCP ports (udp/53 for UDP), each only from a source address or prefix when one comes before a colon: 80,443,udp/53,192.168.0.0/16:445"

func (a *app) connectionsCmd() *cobra.Command {
	cmd := group("connections", "Connections: a server's network interfaces, internal, external (an uplink address) or mapping (1:1 NAT)")
	cmd.AddCommand(a.command("list", "List your connections (admins: all)", exactArgs(),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			conns, err := c.Connections(ctx)
			if err != nil {
				return err
			}
			servers := serverNames(ctx, c)
			names := userNames(ctx, c)
			return printList(a, conns, []string{"ID", "NAME", "KIND", "NETWORK", "ADDRESS", "EXTERNAL", "PORTS", "SERVER", "OWNER"}, func(x engine.Connection) []string {
				return []string{x.ID, x.Name, string(x.Kind), strconv.Itoa(x.Network), orDash(x.Address), orDash(x.External),
					portsText(x), serverText(servers, x.Server), nameOf(names, x.Owner)}
			})
		}))
	cmd.AddCommand(a.command("show ID", "Show a connection (by ID or name)", exactArgs("ID"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			id, err := connID(ctx, c, args[0])
			if err != nil {
				return err
			}
			x, err := c.Connection(ctx, id)
			if err != nil {
				return err
			}
			return printConnection(a, x, serverNames(ctx, c), userNames(ctx, c))
		}))
	cmd.AddCommand(a.connectionCreateCmd())
	cmd.AddCommand(a.command("attach ID SERVER", "Attach a connection to a server (hot-plugged into a running one)", exactArgs("ID", "SERVER"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			id, err := connID(ctx, c, args[0])
			if err != nil {
				return err
			}
			x, err := c.AttachConnection(ctx, id, args[1])
			if err != nil {
				return err
			}
			return printConnection(a, x, serverNames(ctx, c), nil)
		}))
	cmd.AddCommand(a.command("detach ID", "Detach a connection from its server; it keeps its addresses", exactArgs("ID"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			id, err := connID(ctx, c, args[0])
			if err != nil {
				return err
			}
			x, err := c.DetachConnection(ctx, id)
			if err != nil {
				return err
			}
			return printConnection(a, x, nil, nil)
		}))
	ports := a.command("ports ID LIST", "Limit a mapping to a port list; \"\" forwards all ports", exactArgs("ID", "LIST"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			id, err := connID(ctx, c, args[0])
			if err != nil {
				return err
			}
			x, err := c.UpdateConnection(ctx, id, engine.ConnectionUpdate{Ports: &args[1]})
			if err != nil {
				return err
			}
			return printConnection(a, x, nil, nil)
		})
	ports.Long = "Limit a mapping connection to a port list: " + portsHint + ".\nAn empty list (\"\") forwards all ports."
	ports.Example = "  cairn connections ports web-public 80,443,192.168.0.0/16:445\n  cairn connections ports web-public \"\""
	cmd.AddCommand(ports)
	cmd.AddCommand(a.command("rename ID NAME", "Rename a connection", exactArgs("ID", "NAME"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			id, err := connID(ctx, c, args[0])
			if err != nil {
				return err
			}
			x, err := c.UpdateConnection(ctx, id, engine.ConnectionUpdate{Name: &args[1]})
			if err != nil {
				return err
			}
			return printConnection(a, x, nil, nil)
		}))
	cmd.AddCommand(a.command("delete ID", "Delete a connection (unplugged from its server first); its addresses are free again", exactArgs("ID"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			id, err := connID(ctx, c, args[0])
			if err != nil {
				return err
			}
			if err := c.DeleteConnection(ctx, id); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Deleted connection %s\n", id)
			return nil
		}))
	return cmd
}

func (a *app) connectionCreateCmd() *cobra.Command {
	var req engine.ConnectionRequest
	var kind, network string
	var cmd *cobra.Command
	cmd = a.command("create [NAME]", "Create a connection, optionally attached to a --server", rangeArgs(0, "NAME"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			if len(args) == 1 {
				req.Name = args[0]
			}
			req.Kind = engine.ConnectionKind(kind)
			switch req.Kind {
			case engine.ConnInternal, engine.ConnMapping:
				if network == "" {
					return usageErr("a%s %s connection is on an internal network: give --network (see `cairn networks list`)", article(kind), kind)
				}
			case engine.ConnExternal:
				if network != "" {
					return usageErr("an external connection is on your external segment: leave out --network")
				}
			default:
				return usageErr("--kind %q: give internal, external or mapping", kind)
			}
			if network != "" {
				id, err := networkID(ctx, c, network)
				if err != nil {
					return err
				}
				req.Network = id
			}
			x, err := c.CreateConnection(ctx, req)
			if err != nil {
				return err
			}
			return printConnection(a, x, serverNames(ctx, c), nil)
		})
	cmd.Example = "  cairn connections create lan --kind internal --network lab --server web1\n" +
		"  cairn connections create public --kind external\n" +
		"  cairn connections create web-public --kind mapping --network lab --ports 80,443,192.168.0.0/16:445 --server web1"
	f := cmd.Flags()
	f.StringVar(&kind, "kind", "", "internal (an address on a network), external (an uplink address) or mapping (an internal address behind an external one)")
	f.StringVar(&network, "network", "", "the internal network, by number or name (internal and mapping)")
	f.StringVar(&req.Address, "address", "", "the server's address: on the network, or for external, from the uplink's range (default: the next free one)")
	f.StringVar(&req.External, "external", "", "a mapping's external address (default: the next free one)")
	f.StringVar(&req.Ports, "ports", "", "a mapping's port list: "+portsHint+" (default: all ports)")
	f.StringVar(&req.Server, "server", "", "attach the connection to this server (ID or name)")
	cmd.MarkFlagRequired("kind")
	return cmd
}

// connID finds a connection by ID, or the one connection with that name.
func connID(ctx context.Context, c *apiclient.Client, s string) (string, error) {
	conns, err := c.Connections(ctx)
	if err != nil {
		return "", err
	}
	var found []string
	for _, x := range conns {
		if x.ID == s {
			return s, nil
		}
		if x.Name == s {
			found = append(found, x.ID)
		}
	}
	switch len(found) {
	case 0:
		return "", &exitErr{code: exitNotFound, err: fmt.Errorf("connection %q not found: give its ID or name (see `cairn connections list`)", s)}
	case 1:
		return found[0], nil
	}
	return "", usageErr("%d connections are named %q (%s): give the ID", len(found), s, strings.Join(found, ", "))
}

// serverNames maps server IDs to names; empty when the servers cannot be listed.
func serverNames(ctx context.Context, c *apiclient.Client) map[string]string {
	names := map[string]string{}
	servers, err := c.Servers(ctx)
	if err != nil {
		return names
	}
	for _, s := range servers {
		names[s.ID] = s.Name
	}
	return names
}

// serverText is "web1 (s-abc)", the ID alone when the name is not known, or "-".
func serverText(names map[string]string, id string) string {
	if id == "" {
		return "-"
	}
	if n := names[id]; n != "" {
		return n + " (" + id + ")"
	}
	return id
}

// portsText is a mapping's port list, "all" for none; "-" for other kinds.
func portsText(x engine.Connection) string {
	switch {
	case x.Kind != engine.ConnMapping:
		return "-"
	case x.Ports == "":
		return "all"
	}
	return x.Ports
}

func article(word string) string {
	if strings.ContainsAny(word[:1], "aeiou") {
		return "n"
	}
	return ""
}

func printConnection(a *app, x engine.Connection, servers, names map[string]string) error {
	return printObject(a, x, [][2]string{
		{"id", x.ID},
		{"name", x.Name},
		{"kind", string(x.Kind)},
		{"network", strconv.Itoa(x.Network)},
		{"mac", x.MAC},
		{"address", orDash(x.Address)},
		{"external", orDash(x.External)},
		{"ports", portsText(x)},
		{"server", serverText(servers, x.Server)},
		{"owner", nameOf(names, x.Owner)},
		{"created", x.CreatedAt.Local().Format("2006-01-02 15:04:05")},
	})
}
