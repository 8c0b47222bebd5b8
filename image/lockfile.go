package image

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Roles are the images a package list feeds: configs/packages/<role>.txt.
var Roles = []string{"admin", "compute"}

// PackageList is one configs/packages/<role>.txt: the packages to install and the
// packages to keep out.
type PackageList struct {
	Role string
	// Install are the packages asked for; their dependency closure is locked.
	Install []string
	// Exclude are packages (lines starting with "!") that apt treats as already
	// installed, so neither they nor what only they need end up in the image:
	// python3 for nfs-common's statistics scripts, initramfs-tools for the kernel.
	Exclude []string
}

// ParsePackageList reads a package list: one Debian package name per line, "#" starts
// a comment, "!name" excludes a package.
func ParsePackageList(role string, r io.Reader) (PackageList, error) {
	l := PackageList{Role: role}
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) > 1 {
			return l, fmt.Errorf("package list %s line %d: one package name per line, got %q", role, n, line)
		}
		name, excl := strings.CutPrefix(f[0], "!")
		if !validPackageName(name) {
			return l, fmt.Errorf("package list %s line %d: %q is not a Debian package name", role, n, name)
		}
		if excl {
			l.Exclude = append(l.Exclude, name)
		} else {
			l.Install = append(l.Install, name)
		}
	}
	return l, sc.Err()
}

// ReadPackageLists reads configs/packages/<role>.txt for every role.
func ReadPackageLists(dir string) ([]PackageList, error) {
	var lists []PackageList
	for _, role := range Roles {
		p := filepath.Join(dir, role+".txt")
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read package list: %w", err)
		}
		l, err := ParsePackageList(role, bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		if len(l.Install) == 0 {
			return nil, fmt.Errorf("package list %s: no packages", p)
		}
		lists = append(lists, l)
	}
	return lists, nil
}

// validPackageName follows Debian policy 5.6.1: lowercase letters, digits, + - . and
// at least two characters, starting with a letter or digit.
func validPackageName(s string) bool {
	if len(s) < 2 {
		return false
	}
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && (c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return true
}

// Package is one locked Debian package.
type Package struct {
	Name    string
	Version string
	Arch    string
	SHA256  string
	// Roles are the images whose closure holds the package, sorted.
	Roles []string
}

// FileName is the package's name in the cache, as apt names downloaded files
// (name_version_arch.deb, with an epoch's ":" written "%3a").
func (p Package) FileName() string {
	return p.Name + "_" + strings.ReplaceAll(p.Version, ":", "%3a") + "_" + p.Arch + ".deb"
}

// HasRole reports whether the package belongs in role's image.
func (p Package) HasRole(role string) bool { return slices.Contains(p.Roles, role) }

// line is the lock line without roles: what a tree built from the package depends on.
func (p Package) line() string {
	return p.Name + " " + p.Version + " " + p.Arch + " " + p.SHA256
}

// Lock is configs/packages.lock: every package of every role's closure, sorted by
// name.
type Lock struct {
	Packages []Package
}

const lockHeader = `# Cairn's pinned Debian packages. Written by ` + "`make lock`" + ` (cairn-build lock) from
# configs/packages/*.txt; do not edit by hand.
# name version arch sha256 roles
`

// Format writes the lock file's text.
func (l Lock) Format() []byte {
	var b bytes.Buffer
	b.WriteString(lockHeader)
	for _, p := range l.Packages {
		fmt.Fprintf(&b, "%s %s\n", p.line(), strings.Join(p.Roles, ","))
	}
	return b.Bytes()
}

// ParseLock reads a lock file.
func ParseLock(r io.Reader) (Lock, error) {
	var l Lock
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 5 || len(f[3]) != 64 {
			return l, fmt.Errorf("packages.lock line %d: want \"name version arch sha256 roles\", got %q: run `make lock`", n, line)
		}
		p := Package{Name: f[0], Version: f[1], Arch: f[2], SHA256: f[3], Roles: strings.Split(f[4], ",")}
		for _, r := range p.Roles {
			if !slices.Contains(Roles, r) {
				return l, fmt.Errorf("packages.lock line %d: unknown role %q", n, r)
			}
		}
		l.Packages = append(l.Packages, p)
	}
	if err := sc.Err(); err != nil {
		return l, err
	}
	if len(l.Packages) == 0 {
		return l, errors.New("packages.lock is empty: run `make lock`")
	}
	return l, nil
}

// ReadLock reads the lock file at path.
func ReadLock(path string) (Lock, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Lock{}, fmt.Errorf("read %s: %w: run `make lock` to pin the packages", path, err)
		}
		return Lock{}, fmt.Errorf("read lock: %w", err)
	}
	l, err := ParseLock(bytes.NewReader(b))
	if err != nil {
		return l, fmt.Errorf("%s: %w", path, err)
	}
	return l, nil
}

// Role returns the packages of role's closure.
func (l Lock) Role(role string) []Package {
	var out []Package
	for _, p := range l.Packages {
		if p.HasRole(role) {
			out = append(out, p)
		}
	}
	return out
}

// MergeRoles combines each role's resolved closure into one lock, sorted by name.
func MergeRoles(byRole map[string][]Package) (Lock, error) {
	all := map[string]*Package{}
	for _, role := range Roles {
		for _, p := range byRole[role] {
			q, ok := all[p.Name]
			if !ok {
				c := p
				c.Roles = nil
				all[p.Name] = &c
				q = &c
			} else if q.line() != p.line() {
				return Lock{}, fmt.Errorf("package %s resolved to %s and %s", p.Name, q.line(), p.line())
			}
			q.Roles = append(q.Roles, role)
		}
	}
	var l Lock
	for _, p := range all {
		l.Packages = append(l.Packages, *p)
	}
	slices.SortFunc(l.Packages, func(a, b Package) int { return strings.Compare(a.Name, b.Name) })
	return l, nil
}
