package image

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Apt runs apt-get and apt-cache against a private state folder: its own package
// lists and an empty (or made-up) dpkg status, so that a resolution sees nothing as
// installed and the host's dpkg database is neither read nor changed. The sources
// are the host's (/etc/apt/sources.list.d).
type Apt struct {
	Dir    string
	Runner *Runner
}

func (a Apt) options(status string) []string {
	return []string{
		"-o", "Dir::State=" + filepath.Join(a.Dir, "state"),
		"-o", "Dir::State::status=" + status,
		"-o", "Dir::Cache=" + filepath.Join(a.Dir, "cache"),
		"-o", "Debug::NoLocking=1",
		// The private folders are root's; apt's _apt sandbox user could not write them.
		"-o", "APT::Sandbox::User=root",
		"-o", "APT::Architectures::=amd64",
		"-o", "APT::Architecture=amd64",
		// --print-uris shows the first hash it knows, MD5 unless told otherwise.
		"-o", "Acquire::ForceHash=SHA256",
		"-o", "APT::Install-Recommends=false",
		"-o", "APT::Install-Suggests=false",
	}
}

func (a Apt) emptyStatus() string { return filepath.Join(a.Dir, "status-empty") }

func (a Apt) prepare() error {
	for _, d := range []string{"state/lists/partial", "cache/archives/partial"} {
		if err := os.MkdirAll(filepath.Join(a.Dir, d), 0o755); err != nil {
			return fmt.Errorf("apt folders: %w", err)
		}
	}
	if err := os.WriteFile(a.emptyStatus(), nil, 0o644); err != nil {
		return fmt.Errorf("apt status: %w", err)
	}
	return nil
}

// Update refreshes the private package lists from the mirrors.
func (a Apt) Update(ctx context.Context) error {
	if err := a.prepare(); err != nil {
		return err
	}
	args := append(a.options(a.emptyStatus()), "-qq", "update")
	if _, err := a.Runner.Run(ctx, "apt-get", args...); err != nil {
		return fmt.Errorf("apt update: %w", err)
	}
	return nil
}

// hasLists reports whether Update has run at least once.
func (a Apt) hasLists() bool {
	m, _ := filepath.Glob(filepath.Join(a.Dir, "state/lists/*Packages*"))
	return len(m) > 0
}

// Resolve returns the full dependency closure of install, as if nothing were
// installed except exclude (which, with what only they need, stays out).
func (a Apt) Resolve(ctx context.Context, install, exclude []string) ([]Package, error) {
	if err := a.prepare(); err != nil {
		return nil, err
	}
	status := a.emptyStatus()
	if len(exclude) > 0 {
		fake, err := a.fakeStatus(ctx, exclude)
		if err != nil {
			return nil, err
		}
		status = filepath.Join(a.Dir, "status-exclude")
		if err := os.WriteFile(status, fake, 0o644); err != nil {
			return nil, fmt.Errorf("apt status: %w", err)
		}
	}
	args := append(a.options(status), "-qq", "--print-uris", "install")
	args = append(args, install...)
	out, err := a.Runner.Run(ctx, "apt-get", args...)
	if err != nil {
		return nil, fmt.Errorf("apt resolve %s: %w", strings.Join(install, " "), err)
	}
	pkgs, err := parsePrintURIs(out)
	if err != nil {
		return nil, err
	}
	for _, p := range pkgs {
		if slices.Contains(exclude, p.Name) {
			return nil, fmt.Errorf("apt resolve: excluded package %s is still pulled in", p.Name)
		}
	}
	return pkgs, nil
}

// fakeStatus writes dpkg status stanzas that claim the candidate versions of names
// are installed. They carry no Depends, so apt sees nothing broken.
func (a Apt) fakeStatus(ctx context.Context, names []string) ([]byte, error) {
	args := append(a.options(a.emptyStatus()), "show", "--no-all-versions")
	args = append(args, names...)
	out, err := a.Runner.Run(ctx, "apt-cache", args...)
	if err != nil {
		return nil, fmt.Errorf("apt show %s: %w", strings.Join(names, " "), err)
	}
	var b bytes.Buffer
	seen := map[string]bool{}
	for _, st := range parseStanzas(out) {
		name := st["Package"]
		if seen[name] {
			continue
		}
		seen[name] = true
		multi := ""
		if m := st["Multi-Arch"]; m != "" {
			multi = "Multi-Arch: " + m + "\n"
		}
		fmt.Fprintf(&b, "Package: %s\nStatus: install ok installed\nPriority: optional\nSection: misc\nMaintainer: Cairn <cairn@localhost>\nArchitecture: %s\n%sVersion: %s\nDescription: kept out of Cairn's images\n\n",
			name, st["Architecture"], multi, st["Version"])
	}
	for _, n := range names {
		if !seen[n] {
			return nil, fmt.Errorf("apt show: no package %s", n)
		}
	}
	return b.Bytes(), nil
}

// parseStanzas reads deb822 stanzas (only single-line fields are kept).
func parseStanzas(b []byte) []map[string]string {
	var out []map[string]string
	cur := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			if len(cur) > 0 {
				out = append(out, cur)
				cur = map[string]string{}
			}
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if ok {
			cur[k] = strings.TrimSpace(v)
		}
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// parsePrintURIs reads `apt-get --print-uris` lines:
//
//	'http://…/libc6_2.36-9%2bdeb12u9_amd64.deb' libc6_2.36-9+deb12u9_amd64.deb 2757936 SHA256:…
func parsePrintURIs(out []byte) ([]Package, error) {
	var pkgs []Package
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 4 || !strings.HasPrefix(f[0], "'") {
			continue
		}
		hash, ok := strings.CutPrefix(f[3], "SHA256:")
		if !ok || len(hash) != 64 {
			return nil, fmt.Errorf("apt print-uris: no SHA256 in %q", sc.Text())
		}
		file, err := url.PathUnescape(strings.TrimSuffix(f[1], ".deb"))
		if err != nil {
			return nil, fmt.Errorf("apt print-uris: file %q: %w", f[1], err)
		}
		parts := strings.Split(file, "_")
		if len(parts) != 3 {
			return nil, fmt.Errorf("apt print-uris: file %q is not name_version_arch.deb", f[1])
		}
		pkgs = append(pkgs, Package{Name: parts[0], Version: parts[1], Arch: parts[2], SHA256: hash})
	}
	if len(pkgs) == 0 {
		return nil, errors.New("apt print-uris: no packages in the output")
	}
	slices.SortFunc(pkgs, func(a, b Package) int { return strings.Compare(a.Name, b.Name) })
	return pkgs, nil
}

// Download fetches the given package versions into dir with apt-get download, which
// checks each file against the signed package lists.
func (a Apt) Download(ctx context.Context, dir string, pkgs []Package) error {
	args := append(a.options(a.emptyStatus()), "-qq", "download")
	for _, p := range pkgs {
		args = append(args, p.Name+"="+p.Version)
	}
	_, err := a.Runner.RunCmd(ctx, Cmd{Name: "apt-get", Args: args, Dir: dir})
	return err
}
