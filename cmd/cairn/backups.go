package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/cairn-os/cairn/supervisor/apiclient"
	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/spf13/cobra"
)

func (a *app) backupsCmd() *cobra.Command {
	cmd := group("backups", "Image backups: list, restore, delete")
	var image string
	list := a.command("list", "List your backups, newest first", exactArgs(),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			id := image
			// Backups know their image by ID; a name is looked up while the image exists.
			if id != "" {
				if im, err := c.Image(ctx, id); err == nil {
					id = im.ID
				}
			}
			backups, err := c.Backups(ctx, id)
			if err != nil {
				return err
			}
			return printList(a, backups, []string{"ID", "IMAGE", "NAME", "SIZE", "METHOD", "SCHEDULED", "CREATED"}, func(b engine.Backup) []string {
				return []string{b.ID, b.Image, b.Name, bytesText(uint64(max(b.Size, 0))), orDash(b.Method), yesNo(b.Scheduled), b.CreatedAt.Local().Format("2006-01-02 15:04")}
			})
		})
	list.Flags().StringVar(&image, "image", "", "only the backups of this image (ID or name)")
	cmd.AddCommand(list)
	cmd.AddCommand(a.command("show ID", "Show a backup", exactArgs("ID"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			b, err := c.Backup(ctx, args[0])
			if err != nil {
				return err
			}
			return printObject(a, b, [][2]string{
				{"id", b.ID},
				{"image", b.Image},
				{"name", b.Name},
				{"format", b.Format},
				{"backing", orDash(b.Backing)},
				{"size", bytesText(uint64(max(b.Size, 0)))},
				{"pool", strconv.Itoa(b.Pool)},
				{"path", b.Path},
				{"method", orDash(b.Method)},
				{"scheduled", yesNo(b.Scheduled)},
				{"created", b.CreatedAt.Local().Format("2006-01-02 15:04:05")},
			})
		}))
	var as, into string
	var noWait bool
	restore := a.command("restore ID", "Restore a backup over its image (its servers off), --into another, or --as a new image", exactArgs("ID"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			if as != "" && into != "" {
				return usageErr("give --as NAME (a new image) or --into IMAGE (over an existing one), not both")
			}
			op, err := c.RestoreBackup(ctx, args[0], engine.RestoreRequest{Name: as, Image: into})
			if err != nil {
				return err
			}
			return a.finishOp(ctx, c, op, noWait)
		})
	restore.Flags().StringVar(&as, "as", "", "restore as a new image with this name")
	restore.Flags().StringVar(&into, "into", "", "restore over this image instead of the one backed up")
	noWaitFlag(restore, &noWait)
	cmd.AddCommand(restore)
	cmd.AddCommand(a.command("delete ID", "Delete a backup", exactArgs("ID"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			if err := c.DeleteBackup(ctx, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Deleted backup %s\n", args[0])
			return nil
		}))
	return cmd
}

