package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-os/cairn/supervisor/apiclient"
	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/spf13/cobra"
)

func (a *app) serversCmd() *cobra.Command {
	cmd := group("servers", "Create, run and manage servers (virtual machines)")
	cmd.AddCommand(a.command("list", "List your servers (admins: all)", exactArgs(),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			servers, err := c.Servers(ctx)
			if err != nil {
				return err
			}
			return printList(a, servers, []string{"ID", "NAME", "STATE", "NODE", "VCPUS", "MEMORY", "DISKS", "ADDRESSES", "AUTOSTART"}, func(s engine.Server) []string {
				return []string{s.ID, s.Name, string(s.State), orDash(s.Node), strconv.Itoa(s.VCPUs),
					bytesText(uint64(s.MemoryMiB) << 20), strconv.Itoa(len(s.Disks)), listOrDash(addresses(s)), yesNo(s.Autostart)}
			})
		}))
	cmd.AddCommand(a.command("show ID", "Show a server (by ID or name)", exactArgs("ID"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			s, err := c.Server(ctx, args[0])
			if err != nil {
				return err
			}
			return printServer(a, s)
		}))
	cmd.AddCommand(a.serverCreateCmd())
	for _, v := range []struct{ action, short string }{
		{"start", "Place a server on a node and start it"},
		{"stop", "Force a server off, like pulling the plug"},
		{"reboot", "Ask a server to reboot (ACPI)"},
		{"suspend", "Pause a running server in memory"},
		{"resume", "Resume a suspended server"},
	} {
		cmd.AddCommand(a.command(v.action+" ID", v.short, exactArgs("ID"),
			func(ctx context.Context, c *apiclient.Client, args []string) error {
				s, err := c.ServerAction(ctx, args[0], v.action)
				if err != nil {
					return err
				}
				return printServer(a, s)
			}))
	}
	cmd.AddCommand(a.serverShutdownCmd())
	cmd.AddCommand(a.serverDeleteCmd())

	var bus string
	attach := a.command("attach-disk ID IMAGE", "Attach an image as a disk (hot-plugged when the server runs)", exactArgs("ID", "IMAGE"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			s, err := c.AttachDisk(ctx, args[0], engine.ServerDiskRequest{Image: args[1], Bus: bus})
			if err != nil {
				return err
			}
			return printServer(a, s)
		})
	attach.Flags().StringVar(&bus, "bus", "", "disk bus: virtio (default), scsi or ide")
	cmd.AddCommand(attach)
	cmd.AddCommand(a.command("detach-disk ID INDEX", "Detach a disk by its index (from `cairn servers show`); the image stays", exactArgs("ID", "INDEX"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			i, err := strconv.Atoi(args[1])
			if err != nil || i < 0 {
				return usageErr("disk index %q: give the disk's number from 0, as `cairn servers show %s` lists them", args[1], args[0])
			}
			s, err := c.DetachDisk(ctx, args[0], i)
			if err != nil {
				return err
			}
			return printServer(a, s)
		}))
	cmd.AddCommand(a.command("cdrom ID ISO", "Put an ISO image into the server's CD-ROM drive", exactArgs("ID", "ISO"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			s, err := c.InsertCDROM(ctx, args[0], args[1])
			if err != nil {
				return err
			}
			return printServer(a, s)
		}))
	cmd.AddCommand(a.command("eject ID", "Eject the server's CD-ROM", exactArgs("ID"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			s, err := c.EjectCDROM(ctx, args[0])
			if err != nil {
				return err
			}
			return printServer(a, s)
		}))
	var noWait bool
	migrate := a.command("migrate ID NODE", "Move a running server to another node without stopping it", exactArgs("ID", "NODE"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			op, err := c.MigrateServer(ctx, args[0], args[1])
			if err != nil {
				return err
			}
			return a.finishOp(ctx, c, op, noWait)
		})
	noWaitFlag(migrate, &noWait)
	cmd.AddCommand(migrate)
	cmd.AddCommand(a.serverUpdateCmd())
	cmd.AddCommand(a.consoleCmd())
	return cmd
}

// parseDisk reads --disk IMAGE[:bus][,clone][,node=N].
func parseDisk(s string) (engine.ServerDiskRequest, error) {
	parts := strings.Split(s, ",")
	image, bus, _ := strings.Cut(parts[0], ":")
	d := engine.ServerDiskRequest{Image: image, Bus: bus}
	if d.Image == "" {
		return d, usageErr("--disk %q: start with the image, like --disk debian:virtio,clone", s)
	}
	for _, p := range parts[1:] {
		switch k, v, _ := strings.Cut(p, "="); k {
		case "clone":
			d.Clone = true
		case "node":
			if v == "" {
				return d, usageErr("--disk %q: node= names the node whose local storage gets the clone", s)
			}
			d.Clone, d.CloneNode = true, v
		default:
			return d, usageErr("--disk %q: %q is not an option; use IMAGE[:bus][,clone][,node=N]", s, p)
		}
	}
	return d, nil
}

