package main

import (
	"bufio"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/cairn-os/cairn/supervisor/apiclient"
	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/spf13/cobra"
)

func (a *app) poolsCmd() *cobra.Command {
	cmd := group("pools", "Storage pools: usage, snapshots, rollback")
	cmd.AddCommand(a.command("list", "List the pools with their usage, in all and per user", exactArgs(),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			pools, err := c.Pools(ctx)
			if err != nil {
				return err
			}
			names := userNames(ctx, c)
			return printList(a, pools, []string{"ID", "NAME", "DRIVER", "STATE", "SHARED", "TOTAL", "USED", "FREE", "BY USER"}, func(p engine.Pool) []string {
				return []string{strconv.Itoa(p.ID), p.Name, p.Driver, poolState(p), yesNo(p.Shared), bytesText(p.TotalBytes),
					bytesText(p.UsedBytes), bytesText(p.FreeBytes), byUser(p.ImageBytesByOwner, names)}
			})
		}))
	cmd.AddCommand(a.command("show ID", "Show a pool (by number or name)", exactArgs("ID"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			id, err := poolID(ctx, c, args[0])
			if err != nil {
				return err
			}
			p, err := c.Pool(ctx, id)
			if err != nil {
				return err
			}
			return printPool(a, p, userNames(ctx, c))
		}))
	cmd.AddCommand(a.poolCreateCmd(), a.poolUpdateCmd())
	cmd.AddCommand(a.command("delete ID", "Forget an empty pool (its data stays on the disk)", exactArgs("ID"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			id, err := poolID(ctx, c, args[0])
			if err != nil {
				return err
			}
			if err := c.DeletePool(ctx, id); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Deleted pool %d; its files stay where they were\n", id)
			return nil
		}))
	cmd.AddCommand(a.command("snapshot ID", "Snapshot a pool now", exactArgs("ID"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			id, err := poolID(ctx, c, args[0])
			if err != nil {
				return err
			}
			sn, err := c.SnapshotPool(ctx, id)
			if err != nil {
				return err
			}
			return printObject(a, sn, [][2]string{{"pool", strconv.Itoa(sn.Pool)}, {"snapshot", sn.Name},
				{"created", sn.CreatedAt.Local().Format("2006-01-02 15:04:05")}})
		}))
	cmd.AddCommand(a.command("snapshots ID", "List a pool's snapshots", exactArgs("ID"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			id, err := poolID(ctx, c, args[0])
			if err != nil {
				return err
			}
			sns, err := c.PoolSnapshots(ctx, id)
			if err != nil {
				return err
			}
			return printList(a, sns, []string{"NAME", "DAILY", "CREATED", "IMAGES"}, func(s engine.PoolSnapshot) []string {
				return []string{s.Name, yesNo(s.Daily), s.CreatedAt.Local().Format("2006-01-02 15:04:05"), snapshotImages(s)}
			})
		}))
	cmd.AddCommand(a.command("snapshot-delete ID NAME", "Delete a pool snapshot", exactArgs("ID", "NAME"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			id, err := poolID(ctx, c, args[0])
			if err != nil {
				return err
			}
			if err := c.DeletePoolSnapshot(ctx, id, args[1]); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Deleted snapshot %s of pool %d\n", args[1], id)
			return nil
		}))
	var as string
	var noWait bool
	restore := a.command("restore POOL SNAPSHOT IMAGE", "Restore one image from a pool snapshot, in place or --as a new image", exactArgs("POOL", "SNAPSHOT", "IMAGE"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			id, err := poolID(ctx, c, args[0])
			if err != nil {
				return err
			}
			image, err := snapshotImage(ctx, c, id, args[1], args[2])
			if err != nil {
				return err
			}
			op, err := c.RestoreFromSnapshot(ctx, id, args[1], engine.RestoreRequest{Image: image, Name: as})
			if err != nil {
				return err
			}
			return a.finishOp(ctx, c, op, noWait)
		})
	restore.Flags().StringVar(&as, "as", "", "restore as a new image with this name (also for an image deleted since)")
	noWaitFlag(restore, &noWait)
	cmd.AddCommand(restore, a.poolRollbackCmd())
	return cmd
}

