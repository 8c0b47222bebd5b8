package agent

import (
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"

	"github.com/cairn-os/cairn/supervisor/engine"
)

// The kernel arguments a node reads (see docs/architecture.md, "Kernel arguments").
const (
	argRole  = "cairn.role"
	argAdmin = "cairn.admin"
	argToken = "cairn.token"
	argCA    = "cairn.ca"
)

// Args are the cairn.* kernel arguments of a node. An admin node has only Role; a
// compute node has all four.
type Args struct {
	// Role is engine.NodeRoleAdmin or engine.NodeRoleCompute.
	Role string
	// AdminURL is the admin's base URL, such as https://10.0.0.1.
	AdminURL string
	// Token is the join token.
	Token string
	// CAFingerprint is "sha256:" and the lowercase hex SHA-256 of the CA certificate's DER.
	CAFingerprint string
}

// ParseCmdline reads the cairn.* arguments from a kernel command line as found in
// /proc/cmdline. Values may be double-quoted; other arguments are ignored; when an
// argument repeats, the last one wins, as in the kernel. The error names every missing
// or malformed cairn.* argument.
func ParseCmdline(cmdline string) (Args, error) {
	vals := map[string]string{}
	for _, f := range splitCmdline(cmdline) {
		k, v, _ := strings.Cut(f, "=")
		if strings.HasPrefix(k, "cairn.") {
			vals[k] = v
		}
	}
	a := Args{
		Role:          vals[argRole],
		AdminURL:      vals[argAdmin],
		Token:         vals[argToken],
		CAFingerprint: vals[argCA],
	}
	switch a.Role {
	case "":
		return Args{}, fmt.Errorf("kernel arguments: %s missing: add %s=admin or %s=compute", argRole, argRole, argRole)
	case engine.NodeRoleAdmin:
		return a, nil
	case engine.NodeRoleCompute:
	default:
		return Args{}, fmt.Errorf("kernel arguments: %s=%q unknown: use admin or compute", argRole, a.Role)
	}
	var missing []string
	for _, k := range []string{argAdmin, argToken, argCA} {
		if vals[k] == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return Args{}, fmt.Errorf("kernel arguments: %s missing for %s=compute (the admin's iPXE script sets them)",
			strings.Join(missing, ", "), argRole)
	}
	u, err := url.Parse(a.AdminURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return Args{}, fmt.Errorf("kernel arguments: %s=%q: want an https URL such as https://10.0.0.1", argAdmin, a.AdminURL)
	}
	a.AdminURL = strings.TrimRight(a.AdminURL, "/")
	fp, err := parseFingerprint(a.CAFingerprint)
	if err != nil {
		return Args{}, fmt.Errorf("kernel arguments: %s=%q: %w", argCA, a.CAFingerprint, err)
	}
	a.CAFingerprint = "sha256:" + hex.EncodeToString(fp)
	return a, nil
}

// splitCmdline splits a kernel command line into arguments the way the kernel does:
// at spaces outside double quotes, with the quotes removed.
func splitCmdline(s string) []string {
	var out []string
	var cur strings.Builder
	inQuote, have := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote = !inQuote
			have = true
		case !inQuote && (r == ' ' || r == '\t' || r == '\n'):
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}

// parseFingerprint reads "sha256:<64 hex digits>" (colons between the bytes and upper
// case are accepted) and returns the 32 bytes.
func parseFingerprint(s string) ([]byte, error) {
	h, ok := strings.CutPrefix(strings.ToLower(s), "sha256:")
	if !ok {
		return nil, fmt.Errorf("want sha256:<hex of the CA certificate's SHA-256>")
	}
	b, err := hex.DecodeString(strings.ReplaceAll(h, ":", ""))
	if err != nil || len(b) != 32 {
		return nil, fmt.Errorf("want 64 hex digits after sha256:")
	}
	return b, nil
}
