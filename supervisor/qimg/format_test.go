package qimg

import (
	"errors"
	"strings"
	"testing"
)

func TestParseFormat(t *testing.T) {
	for in, want := range map[string]Format{
		"qcow2": QCOW2, "QCOW2": QCOW2, " Raw ": Raw, "iso": ISO, "VMDK": VMDK, "vdi": VDI, "VhdX": VHDX,
	} {
		if got, err := ParseFormat(in); err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "qcow3", "img", "vpc"} {
		_, err := ParseFormat(in)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseFormat(%q) error = %v, want ErrInvalid", in, err)
			continue
		}
		if !strings.Contains(err.Error(), "qcow2, raw, iso, vmdk, vdi or vhdx") {
			t.Errorf("ParseFormat(%q) error %q does not list the valid formats", in, err)
		}
	}
}

func TestFormatNames(t *testing.T) {
	for _, c := range []struct {
		f         Format
		ext, qemu string
	}{
		{QCOW2, "qcow2", "qcow2"}, {Raw, "img", "raw"}, {ISO, "iso", "raw"},
		{VMDK, "vmdk", "vmdk"}, {VDI, "vdi", "vdi"}, {VHDX, "vhdx", "vhdx"},
	} {
		if got := c.f.Ext(); got != c.ext {
			t.Errorf("%s.Ext() = %q, want %q", c.f, got, c.ext)
		}
		if got := c.f.QemuName(); got != c.qemu {
			t.Errorf("%s.QemuName() = %q, want %q", c.f, got, c.qemu)
		}
	}
}

func TestParseProgress(t *testing.T) {
	for line, want := range map[string]float64{
		"    (0.00/100%)": 0, "    (12.34/100%)": 0.1234, "(100.00/100%)": 1,
	} {
		if got, ok := parseProgress(line); !ok || got != want {
			t.Errorf("parseProgress(%q) = %v, %v; want %v", line, got, ok, want)
		}
	}
	for _, line := range []string{"", "qemu-img: error", "(abc/100%)", "(12/50%)"} {
		if _, ok := parseProgress(line); ok {
			t.Errorf("parseProgress(%q) reported progress", line)
		}
	}
}
