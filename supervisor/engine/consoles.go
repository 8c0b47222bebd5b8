package engine

import (
	"context"
	"fmt"

	"github.com/cairn-os/cairn/supervisor/console"
)

// ConsoleTarget returns how to reach a server's serial or graphical console, and the
// server's name. Only the server's owner and admins get in; readonly users too when
// they own it (they look, and a console is looking and typing at a guest they own).
func (e *Engine) ConsoleTarget(ctx context.Context, u User, id string, kind console.Kind) (console.Target, string, error) {
	op := serverOp("open the console of", id)
	if err := requireUser(u, op); err != nil {
		return console.Target{}, "", err
	}
	if kind != console.Serial && kind != console.VNC {
		return console.Target{}, "", fmt.Errorf("%s: %w: the console is serial or vnc", op, ErrInvalid)
	}
	s, err := e.Server(ctx, u, id)
	if err != nil {
		return console.Target{}, "", err
	}
	if s.Owner != u.ID && u.Role != RoleAdmin {
		return console.Target{}, "", fmt.Errorf("%s: %w: only its owner and admins may", op, ErrForbidden)
	}
	if s.Node == "" {
		return console.Target{}, "", fmt.Errorf("%s: %w: it has never run; start it first", op, ErrInvalid)
	}
	if kind == console.VNC && s.State != ServerRunning && s.State != ServerPaused {
		return console.Target{}, "", fmt.Errorf("%s: %w: it is %s; start it first", op, ErrInvalid, s.State)
	}
	var n Node
	if err := e.store.Get(bucketNodes, s.Node, &n); err != nil {
		return console.Target{}, "", fmt.Errorf("%s: %w", op, notFound(err))
	}
	if e.cfg.Console == nil {
		return console.Target{}, "", fmt.Errorf("%s: %w: this engine cannot reach consoles", op, ErrInvalid)
	}
	return e.cfg.Console(n, s.UUID, kind), s.Name, nil
}
