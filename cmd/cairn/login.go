package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/cairn-os/cairn/supervisor/apiclient"
	"github.com/cairn-os/cairn/supervisor/pki"
	"github.com/spf13/cobra"
)

func (a *app) loginCmd() *cobra.Command {
	var user, fingerprint string
	var passwordStdin bool
	cmd := &cobra.Command{
		Use:   "login URL",
		Short: "Trust an engine's CA, sign in and save an API token",
		Long: "login fetches the engine's CA certificate, checks its fingerprint (given with\n" +
			"--ca-fingerprint, or shown for you to confirm), signs in with your password and\n" +
			"saves the URL, the CA and a new API token in the config file (mode 0600).\n\n" +
			"The fingerprint is on the admin node's console and in the web console.",
		Example: "  cairn login https://10.0.0.1\n" +
			"  echo \"$PW\" | cairn login https://10.0.0.1 --password-stdin --ca-fingerprint sha256:ab12…",
		Args: exactArgs("URL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.login(cmd, args[0], user, fingerprint, passwordStdin)
		},
	}
	cmd.Flags().StringVar(&user, "user", "admin", "user name")
	cmd.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password from the first line of stdin")
	cmd.Flags().StringVar(&fingerprint, "ca-fingerprint", "", "the engine CA's fingerprint (sha256:…); without it you are asked")
	return cmd
}

func (a *app) login(cmd *cobra.Command, rawURL, user, fingerprint string, passwordStdin bool) error {
	ctx := cmd.Context()
	base, err := engineURL(rawURL)
	if err != nil {
		return err
	}
	path, err := configPath(a.configFlag, a.getenv)
	if err != nil {
		return err
	}
	stdin := bufio.NewReader(a.stdin)
	interactive := !passwordStdin && isTerminal(a.stdin)

	ca, caPEM, err := apiclient.FetchCA(ctx, base)
	if err != nil {
		return err
	}
	got := pki.Fingerprint(ca)
	switch {
	case fingerprint != "":
		if err := pki.VerifyFingerprint(ca, fingerprint); err != nil {
			return &exitErr{code: exitAuth, err: fmt.Errorf(
				"the engine's CA fingerprint does not match: %s has %s, you gave %s.\n"+
					"  Nothing was sent or saved. Check the fingerprint on the admin node's console;\n"+
					"  if it differs from what this machine sees, someone may be in between", base, got, fingerprint)}
		}
	case interactive:
		fmt.Fprintf(a.stderr, "The engine at %s has the CA fingerprint\n  %s\nCompare it with the one on the admin node's console. Trust it? [y/N] ", base, got)
		answer, _ := stdin.ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			return &exitErr{code: exitAuth, err: errors.New("the CA was not trusted; nothing was saved")}
		}
	default:
		return &exitErr{code: exitUsage, err: fmt.Errorf(
			"cannot ask whether to trust the engine's CA (stdin is not a terminal).\n"+
				"  %s has the CA fingerprint %s; if the admin node's console shows the same,\n"+
				"  run again with --ca-fingerprint %s", base, got, got)}
	}

	var password string
	if passwordStdin {
		line, err := stdin.ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read password from stdin: %w", err)
		}
		password = strings.TrimRight(line, "\r\n")
	} else if isTerminal(a.stdin) {
		if password, err = readPassword(a.stdin, a.stderr, fmt.Sprintf("Password for %s: ", user)); err != nil {
			return err
		}
	} else {
		return usageErr("stdin is not a terminal: pass the password with --password-stdin")
	}
	if password == "" {
		return usageErr("empty password")
	}

	host, _ := os.Hostname()
	tok, err := apiclient.New(base, caPEM, apiclient.Basic(user, password)).CreateToken(ctx, tokenName(host))
	if err != nil {
		return fmt.Errorf("sign in to %s as %s: %w", base, user, err)
	}
	old, _ := loadConfig(path)
	if err := saveConfig(path, config{URL: base, User: user, CAPEM: string(caPEM), Token: tok.Secret, TokenID: tok.ID}); err != nil {
		return err
	}
	if old.URL == base && old.Token != "" && old.TokenID != "" && old.TokenID != tok.ID {
		// The token of the previous login here is of no more use; it is fine if it is
		// gone already.
		_ = apiclient.New(base, caPEM, apiclient.Bearer(old.Token)).DeleteToken(ctx, old.TokenID)
	}
	fmt.Fprintf(a.stdout, "Logged in to %s as %s; the token is saved in %s\n", base, user, path)
	return nil
}

// engineURL normalises what people type: "10.0.0.1" → "https://10.0.0.1".
func engineURL(raw string) (string, error) {
	if !strings.Contains(raw, "://") {
		raw = "https://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", usageErr("%q is not a URL; give the engine's address as https://HOST", raw)
	}
	if u.Scheme != "https" {
		return "", usageErr("%s: the engine only speaks https; use https://%s", raw, u.Host)
	}
	return "https://" + u.Host, nil
}

func tokenName(host string) string {
	name := "cairn CLI"
	if host != "" {
		name += " on " + host
	}
	if len(name) > 64 {
		name = name[:64]
	}
	return name
}
