package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/spf13/cobra"
)

func (a *app) engineCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "engine",
		Short: "Describe the engine: URL, CA fingerprint, node totals",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			info, err := c.Engine(cmd.Context())
			if err != nil {
				return err
			}
			fields := [][2]string{
				{"name", info.Name},
				{"version", orDash(info.Version)},
				{"url", orDash(info.URL)},
				{"ca fingerprint", info.CAFingerprint},
				{"started", info.StartedAt.Local().Format("2006-01-02 15:04:05")},
				{"nodes", fmt.Sprintf("%d ready of %d", info.NodesReady, info.NodesTotal)},
				{"cpus", strconv.Itoa(info.CPUsTotal)},
				{"memory", fmt.Sprintf("%s free of %s", bytesText(info.MemoryFreeBytes), bytesText(info.MemoryBytesTotal))},
			}
			for _, w := range info.Settings {
				fields = append(fields, [2]string{"warning", w})
			}
			return printObject(a, info, fields)
		},
	}
}

func (a *app) nodesCmd() *cobra.Command {
	cmd := group("nodes", "List and manage the engine's nodes")
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the nodes",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			nodes, err := c.Nodes(cmd.Context())
			if err != nil {
				return err
			}
			return printList(a, nodes, []string{"ID", "NAME", "STATE", "ADDRESS", "CPUS", "MEMORY", "FREE", "LOAD", "SEEN"}, func(n engine.Node) []string {
				return []string{n.ID, n.Name, string(n.State), orDash(n.Address), strconv.Itoa(n.CPUs),
					bytesText(n.MemoryBytes), bytesText(n.MemoryFreeBytes), fmt.Sprintf("%.2f", n.Load1), ago(n.LastSeen)}
			})
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "show ID",
		Short: "Show a node",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			n, err := c.Node(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printNode(a, n)
		},
	})
	for _, v := range []struct {
		use, short string
		on         bool
	}{
		{"maintenance ID", "Put a node into maintenance (admins)", true},
		{"ready ID", "Take a node out of maintenance (admins)", false},
	} {
		cmd.AddCommand(&cobra.Command{
			Use:   v.use,
			Short: v.short,
			Args:  exactArgs("ID"),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := a.client()
				if err != nil {
					return err
				}
				n, err := c.SetNodeMaintenance(cmd.Context(), args[0], v.on)
				if err != nil {
					return err
				}
				return printNode(a, n)
			},
		})
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "rename ID NAME",
		Short: "Rename a node; the name stays over its reboots (admins)",
		Args:  exactArgs("ID", "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			n, err := c.UpdateNode(cmd.Context(), args[0], engine.NodeUpdate{Name: &args[1]})
			if err != nil {
				return err
			}
			return printNode(a, n)
		},
	})
	return cmd
}

func printNode(a *app, n engine.Node) error {
	disks := make([]string, 0, len(n.Disks))
	for _, d := range n.Disks {
		disks = append(disks, fmt.Sprintf("%s %s", d.Name, bytesText(d.SizeBytes)))
	}
	return printObject(a, n, [][2]string{
		{"id", n.ID},
		{"name", n.Name},
		{"state", string(n.State)},
		{"roles", strings.Join(n.Roles, ", ")},
		{"mac", orDash(n.MAC)},
		{"address", orDash(n.Address)},
		{"cpus", strconv.Itoa(n.CPUs)},
		{"memory", fmt.Sprintf("%s free of %s", bytesText(n.MemoryFreeBytes), bytesText(n.MemoryBytes))},
		{"load", fmt.Sprintf("%.2f", n.Load1)},
		{"kvm", strconv.FormatBool(n.KVM)},
		{"libvirt", orDash(n.Libvirt)},
		{"disks", orDash(strings.Join(disks, ", "))},
		{"version", orDash(n.Version)},
		{"joined", n.JoinedAt.Local().Format("2006-01-02 15:04:05")},
		{"last seen", ago(n.LastSeen)},
	})
}

func (a *app) servicesCmd() *cobra.Command {
	cmd := group("services", "The supervisor's services")
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the services and their state",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			svcs, err := c.Services(cmd.Context())
			if err != nil {
				return err
			}
			return printList(a, svcs, []string{"NAME", "STATE", "PID", "RESTARTS", "MESSAGE"}, func(s engine.ServiceStatus) []string {
				return []string{s.Name, string(s.State), strconv.Itoa(s.PID), strconv.Itoa(s.Restarts), orDash(s.Message)}
			})
		},
	})
	return cmd
}

func (a *app) usersCmd() *cobra.Command {
	cmd := group("users", "List and manage users (admins)")
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the users",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			users, err := c.Users(cmd.Context())
			if err != nil {
				return err
			}
			return printList(a, users, []string{"ID", "NAME", "ROLE", "CREATED"}, func(u engine.User) []string {
				return []string{u.ID, u.Name, string(u.Role), u.CreatedAt.Local().Format("2006-01-02 15:04")}
			})
		},
	})
	var role string
	var passwordStdin bool
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a user",
		Args:  exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var password string
			switch {
			case passwordStdin:
				line, err := bufio.NewReader(a.stdin).ReadString('\n')
				if err != nil && !errors.Is(err, io.EOF) {
					return fmt.Errorf("read password from stdin: %w", err)
				}
				password = strings.TrimRight(line, "\r\n")
			case isTerminal(a.stdin):
				if password, err = readPassword(a.stdin, a.stderr, fmt.Sprintf("Password for %s: ", args[0])); err != nil {
					return err
				}
			default:
				return usageErr("stdin is not a terminal: pass the password with --password-stdin")
			}
			u, err := c.CreateUser(cmd.Context(), args[0], password, engine.Role(role))
			if err != nil {
				return err
			}
			return printObject(a, u, [][2]string{{"id", u.ID}, {"name", u.Name}, {"role", string(u.Role)}})
		},
	}
	create.Flags().StringVar(&role, "role", "user", "admin, user or readonly")
	create.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password from the first line of stdin")
	cmd.AddCommand(create)
	cmd.AddCommand(&cobra.Command{
		Use:   "delete ID",
		Short: "Delete a user (by ID or name) with their tokens",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.DeleteUser(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Deleted user %s\n", args[0])
			return nil
		},
	})
	return cmd
}