func (a *app) settingsCmd() *cobra.Command {
	cmd := group("settings", "The engine's settings: placement, overcommit, backup pool, shutdown timeout, external addresses, DNS")
	cmd.AddCommand(a.command("show", "Show the engine's settings", exactArgs(),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			st, err := c.Settings(ctx)
			if err != nil {
				return err
			}
			return printSettings(a, st)
		}))
	var placement, backupPool, shutdownTimeout, externalRange, dns string
	var cpu, memory float64
	var externalQuota int
	var set *cobra.Command
	set = a.command("set", "Change the engine's settings (admins)", exactArgs(),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			st, err := c.Settings(ctx)
			if err != nil {
				return err
			}
			changed := set.Flags().Changed
			if !slices.ContainsFunc([]string{"placement", "cpu-overcommit", "memory-overcommit", "backup-pool", "shutdown-timeout",
				"external-range", "external-quota", "dns"}, changed) {
				return usageErr("nothing to change: give --placement, --cpu-overcommit, --memory-overcommit, --backup-pool, --shutdown-timeout, --external-range, --external-quota or --dns")
			}
			if changed("placement") {
				st.Placement = placement
			}
			if changed("cpu-overcommit") {
				st.CPUOvercommit = cpu
			}
			if changed("memory-overcommit") {
				st.MemoryOvercommit = memory
			}
			if changed("backup-pool") {
				if st.BackupPool, err = poolID(ctx, c, backupPool); err != nil {
					return err
				}
			}
			if changed("shutdown-timeout") {
				if st.ShutdownTimeoutSeconds, err = parseSeconds(shutdownTimeout); err != nil {
					return usageErr("--shutdown-timeout: %v", err)
				}
			}
			if changed("external-range") {
				st.ExternalRange = strings.TrimSpace(externalRange)
			}
			if changed("external-quota") {
				st.ExternalQuota = externalQuota
			}
			if changed("dns") {
				st.DNS = splitList(dns)
				if st.DNS == nil {
					st.DNS = []string{}
				}
			}
			st, err = c.PutSettings(ctx, st)
			if err != nil {
				return err
			}
			return printSettings(a, st)
		})
	set.Example = "  cairn settings set --placement pack --cpu-overcommit 4 --memory-overcommit 1 --backup-pool 0 --shutdown-timeout 120s\n" +
		"  cairn settings set --external-range 198.51.100.10-198.51.100.40 --external-quota 4 --dns 9.9.9.9,1.1.1.1"
	f := set.Flags()
	f.StringVar(&placement, "placement", "", "disperse (spread servers over nodes) or pack (fill one node first)")
	f.Float64Var(&cpu, "cpu-overcommit", 0, "vCPUs one host CPU may carry (1 to 32)")
	f.Float64Var(&memory, "memory-overcommit", 0, "share of a node's memory servers may be given (0.1 to 4)")
	f.StringVar(&backupPool, "backup-pool", "", "the pool image backups go to, by number or name")
	f.StringVar(&shutdownTimeout, "shutdown-timeout", "", "how long a shutdown may take before it is given up, like 120s or 2m")
	f.StringVar(&externalRange, "external-range", "", "the uplink's addresses for external and mapping connections, FIRST-LAST or a prefix; \"\" for none")
	f.IntVar(&externalQuota, "external-quota", 0, "how many external addresses one user may hold")
	f.StringVar(&dns, "dns", "", "name servers DHCP hands out on networks that name none, comma-separated (up to 3); \"\" for none")
	cmd.AddCommand(set)
	return cmd
}

func printSettings(a *app, st engine.Settings) error {
	return printObject(a, st, [][2]string{
		{"placement", st.Placement},
		{"cpu overcommit", strconv.FormatFloat(st.CPUOvercommit, 'g', -1, 64)},
		{"memory overcommit", strconv.FormatFloat(st.MemoryOvercommit, 'g', -1, 64)},
		{"backup pool", strconv.Itoa(st.BackupPool)},
		{"shutdown timeout", fmt.Sprintf("%ds", st.ShutdownTimeoutSeconds)},
		{"external range", orNone(st.ExternalRange)},
		{"external quota", strconv.Itoa(st.ExternalQuota)},
		{"dns", orNone(strings.Join(st.DNS, ", "))},
	})
}

// orNone is s, or "none" when it is empty.
func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func (a *app) usageCmd() *cobra.Command {
	return a.command("usage [USER]", "What your (or a user's) images, servers and connections take", rangeArgs(0, "USER"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			user := ""
			if len(args) == 1 {
				// The route takes an ID; a name is looked up.
				u, err := c.User(ctx, args[0])
				if err != nil {
					return err
				}
				user = u.ID
			}
			us, err := c.Usage(ctx, user)
			if err != nil {
				return err
			}
			pools := make([]string, 0, len(us.BytesByPool))
			for p := range us.BytesByPool {
				pools = append(pools, p)
			}
			slices.SortFunc(pools, func(x, y string) int {
				nx, _ := strconv.Atoi(x)
				ny, _ := strconv.Atoi(y)
				return nx - ny
			})
			per := make([]string, 0, len(pools))
			for _, p := range pools {
				per = append(per, fmt.Sprintf("pool %s %s", p, bytesText(uint64(max(us.BytesByPool[p], 0)))))
			}
			who := us.User
			if u, err := c.User(ctx, us.User); err == nil {
				who = u.Name + " (" + u.ID + ")"
			}
			return printObject(a, us, [][2]string{
				{"user", who},
				{"images", strconv.Itoa(us.Images)},
				{"servers", strconv.Itoa(us.Servers)},
				{"connections", strconv.Itoa(us.Connections)},
				{"external addresses", fmt.Sprintf("%d of %d", us.ExternalAddresses, us.ExternalQuota)},
				{"bytes", bytesText(us.Bytes)},
				{"by pool", listOrDash(per)},
			})
		})
}
