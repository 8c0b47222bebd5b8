package main

import (
	"strings"
	"testing"
	"time"

	"github.com/cairn-os/cairn/supervisor/engine"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"512":   512,
		"1K":    1024,
		"512M":  512 << 20,
		"10G":   10 << 30,
		"10gib": 10 << 30,
		"2 GB":  2 << 30,
		"1.5G":  3 << 29,
		"1T":    1 << 40,
	} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "G", "10Q", "-1", "1.2.3G", "99999999999T"} {
		if got, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d; want an error", in, got)
		}
	}
	for in, want := range map[string]int{"1024": 1024, "512M": 512, "2G": 2048, "1.5G": 1536} {
		if got, err := parseMemoryMiB(in); err != nil || got != want {
			t.Errorf("parseMemoryMiB(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if _, err := parseMemoryMiB("1000K"); err == nil {
		t.Error("memory that is not whole MiB was taken")
	}
	for in, want := range map[string]int{"120": 120, "120s": 120, "2m": 120} {
		if got, err := parseSeconds(in); err != nil || got != want {
			t.Errorf("parseSeconds(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
}

func TestParseDisk(t *testing.T) {
	d, err := parseDisk("debian:scsi,clone,node=n-2")
	if err != nil || d != (engine.ServerDiskRequest{Image: "debian", Bus: "scsi", Clone: true, CloneNode: "n-2"}) {
		t.Fatalf("parseDisk = %+v, %v", d, err)
	}
	if d, err := parseDisk("i-abc"); err != nil || d != (engine.ServerDiskRequest{Image: "i-abc"}) {
		t.Fatalf("parseDisk(plain) = %+v, %v", d, err)
	}
	for _, bad := range []string{"", ":virtio", "x,snapshot", "x,node="} {
		if _, err := parseDisk(bad); err == nil {
			t.Errorf("parseDisk(%q) took it", bad)
		}
	}
}

func TestProgressLines(t *testing.T) {
	line := transferLine("uploading", 50<<20, 100<<20, 50<<20, 2*time.Second, 100)
	for _, want := range []string{"uploading [", " 50%", "50.0 MiB / 100.0 MiB", "25.0 MiB/s"} {
		if !strings.Contains(line, want) {
			t.Errorf("transfer line %q lacks %q", line, want)
		}
	}
	if got := bar(0.5, 12); got != "[====>     ]" {
		t.Errorf("bar(0.5, 12) = %q", got)
	}
	if got := bar(1, 12); got != "[==========]" {
		t.Errorf("bar(1, 12) = %q", got)
	}
	op := engine.Operation{Kind: "shutdown", Target: "s-1", Message: "waiting for the guest to power off"}
	if got := operationLine(op, 12*time.Second, 1, 80); got != "/ shutdown s-1: waiting for the guest to power off (12s)" {
		t.Errorf("spinner line %q", got)
	}
	op = engine.Operation{Kind: "convert", Target: "i-1", Progress: 0.25}
	if got := operationLine(op, 3*time.Second, 0, 60); !strings.Contains(got, " 25% (3s)") || !strings.Contains(got, "convert i-1 [") {
		t.Errorf("progress line %q", got)
	}
}
