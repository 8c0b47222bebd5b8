package image

import (
	"strings"
	"testing"
)

func TestParsePackageList(t *testing.T) {
	in := "# comment\nqemu-utils   # qemu-img\n\n!python3\nlibc6\n"
	l, err := ParsePackageList("compute", strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(l.Install, " ") != "qemu-utils libc6" || strings.Join(l.Exclude, " ") != "python3" {
		t.Errorf("got install %q exclude %q", l.Install, l.Exclude)
	}
	for _, bad := range []string{"two names\n", "Qemu\n", "x\n", "-lead\n"} {
		if _, err := ParsePackageList("admin", strings.NewReader(bad)); err == nil {
			t.Errorf("ParsePackageList(%q) took a bad line", bad)
		}
	}
}

func TestLockRoundTrip(t *testing.T) {
	hash := strings.Repeat("ab", 32)
	byRole := map[string][]Package{
		"admin":   {{Name: "libc6", Version: "2.36-9+deb12u9", Arch: "amd64", SHA256: hash}, {Name: "qemu-utils", Version: "1:7.2+dfsg-7", Arch: "amd64", SHA256: hash}},
		"compute": {{Name: "libc6", Version: "2.36-9+deb12u9", Arch: "amd64", SHA256: hash}, {Name: "adduser", Version: "3.134", Arch: "all", SHA256: hash}},
	}
	l, err := MergeRoles(byRole)
	if err != nil {
		t.Fatal(err)
	}
	text := string(l.Format())
	wantLines := []string{
		"adduser 3.134 all " + hash + " compute",
		"libc6 2.36-9+deb12u9 amd64 " + hash + " admin,compute",
		"qemu-utils 1:7.2+dfsg-7 amd64 " + hash + " admin",
	}
	if !strings.HasSuffix(text, strings.Join(wantLines, "\n")+"\n") {
		t.Errorf("lock text:\n%s\nwant it to end with:\n%s", text, strings.Join(wantLines, "\n"))
	}
	back, err := ParseLock(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if string(back.Format()) != text {
		t.Errorf("lock does not survive a round trip:\n%s", back.Format())
	}
	if got := len(back.Role("compute")); got != 2 {
		t.Errorf("compute has %d packages, want 2", got)
	}
	if got := back.Packages[2].FileName(); got != "qemu-utils_1%3a7.2+dfsg-7_amd64.deb" {
		t.Errorf("FileName = %q (apt writes an epoch's colon as %%3a)", got)
	}
}

func TestMergeRolesConflict(t *testing.T) {
	_, err := MergeRoles(map[string][]Package{
		"admin":   {{Name: "libc6", Version: "1", Arch: "amd64", SHA256: strings.Repeat("a", 64)}},
		"compute": {{Name: "libc6", Version: "2", Arch: "amd64", SHA256: strings.Repeat("b", 64)}},
	})
	if err == nil {
		t.Error("two versions of one package were merged")
	}
}

func TestParseLockErrors(t *testing.T) {
	for _, bad := range []string{"", "# only comments\n", "libc6 2.36 amd64 short admin\n", "libc6 2.36 amd64 " + strings.Repeat("a", 64) + " desktop\n"} {
		if _, err := ParseLock(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseLock(%q) took a bad lock", bad)
		} else if !strings.Contains(err.Error(), "make lock") && !strings.Contains(err.Error(), "role") {
			t.Errorf("ParseLock(%q) error %q does not say what to do", bad, err)
		}
	}
}

func TestParsePrintURIs(t *testing.T) {
	out := `'http://deb.debian.org/debian/pool/main/g/glibc/libc6_2.36-9%2bdeb12u14_amd64.deb' libc6_2.36-9+deb12u14_amd64.deb 2759320 SHA256:` + strings.Repeat("1", 64) + `
'http://deb.debian.org/debian/pool/main/q/qemu/qemu-utils_1%3a7.2+dfsg-7+deb12u18+b3_amd64.deb' qemu-utils_1%3a7.2+dfsg-7+deb12u18+b3_amd64.deb 2000 SHA256:` + strings.Repeat("2", 64) + `
'http://deb.debian.org/debian/pool/main/a/adduser/adduser_3.134_all.deb' adduser_3.134_all.deb 1000 SHA256:` + strings.Repeat("3", 64) + `
`
	pkgs, err := parsePrintURIs([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range pkgs {
		got = append(got, p.line())
	}
	want := []string{
		"adduser 3.134 all " + strings.Repeat("3", 64),
		"libc6 2.36-9+deb12u14 amd64 " + strings.Repeat("1", 64),
		"qemu-utils 1:7.2+dfsg-7+deb12u18+b3 amd64 " + strings.Repeat("2", 64),
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("parsePrintURIs:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	md5 := `'http://x/libc6_1_amd64.deb' libc6_1_amd64.deb 1 MD5Sum:0123456789abcdef0123456789abcdef`
	if _, err := parsePrintURIs([]byte(md5)); err == nil {
		t.Error("a line without SHA256 was taken")
	}
}

func TestKernelPackage(t *testing.T) {
	pkgs := []Package{{Name: "linux-image-amd64", Arch: "amd64"}, {Name: "linux-image-6.1.0-56-amd64", Arch: "amd64"}, {Name: "kmod", Arch: "amd64"}}
	k, err := KernelPackage(pkgs)
	if err != nil || k.Name != "linux-image-6.1.0-56-amd64" {
		t.Errorf("KernelPackage = %v, %v", k.Name, err)
	}
	if _, err := KernelPackage(pkgs[2:]); err == nil {
		t.Error("a lock without a kernel was accepted")
	}
}