func (a *app) poolCreateCmd() *cobra.Command {
	var req engine.PoolRequest
	var shared bool
	var cmd *cobra.Command
	cmd = a.command("create NAME", "Add a pool on a directory, or on a device it formats (admins)", exactArgs("NAME"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			req.Name = args[0]
			if (req.Path == "") == (req.Device == "") {
				return usageErr("give either --path DIR (an existing directory) or --device /dev/X (a disk to format)")
			}
			if cmd.Flags().Changed("shared") {
				req.Shared = &shared
			}
			if req.Device != "" {
				if err := a.confirmFormat(&req); err != nil {
					return err
				}
			} else if req.ConfirmFormat != "" {
				return usageErr("--yes-format-device goes with --device; a --path pool formats nothing")
			}
			p, err := c.CreatePool(ctx, req)
			if err != nil {
				return err
			}
			return printPool(a, p, nil)
		})
	cmd.Example = "  cairn pools create fast --driver btrfs --device /dev/sdb --yes-format-device /dev/sdb\n" +
		"  cairn pools create archive --driver dir --path /srv/archive"
	f := cmd.Flags()
	f.StringVar(&req.Driver, "driver", "dir", "dir, btrfs or zfs")
	f.StringVar(&req.Path, "path", "", "an existing directory on the admin node")
	f.StringVar(&req.Device, "device", "", "a block device to format for the pool (everything on it is erased)")
	f.StringVar(&req.ConfirmFormat, "yes-format-device", "", "confirm formatting by repeating the device's path")
	f.BoolVar(&shared, "shared", true, "export the pool to the compute nodes")
	f.StringVar(&req.SnapshotAt, "snapshot-at", "", "daily snapshot time, HH:MM (btrfs, zfs)")
	f.IntVar(&req.SnapshotKeep, "snapshot-keep", 0, "how many daily snapshots to keep")
	return cmd
}

// confirmFormat makes sure the user means to erase the device: --yes-format-device
// repeating it, or, on a terminal, the device's path typed in.
func (a *app) confirmFormat(req *engine.PoolRequest) error {
	warning := fmt.Sprintf("Creating pool %s formats %s with %s on the admin node: everything on %s is erased.", req.Name, req.Device, req.Driver, req.Device)
	switch {
	case req.ConfirmFormat == req.Device:
		return nil
	case req.ConfirmFormat != "":
		return usageErr("--yes-format-device %s does not match --device %s; nothing was done", req.ConfirmFormat, req.Device)
	case isTerminal(a.stdin):
		fmt.Fprintf(a.stderr, "%s\nType %s to go ahead: ", warning, req.Device)
		line, _ := bufio.NewReader(a.stdin).ReadString('\n')
		if strings.TrimSpace(line) != req.Device {
			return usageErr("not confirmed; nothing was done")
		}
		req.ConfirmFormat = req.Device
		return nil
	}
	return usageErr("%s\n  nothing was done; to go ahead, run again with --yes-format-device %s", warning, req.Device)
}

func (a *app) poolUpdateCmd() *cobra.Command {
	var at string
	var keep int
	var cmd *cobra.Command
	cmd = a.command("update ID", "Change a pool's daily snapshot schedule (admins)", exactArgs("ID"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			id, err := poolID(ctx, c, args[0])
			if err != nil {
				return err
			}
			var upd engine.PoolUpdate
			if cmd.Flags().Changed("snapshot-at") {
				upd.SnapshotAt = &at
			}
			if cmd.Flags().Changed("snapshot-keep") {
				upd.SnapshotKeep = &keep
			}
			if upd == (engine.PoolUpdate{}) {
				return usageErr("nothing to change: give --snapshot-at or --snapshot-keep")
			}
			p, err := c.UpdatePool(ctx, id, upd)
			if err != nil {
				return err
			}
			return printPool(a, p, nil)
		})
	cmd.Flags().StringVar(&at, "snapshot-at", "", "daily snapshot time, HH:MM; \"\" stops daily snapshots")
	cmd.Flags().IntVar(&keep, "snapshot-keep", 0, "how many daily snapshots to keep")
	return cmd
}

func (a *app) poolRollbackCmd() *cobra.Command {
	var confirm string
	cmd := a.command("rollback POOL SNAPSHOT", "Roll a whole pool back to a snapshot (admins; confirm with the pool's name)", exactArgs("POOL", "SNAPSHOT"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			id, err := poolID(ctx, c, args[0])
			if err != nil {
				return err
			}
			if confirm == "" {
				p, err := c.Pool(ctx, id)
				if err != nil {
					return err
				}
				return usageErr("rolling pool %d (%s) back to %s makes all of it what it was then: images made since are gone,\n"+
					"  changes since are lost, images deleted since are back. Nothing was done; to go ahead, run again with --confirm %s",
					p.ID, p.Name, args[1], p.Name)
			}
			p, err := c.RollbackPool(ctx, id, args[1], confirm)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stderr, "Rolled pool %d back to %s\n", p.ID, args[1])
			return printPool(a, p, nil)
		})
	cmd.Flags().StringVar(&confirm, "confirm", "", "the pool's name, to confirm")
	return cmd
}