// splitList reads "disk,cdrom" as a list.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (a *app) serverCreateCmd() *cobra.Command {
	var req engine.ServerRequest
	var memory, boot string
	var disks []string
	var cmd *cobra.Command
	cmd = a.command("create NAME", "Create a server from images, or from masters it clones", exactArgs("NAME"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			req.Name = args[0]
			mib, err := parseMemoryMiB(memory)
			if err != nil {
				return usageErr("%v", err)
			}
			req.MemoryMiB = mib
			if len(disks) > engine.MaxDisks {
				return usageErr("%d --disk flags: a server has at most %d disks", len(disks), engine.MaxDisks)
			}
			req.Disks = nil
			for _, s := range disks {
				d, err := parseDisk(s)
				if err != nil {
					return err
				}
				req.Disks = append(req.Disks, d)
			}
			req.Boot = splitList(boot)
			if len(req.Connections) > 0 && !cmd.Flags().Changed("nics") {
				// Connections are the server's NICs; no user-mode placeholder besides.
				req.NICs = 0
			}
			s, err := c.CreateServer(ctx, req)
			if err != nil {
				return err
			}
			return printServer(a, s)
		})
	cmd.Example = "  cairn servers create web1 --vcpus 2 --memory 2G --disk debian-master,clone --start\n" +
		"  cairn servers create inst --memory 1024 --disk blank:virtio --cdrom debian.iso --boot cdrom,disk"
	f := cmd.Flags()
	f.IntVar(&req.VCPUs, "vcpus", 1, "virtual CPUs")
	f.StringVar(&memory, "memory", "1G", "memory: MiB (1024) or a size (512M, 2G)")
	f.StringArrayVar(&disks, "disk", nil, "a disk, IMAGE[:bus][,clone][,node=N] (up to 4; bus virtio, scsi or ide; clone makes a child of a master, node=N on that node's local storage)")
	f.StringVar(&req.CDROM, "cdrom", "", "an ISO image for the CD-ROM drive")
	f.IntVar(&req.NICs, "nics", 1, "placeholder network interfaces with user-mode networking (default 0 with --connection)")
	f.StringArrayVar(&req.Connections, "connection", nil, "attach this connection (ID) as a NIC; repeat for more (see `cairn connections`)")
	f.StringVar(&boot, "boot", "", "boot order, like disk,cdrom,network")
	f.BoolVar(&req.Autostart, "autostart", false, "start the server whenever its node comes up")
	f.StringVar(&req.LockNode, "lock-node", "", "keep the server on this node")
	f.BoolVar(&req.Start, "start", false, "start the server once it is created")
	return cmd
}

func (a *app) serverShutdownCmd() *cobra.Command {
	var timeout time.Duration
	var force, noWait bool
	cmd := a.command("shutdown ID", "Press the server's power button (ACPI) and wait until it is off", exactArgs("ID"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			if timeout < 0 || timeout%time.Second != 0 {
				return usageErr("--timeout %s: give whole seconds, like 90s or 2m", timeout)
			}
			op, err := c.ShutdownServer(ctx, args[0], timeout)
			if err != nil {
				return err
			}
			if noWait {
				return a.finishOp(ctx, c, op, true)
			}
			end, err := a.waitOp(ctx, c, op)
			if err != nil {
				return err
			}
			if end.State != engine.OpFailed {
				return a.reportOp(end)
			}
			within := ""
			if timeout > 0 {
				within = " within " + timeout.String()
			} else if st, err := c.Settings(ctx); err == nil {
				within = fmt.Sprintf(" within %ds (the engine's shutdown timeout)", st.ShutdownTimeoutSeconds)
			}
			if !force {
				why := ""
				if !strings.Contains(end.Error, "did not power off") {
					why = ": " + end.Error
				}
				return fmt.Errorf("server %s did not power off%s%s\n  force it off with: cairn servers stop %s\n  (or let shutdown do that: --force-after-timeout)", args[0], within, why, args[0])
			}
			fmt.Fprintf(a.stderr, "Server %s did not power off%s; forcing it off (--force-after-timeout).\n", args[0], within)
			s, err := c.ServerAction(ctx, args[0], "stop")
			if err != nil {
				return fmt.Errorf("force server %s off: %w", args[0], err)
			}
			return printServer(a, s)
		})
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "how long the guest may take to power off (default: the engine's setting)")
	cmd.Flags().BoolVar(&force, "force-after-timeout", false, "force the server off when it has not powered off in time")
	noWaitFlag(cmd, &noWait)
	return cmd
}

