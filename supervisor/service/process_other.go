//go:build !linux

package service

import (
	"errors"
	"os"
	"syscall"

	"github.com/cairn-os/cairn/supervisor/hostcmd"
)

// errNotLinux keeps the package building elsewhere (the Status type is shared with the
// engine); supervising programs needs Linux.
var errNotLinux = errors.New("supervising programs needs linux")

func startProcess(Spec, *os.File) (*hostcmd.Process, error) { return nil, errNotLinux }

func signalGroup(int, syscall.Signal) error { return errNotLinux }
