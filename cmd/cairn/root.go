package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/cairn-os/cairn/supervisor/apiclient"
	"github.com/spf13/cobra"
)

// Exit codes.
const (
	exitOK       = 0
	exitError    = 1
	exitUsage    = 2
	exitAuth     = 3 // not logged in, or the engine refused the credentials
	exitNotFound = 4
)

// exitErr carries an exit code with an error.
type exitErr struct {
	code int
	err  error
}

func (e *exitErr) Error() string { return e.err.Error() }
func (e *exitErr) Unwrap() error { return e.err }

func usageErr(format string, args ...any) error {
	return &exitErr{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// errNotLoggedIn is what every command says before `cairn login`.
var errNotLoggedIn = &exitErr{code: exitAuth, err: errors.New("not logged in: run `cairn login https://ADMIN` (or set CAIRN_URL and CAIRN_TOKEN)")}

// app is one run of the CLI, with its streams and environment.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string

	configFlag string
	output     string
}

// run runs the CLI with args and returns the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(context.Background())
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "cairn:", explain(err))
	var ee *exitErr
	if errors.As(err, &ee) {
		return ee.code
	}
	switch apiclient.StatusOf(err) {
	case http.StatusUnauthorized, http.StatusForbidden:
		return exitAuth
	case http.StatusNotFound:
		return exitNotFound
	}
	if strings.HasPrefix(err.Error(), "unknown command") || strings.Contains(err.Error(), "accepts ") ||
		strings.HasPrefix(err.Error(), "required flag") {
		return exitUsage
	}
	return exitError
}

// explain adds what to do to errors that do not say it.
func explain(err error) string {
	var cv *tls.CertificateVerificationError
	switch {
	case errors.As(err, &cv):
		return err.Error() + "\n  the engine's certificate is not from the CA saved at login; run `cairn login URL` again"
	case apiclient.StatusOf(err) == http.StatusUnauthorized:
		return err.Error() + "\n  the saved token no longer works; run `cairn login URL` again"
	}
	return err.Error()
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "cairn",
		Short: "Manage a Cairn engine: servers, images, pools, networks, nodes, users",
		Long: "cairn manages a Cairn engine over its API.\n\n" +
			"Start with `cairn login https://ADMIN`. CAIRN_URL and CAIRN_TOKEN override the saved login.\n" +
			"Commands that start long work (an operation) wait for it with its progress; --no-wait\n" +
			"prints the operation's ID instead. Ctrl-C while waiting asks whether to cancel it.\n" +
			"Sizes are bytes or take K, M, G, T (binary: 1K = 1024).\n" +
			"Exit codes: 0 done, 1 failed, 2 bad usage, 3 not logged in or refused, 4 not found, 130 interrupted.",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if a.output != "table" && a.output != "json" {
				return usageErr("-o %s: the output is table or json", a.output)
			}
			return nil
		},
	}
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageErr("%v (see `%s --help`)", err, cmd.CommandPath())
	})
	root.PersistentFlags().StringVar(&a.configFlag, "config", "", "config file (default $XDG_CONFIG_HOME/cairn/config.json)")
	root.PersistentFlags().StringVarP(&a.output, "output", "o", "table", "output format: table or json")
	root.AddCommand(a.loginCmd(), a.engineCmd(), a.nodesCmd(), a.servicesCmd(), a.usersCmd(),
		a.serversCmd(), a.imagesCmd(), a.backupsCmd(), a.poolsCmd(), a.networksCmd(), a.connectionsCmd(), a.operationsCmd(), a.settingsCmd(), a.usageCmd())
	return root
}

// client returns an API client from the saved login, overridden by CAIRN_URL and
// CAIRN_TOKEN.
func (a *app) client() (*apiclient.Client, error) {
	path, err := configPath(a.configFlag, a.getenv)
	if err != nil {
		return nil, err
	}
	cfg, err := loadConfig(path)
	if err != nil {
		return nil, err
	}
	url, token, caPEM := cfg.URL, cfg.Token, []byte(cfg.CAPEM)
	if u := a.getenv("CAIRN_URL"); u != "" && strings.TrimRight(u, "/") != cfg.URL {
		// Another engine than the saved one: its CA is not known here.
		url, caPEM = strings.TrimRight(u, "/"), nil
	}
	if t := a.getenv("CAIRN_TOKEN"); t != "" {
		token = t
	}
	if url == "" || token == "" {
		return nil, errNotLoggedIn
	}
	if len(caPEM) == 0 {
		caPEM = nil
	}
	return apiclient.New(url, caPEM, apiclient.Bearer(token)), nil
}

// exactArgs is cobra.ExactArgs with a usage exit code and the names of the arguments.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) && len(names) == 0 {
			return usageErr("%s takes no arguments (see `%s --help`)", cmd.CommandPath(), cmd.CommandPath())
		}
		if len(args) != len(names) {
			return usageErr("%s takes %s (see `%s --help`)", cmd.CommandPath(), strings.Join(names, " "), cmd.CommandPath())
		}
		return nil
	}
}

// group is a command that only holds subcommands: alone it shows its help, with an
// unknown subcommand it is a usage error.
func group(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErr("unknown command %q for %q (see `%s --help`)", args[0], cmd.CommandPath(), cmd.CommandPath())
			}
			return cmd.Help()
		},
	}
}
