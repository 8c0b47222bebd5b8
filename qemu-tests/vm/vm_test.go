package vm

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

func TestArgsAdminShape(t *testing.T) {
	empty := ""
	v := &VM{
		Name: "admin", Memory: 4096, CPUs: 2, Firmware: UEFI, Accel: TCG,
		CDROM: "/x/cairn.iso", Disks: []string{"/x/data.qcow2", "/x/cfg.img"},
		NICs: []NIC{
			{MAC: "52:54:00:00:00:02", User: &UserNet{HostFwd: []string{"tcp:127.0.0.1:8443-:443"}}},
			{MAC: "52:54:00:00:00:01", Hub: "/x/hub.sock", ROMFile: &empty},
		},
		Boot: []BootDevice{BootCDROM}, DebugSerial: true, Workdir: "/x/admin",
	}
	args, err := v.Args()
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Join(args, " ")
	for _, want := range []string{
		"-accel tcg", "-m 4096", "-smp 2", "q35,graphics=off", "virtio-rng-pci",
		"file=/usr/share/OVMF/OVMF_CODE_4M.fd", "file=/x/admin/OVMF_VARS.fd",
		"ide-cd,drive=cd0,bootindex=1",
		"format=qcow2,discard=unmap,file=/x/data.qcow2", "format=raw,discard=unmap,file=/x/cfg.img",
		"user,id=net0,net=192.168.76.0/24,hostfwd=tcp:127.0.0.1:8443-:443",
		"virtio-net-pci,netdev=net0,mac=52:54:00:00:00:02",
		"stream,id=net1,server=off,addr.type=unix,addr.path=/x/hub.sock",
		"virtio-net-pci,netdev=net1,mac=52:54:00:00:00:01,romfile=",
		"logfile=/x/admin/serial.log", "logfile=/x/admin/debug.log",
		"-qmp unix:/x/admin/qmp.sock,server=on,wait=off",
		"-cpu qemu64,-svm",
	} {
		if !strings.Contains(line, want) {
			t.Errorf("command line lacks %q:\n%s", want, line)
		}
	}
	if strings.Contains(line, "-no-reboot") {
		t.Error("guest may not reboot itself unless NoReboot is set")
	}
}

func TestArgsNetworkBootUsesFirstNIC(t *testing.T) {
	v := &VM{Name: "c", Accel: TCG, Workdir: "/w", Boot: []BootDevice{BootNetwork},
		NICs: []NIC{{MAC: "52:54:00:00:01:01", Hub: "/h"}, {MAC: "52:54:00:00:01:02", Hub: "/h"}}}
	args, err := v.Args()
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Join(args, " ")
	if !strings.Contains(line, "mac=52:54:00:00:01:01,bootindex=1") || strings.Count(line, "bootindex") != 1 {
		t.Errorf("want only the first NIC in the boot order:\n%s", line)
	}
}

func TestArgsRefuseHostFwdBeyondLoopback(t *testing.T) {
	v := &VM{Name: "a", Accel: TCG, Workdir: "/w",
		NICs: []NIC{{User: &UserNet{HostFwd: []string{"tcp::8443-:443"}}}}}
	if _, err := v.Args(); err == nil {
		t.Fatal("a port forwarded on every host address was accepted")
	}
	v.NICs = []NIC{{MAC: "52:54:00:00:00:01"}}
	if _, err := v.Args(); err == nil {
		t.Fatal("a NIC on no network was accepted")
	}
}

func TestCPIOIsReadByCpio(t *testing.T) {
	cpio, err := exec.LookPath("cpio")
	if err != nil {
		t.Skip("needs cpio on PATH (`make deps` installs it)")
	}
	var buf bytes.Buffer
	err = writeCPIO(&buf, map[string]cpioEntry{
		"bin":         {mode: cpioDir | 0o755},
		"bin/sh":      {mode: cpioSymlink | 0o777, data: []byte("busybox")},
		"dev":         {mode: cpioDir | 0o755},
		"dev/console": {mode: cpioCharDev | 0o600, rdev: [2]uint32{5, 1}},
		"init":        {mode: cpioFile | 0o755, data: []byte("#!/bin/sh\n")},
	})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(cpio, "-t", "-v", "--quiet")
	cmd.Stdin = &buf
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -t: %v: %s", err, out)
	}
	for _, want := range []string{"bin/sh -> busybox", "crw-------", "5,   1", " init"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("cpio -tv lacks %q:\n%s", want, out)
		}
	}
}