func (a *app) serverDeleteCmd() *cobra.Command {
	var deleteDisks bool
	cmd := a.command("delete ID", "Delete a shut-off server; its disk images stay unless --delete-disks", exactArgs("ID"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			s, err := c.Server(ctx, args[0])
			if err != nil {
				return err
			}
			kept, err := c.DeleteServer(ctx, s.ID, deleteDisks)
			if err != nil {
				return err
			}
			if !deleteDisks {
				kept = nil
				for _, d := range s.Disks {
					kept = append(kept, d.Image)
				}
			}
			if a.output == "json" {
				return printJSON(a.stdout, map[string]any{"deleted": s.ID, "kept": append([]string{}, kept...)})
			}
			fmt.Fprintf(a.stdout, "Deleted server %s (%s)\n", s.Name, s.ID)
			switch {
			case len(kept) == 0:
			case deleteDisks:
				fmt.Fprintln(a.stdout, "Kept disk images:")
				for _, k := range kept {
					fmt.Fprintf(a.stdout, "  %s\n", k)
				}
			default:
				fmt.Fprintf(a.stdout, "Kept its disk images: %s (delete them with `cairn images delete ID`)\n", strings.Join(kept, ", "))
			}
			return nil
		})
	cmd.Flags().BoolVar(&deleteDisks, "delete-disks", false, "delete the server's disk images too (masters and images other servers use stay)")
	return cmd
}

func (a *app) serverUpdateCmd() *cobra.Command {
	var name, memory, boot, lockNode string
	var vcpus int
	var autostart bool
	var cmd *cobra.Command
	cmd = a.command("update ID", "Change a server's name, size, boot order, autostart or node lock (sizes at its next start)", exactArgs("ID"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			var upd engine.ServerUpdate
			changed := false
			set := cmd.Flags().Changed
			if set("name") {
				upd.Name, changed = &name, true
			}
			if set("vcpus") {
				upd.VCPUs, changed = &vcpus, true
			}
			if set("memory") {
				mib, err := parseMemoryMiB(memory)
				if err != nil {
					return usageErr("%v", err)
				}
				upd.MemoryMiB, changed = &mib, true
			}
			if set("boot") {
				b := splitList(boot)
				upd.Boot, changed = &b, true
			}
			if set("autostart") {
				upd.Autostart, changed = &autostart, true
			}
			if set("lock-node") {
				upd.LockNode, changed = &lockNode, true
			}
			if !changed {
				return usageErr("nothing to change: give --name, --vcpus, --memory, --boot, --autostart or --lock-node")
			}
			s, err := c.UpdateServer(ctx, args[0], upd)
			if err != nil {
				return err
			}
			return printServer(a, s)
		})
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "new name")
	f.IntVar(&vcpus, "vcpus", 0, "virtual CPUs")
	f.StringVar(&memory, "memory", "", "memory: MiB or a size (512M, 2G)")
	f.StringVar(&boot, "boot", "", "boot order, like disk,cdrom,network")
	f.BoolVar(&autostart, "autostart", false, "--autostart=true or --autostart=false")
	f.StringVar(&lockNode, "lock-node", "", "keep the server on this node; \"\" unlocks it")
	return cmd
}

func printServer(a *app, s engine.Server) error {
	disks := make([]string, 0, len(s.Disks))
	for i, d := range s.Disks {
		disks = append(disks, fmt.Sprintf("%d: %s (%s)", i, d.Image, d.Bus))
	}
	nics := make([]string, 0, len(s.NICs))
	for _, n := range s.NICs {
		nics = append(nics, nicText(n))
	}
	state := string(s.State)
	if s.Reason != "" {
		state += " (" + s.Reason + ")"
	}
	return printObject(a, s, [][2]string{
		{"id", s.ID},
		{"name", s.Name},
		{"state", state},
		{"node", orDash(s.Node)},
		{"vcpus", strconv.Itoa(s.VCPUs)},
		{"memory", bytesText(uint64(s.MemoryMiB) << 20)},
		{"disks", listOrDash(disks)},
		{"cdrom", orDash(s.CDROM)},
		{"nics", listOrDash(nics)},
		{"boot", listOrDash(s.Boot)},
		{"autostart", yesNo(s.Autostart)},
		{"lock node", orDash(s.LockNode)},
		{"created", s.CreatedAt.Local().Format("2006-01-02 15:04:05")},
	})
}

// nicText is one NIC: "52:54:00:12:34:56 internal 10.1.2.10 (c-abc, network 3)",
// with "→ 198.51.100.7" for a mapping; a placeholder is its MAC and model.
func nicText(n engine.ServerNIC) string {
	if n.Connection == "" {
		return fmt.Sprintf("%s %s (user-mode)", n.MAC, n.Model)
	}
	s := fmt.Sprintf("%s %s %s", n.MAC, n.Kind, orDash(n.Address))
	if n.External != "" {
		s += " → " + n.External
	}
	return fmt.Sprintf("%s (%s, network %d)", s, n.Connection, n.Network)
}

// addresses are a server's addresses: "10.1.2.10", "10.1.2.11→198.51.100.7".
func addresses(s engine.Server) []string {
	var out []string
	for _, n := range s.NICs {
		switch {
		case n.Address != "" && n.External != "":
			out = append(out, n.Address+"→"+n.External)
		case n.Address != "":
			out = append(out, n.Address)
		}
	}
	return out
}
