package service

import (
	"os"
	"os/exec"
	"syscall"

	"github.com/cairn-os/cairn/supervisor/hostcmd"
)

// startProcess starts a service's program in its own process group with out as its
// stdout and stderr, through hostcmd so that PID 1's reaper does not steal its exit.
func startProcess(s Spec, out *os.File) (*hostcmd.Process, error) {
	cmd := exec.Command(s.Path, s.Args...)
	cmd.Env = append(os.Environ(), s.Env...)
	cmd.Dir = s.Dir
	cmd.Stdout = out
	cmd.Stderr = out
	// Its own group, so that stopping the service reaches the helpers it forks and a
	// Ctrl-C on the console (in --dev mode) does not reach it through ours.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return hostcmd.Start(cmd)
}

// signalGroup sends sig to the process group led by pid.
func signalGroup(pid int, sig syscall.Signal) error {
	return syscall.Kill(-pid, sig)
}