// userNames maps user IDs to names when the caller may list users (admins); an
// empty map otherwise, and IDs are shown.
func userNames(ctx context.Context, c *apiclient.Client) map[string]string {
	names := map[string]string{}
	users, err := c.Users(ctx)
	if err != nil {
		return names
	}
	for _, u := range users {
		names[u.ID] = u.Name
	}
	return names
}

// byUser is "alice 1.2 GiB, bob 3.0 MiB", largest first.
func byUser(bytes map[string]uint64, names map[string]string) string {
	ids := make([]string, 0, len(bytes))
	for id := range bytes {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(x, y string) int {
		if bytes[x] != bytes[y] {
			if bytes[x] > bytes[y] {
				return -1
			}
			return 1
		}
		return strings.Compare(x, y)
	})
	parts := make([]string, 0, len(ids))
	for _, id := range ids {
		name := id
		if n, ok := names[id]; ok {
			name = n
		}
		parts = append(parts, name+" "+bytesText(bytes[id]))
	}
	return listOrDash(parts)
}

func poolState(p engine.Pool) string {
	if p.Problem != "" {
		return string(p.State) + ": " + p.Problem
	}
	return string(p.State)
}

func printPool(a *app, p engine.Pool, names map[string]string) error {
	snapshots := "no"
	switch {
	case p.Snapshots && p.SnapshotAt != "":
		snapshots = fmt.Sprintf("daily at %s, keep %d", p.SnapshotAt, p.SnapshotKeep)
	case p.Snapshots:
		snapshots = "on demand (no daily schedule)"
	}
	return printObject(a, p, [][2]string{
		{"id", strconv.Itoa(p.ID)},
		{"name", p.Name},
		{"driver", p.Driver},
		{"state", poolState(p)},
		{"path", p.Path},
		{"device", orDash(p.Device)},
		{"shared", yesNo(p.Shared)},
		{"snapshots", snapshots},
		{"total", bytesText(p.TotalBytes)},
		{"used", bytesText(p.UsedBytes)},
		{"free", bytesText(p.FreeBytes)},
		{"by user", byUser(p.ImageBytesByOwner, names)},
		{"created", p.CreatedAt.Local().Format("2006-01-02 15:04:05")},
	})
}

// snapshotImages names the images a snapshot holds, for a table cell.
func snapshotImages(s engine.PoolSnapshot) string {
	if len(s.Images) == 0 {
		return "-"
	}
	names := make([]string, len(s.Images))
	for i, im := range s.Images {
		names[i] = im.Name
		if im.Deleted {
			names[i] += " (deleted)"
		}
	}
	return strings.Join(names, ", ")
}

// snapshotImage finds the ID of the image that arg (an ID or a name) means in pool
// snapshot name: a current image first, then the snapshot's own list, which also
// holds images deleted since.
func snapshotImage(ctx context.Context, c *apiclient.Client, pool int, name, arg string) (string, error) {
	if im, err := c.Image(ctx, arg); err == nil {
		return im.ID, nil
	}
	sns, err := c.PoolSnapshots(ctx, pool)
	if err != nil {
		return "", err
	}
	i := slices.IndexFunc(sns, func(s engine.PoolSnapshot) bool { return s.Name == name })
	if i < 0 {
		return "", fmt.Errorf("pool %d has no snapshot %q; see cairn pools snapshots %d", pool, name, pool)
	}
	var ids []string
	for _, im := range sns[i].Images {
		if im.ID == arg {
			return im.ID, nil
		}
		if im.Name == arg {
			ids = append(ids, im.ID)
		}
	}
	switch len(ids) {
	case 1:
		return ids[0], nil
	case 0:
		return "", fmt.Errorf("snapshot %q of pool %d holds no image %q of yours; see cairn pools snapshots %d", name, pool, arg, pool)
	}
	return "", fmt.Errorf("snapshot %q of pool %d holds %d images named %q (%s); give the ID", name, pool, len(ids), arg, strings.Join(ids, ", "))
}
