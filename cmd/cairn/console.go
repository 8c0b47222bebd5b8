package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/cairn-os/cairn/supervisor/apiclient"
	"github.com/coder/websocket"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// escapeKey is Ctrl-], the key that leaves the console, as in telnet and virsh.
const escapeKey = 0x1d

// errLeft is a console session the user left with the escape key.
var errLeft = errors.New("left the console")

func (a *app) consoleCmd() *cobra.Command {
	return a.command("console ID", "Attach this terminal to the server's serial console (leave with Ctrl-])", exactArgs("ID"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			ws, err := c.DialConsole(ctx, args[0], "serial")
			if err != nil {
				return err
			}
			defer ws.CloseNow()
			fmt.Fprintf(a.stderr, "Connected to the serial console of %s. Leave with Ctrl-] (the escape character is ^]).\r\n", args[0])
			restore := func() {}
			if f, ok := a.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
				// Raw: every key, Ctrl-C too, goes to the guest; only Ctrl-] is ours.
				old, err := term.MakeRaw(int(f.Fd()))
				if err != nil {
					return fmt.Errorf("console of server %s: put the terminal in raw mode: %w", args[0], err)
				}
				restore = func() { term.Restore(int(f.Fd()), old) }
			}
			err = consoleSession(ctx, ws, a.stdin, a.stdout)
			restore()
			return a.consoleEnded(args[0], err)
		})
}

// consoleEnded turns how a session ended into what the user reads.
func (a *app) consoleEnded(id string, err error) error {
	var ce websocket.CloseError
	switch {
	case errors.Is(err, errLeft):
		fmt.Fprintf(a.stderr, "\r\nLeft the console of %s; the server keeps running.\r\n", id)
		return nil
	case errors.Is(err, io.EOF):
		fmt.Fprintf(a.stderr, "\r\nInput ended; left the console of %s.\r\n", id)
		return nil
	case errors.As(err, &ce) && ce.Code == websocket.StatusNormalClosure:
		fmt.Fprintf(a.stderr, "\r\nThe console of %s was closed: %s\r\n", id, orDash(ce.Reason))
		return nil
	case errors.As(err, &ce):
		return fmt.Errorf("the console of %s was closed: %s", id, orDash(ce.Reason))
	case err != nil:
		return fmt.Errorf("console of server %s: %w", id, err)
	}
	return nil
}

// beforeEscape returns what of p goes to the guest: everything before the escape
// key, and whether the key was pressed.
func beforeEscape(p []byte) ([]byte, bool) {
	if i := bytes.IndexByte(p, escapeKey); i >= 0 {
		return p[:i], true
	}
	return p, false
}

// consoleSession relays the guest's output to out and in to the guest until the
// user presses the escape key (errLeft), in ends (io.EOF) or the console closes
// (a websocket.CloseError with the engine's reason).
func consoleSession(ctx context.Context, ws *websocket.Conn, in io.Reader, out io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	go func() {
		for {
			_, data, err := ws.Read(ctx)
			if err != nil {
				errc <- err
				return
			}
			if _, err := out.Write(data); err != nil {
				errc <- fmt.Errorf("write the console's output: %w", err)
				return
			}
		}
	}()
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := in.Read(buf)
			if n > 0 {
				send, left := beforeEscape(buf[:n])
				if len(send) > 0 {
					if werr := ws.Write(ctx, websocket.MessageBinary, send); werr != nil {
						errc <- werr
						return
					}
				}
				if left {
					errc <- errLeft
					return
				}
			}
			if err != nil {
				errc <- err
				return
			}
		}
	}()
	err := <-errc
	if errors.Is(err, errLeft) || errors.Is(err, io.EOF) {
		ws.Close(websocket.StatusNormalClosure, "the user left")
	}
	return err
}
