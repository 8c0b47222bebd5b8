package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/cairn-os/cairn/supervisor/apiclient"
	"github.com/spf13/cobra"
)

// command is a subcommand that calls the API: it gets a client from the saved
// login before run.
func (a *app) command(use, short string, args cobra.PositionalArgs, run func(ctx context.Context, c *apiclient.Client, args []string) error) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  args,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			return run(cmd.Context(), c, args)
		},
	}
}

// rangeArgs takes the first required arguments of names and the rest optionally.
func rangeArgs(required int, names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < required || len(args) > len(names) {
			shown := make([]string, len(names))
			for i, n := range names {
				shown[i] = n
				if i >= required {
					shown[i] = "[" + n + "]"
				}
			}
			return usageErr("%s takes %s (see `%s --help`)", cmd.CommandPath(), strings.Join(shown, " "), cmd.CommandPath())
		}
		return nil
	}
}

// poolID reads a pool's number, or finds the pool with that name.
func poolID(ctx context.Context, c *apiclient.Client, s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 {
			return 0, usageErr("pool %d: pools are numbered 0, 1, 2…", n)
		}
		return n, nil
	}
	pools, err := c.Pools(ctx)
	if err != nil {
		return 0, err
	}
	for _, p := range pools {
		if p.Name == s {
			return p.ID, nil
		}
	}
	return 0, &exitErr{code: exitNotFound, err: fmt.Errorf("pool %q not found: give its number or name (see `cairn pools list`)", s)}
}

// poolFlag resolves an optional --pool flag: nil when it was not given.
func poolFlag(ctx context.Context, c *apiclient.Client, cmd *cobra.Command, value string) (*int, error) {
	if !cmd.Flags().Changed("pool") {
		return nil, nil
	}
	n, err := poolID(ctx, c, value)
	if err != nil {
		return nil, err
	}
	return &n, nil
}

// yesNo is "yes" or "no".
func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// listOrDash joins a list, or is "-" when it is empty.
func listOrDash(items []string) string {
	return orDash(strings.Join(items, ", "))
}
