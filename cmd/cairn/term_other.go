//go:build !linux

package main

import (
	"errors"
	"io"
)

// isTerminal reports whether r is a terminal; off Linux the CLI does not ask.
func isTerminal(r io.Reader) bool { return false }

// readPassword is not available off Linux.
func readPassword(r io.Reader, w io.Writer, prompt string) (string, error) {
	return "", errors.New("read password: use --password-stdin")
}
