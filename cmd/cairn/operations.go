package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/cairn-os/cairn/supervisor/apiclient"
	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/spf13/cobra"
)

// exitInterrupted is the exit code after Ctrl-C, as shells report a SIGINT.
const exitInterrupted = 130

// notifyInterrupt relays Ctrl-C (SIGINT) to ch until the returned stop is called.
// Tests replace it to press Ctrl-C without a signal.
var notifyInterrupt = func(ch chan<- os.Signal) (stop func()) {
	signal.Notify(ch, os.Interrupt)
	return func() { signal.Stop(ch) }
}

// interruptible returns a context that ends at Ctrl-C, for transfers that stop
// cleanly and say how to resume.
func interruptible(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	ch := make(chan os.Signal, 1)
	stop := notifyInterrupt(ch)
	go func() {
		select {
		case <-ch:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, func() { stop(); cancel() }
}

// pollEvery is how long one wait for an operation lasts: short on a terminal, to
// show its progress, and longer elsewhere.
func (a *app) pollEvery() time.Duration {
	if terminalWidth(a.stderr) > 0 {
		return time.Second
	}
	return 20 * time.Second
}

// waitOp waits for op to end, drawing its progress on a terminal. Ctrl-C asks, on a
// terminal, whether to cancel the operation; otherwise (or when the answer is no) it
// stops waiting and says that the operation goes on.
func (a *app) waitOp(ctx context.Context, c *apiclient.Client, op engine.Operation) (engine.Operation, error) {
	sigs := make(chan os.Signal, 1)
	stop := notifyInterrupt(sigs)
	defer stop()
	line := a.statusLine()
	defer line.clear()
	start := time.Now()
	tick := 0
	failures := 0
	for op.State == engine.OpRunning {
		type answer struct {
			op  engine.Operation
			err error
		}
		wctx, cancel := context.WithCancel(ctx)
		ch := make(chan answer, 1)
		go func() {
			o, err := c.WaitOperation(wctx, op.ID, a.pollEvery())
			ch <- answer{o, err}
		}()
		// The spinner turns while the engine holds the answer back.
		ticker := time.NewTicker(250 * time.Millisecond)
		var got answer
		interrupted := false
	waiting:
		for {
			line.draw(operationLine(op, time.Since(start), tick, line.width), true)
			select {
			case got = <-ch:
				break waiting
			case <-ticker.C:
				tick++
			case <-sigs:
				interrupted = true
				break waiting
			case <-ctx.Done():
				got.err = ctx.Err()
				break waiting
			}
		}
		ticker.Stop()
		cancel()
		if interrupted {
			line.clear()
			return a.interruptedWait(ctx, c, op)
		}
		if got.err != nil {
			failures++
			if apiclient.StatusOf(got.err) != 0 || failures > 5 || ctx.Err() != nil {
				return op, fmt.Errorf("wait for operation %s: %w\n  it may go on; follow it with `cairn operations wait %s`", op.ID, got.err, op.ID)
			}
			time.Sleep(time.Second)
			continue
		}
		failures = 0
		op = got.op
	}
	return op, nil
}

// interruptedWait handles Ctrl-C while waiting for op.
func (a *app) interruptedWait(ctx context.Context, c *apiclient.Client, op engine.Operation) (engine.Operation, error) {
	goesOn := &exitErr{code: exitInterrupted, err: fmt.Errorf(
		"stopped waiting; operation %s (%s %s) goes on.\n  follow it with `cairn operations wait %s`, cancel it with `cairn operations cancel %s`",
		op.ID, op.Kind, op.Target, op.ID, op.ID)}
	if !isTerminal(a.stdin) {
		return op, goesOn
	}
	fmt.Fprintf(a.stderr, "\nCancel operation %s (%s %s)? Otherwise it goes on without you watching. [y/N] ", op.ID, op.Kind, op.Target)
	answer, _ := bufio.NewReader(a.stdin).ReadString('\n')
	if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
		return op, goesOn
	}
	fmt.Fprintf(a.stderr, "Canceling %s…\n", op.ID)
	end, err := c.CancelOperation(context.WithoutCancel(ctx), op.ID)
	if err != nil {
		return op, fmt.Errorf("cancel operation %s: %w", op.ID, err)
	}
	return end, nil
}

// noWaitFlag adds --no-wait to a command that starts an operation.
func noWaitFlag(cmd *cobra.Command, v *bool) {
	cmd.Flags().BoolVar(v, "no-wait", false, "print the operation's ID and return at once instead of waiting for it")
}

// finishOp waits for an operation a command started (unless noWait) and reports its
// end: printed when it succeeded, an error when it failed or was canceled.
func (a *app) finishOp(ctx context.Context, c *apiclient.Client, op engine.Operation, noWait bool) error {
	_, err := a.followOp(ctx, c, op, noWait)
	return err
}

// followOp is finishOp that also returns the operation's last state.
func (a *app) followOp(ctx context.Context, c *apiclient.Client, op engine.Operation, noWait bool) (engine.Operation, error) {
	if noWait {
		if a.output == "json" {
			return op, printJSON(a.stdout, op)
		}
		fmt.Fprintln(a.stdout, op.ID)
		fmt.Fprintf(a.stderr, "Started operation %s (%s %s); follow it with `cairn operations wait %s`\n", op.ID, op.Kind, op.Target, op.ID)
		return op, nil
	}
	end, err := a.waitOp(ctx, c, op)
	if err != nil {
		return end, err
	}
	return end, a.reportOp(end)
}

// reportOp prints an operation that has ended, and returns an error when it did not
// succeed.
func (a *app) reportOp(op engine.Operation) error {
	if err := printOperation(a, op); err != nil {
		return err
	}
	return opError(op)
}

// opError is the error of an operation that failed or was canceled.
func opError(op engine.Operation) error {
	switch op.State {
	case engine.OpFailed:
		return fmt.Errorf("operation %s (%s %s) failed: %s", op.ID, op.Kind, op.Target, op.Error)
	case engine.OpCanceled:
		return fmt.Errorf("operation %s (%s %s) was canceled", op.ID, op.Kind, op.Target)
	}
	return nil
}

func printOperation(a *app, op engine.Operation) error {
	fields := [][2]string{
		{"operation", op.ID},
		{"kind", op.Kind},
		{"target", op.Target},
		{"state", string(op.State)},
	}
	if op.State == engine.OpRunning {
		fields = append(fields, [2]string{"progress", fmt.Sprintf("%d%%", int(op.Progress*100))})
	}
	if op.Message != "" && op.State == engine.OpRunning {
		fields = append(fields, [2]string{"message", op.Message})
	}
	if op.Result != "" {
		fields = append(fields, [2]string{"result", op.Result})
	}
	if op.Error != "" {
		fields = append(fields, [2]string{"error", op.Error})
	}
	fields = append(fields, [2]string{"started", op.CreatedAt.Local().Format("2006-01-02 15:04:05")})
	if !op.EndedAt.IsZero() {
		fields = append(fields, [2]string{"took", op.EndedAt.Sub(op.CreatedAt).Round(time.Millisecond).String()})
	}
	return printObject(a, op, fields)
}

func (a *app) operationsCmd() *cobra.Command {
	cmd := group("operations", "Follow and cancel long work: copies, conversions, backups, shutdowns")
	cmd.Aliases = []string{"ops"}
	cmd.AddCommand(a.command("list", "List your operations, newest first", exactArgs(),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			ops, err := c.Operations(ctx)
			if err != nil {
				return err
			}
			return printList(a, ops, []string{"ID", "KIND", "TARGET", "STATE", "PROGRESS", "STARTED", "RESULT"}, func(o engine.Operation) []string {
				result := o.Result
				if o.Error != "" {
					result = o.Error
				}
				progress := fmt.Sprintf("%d%%", int(o.Progress*100))
				if o.State == engine.OpFailed || o.State == engine.OpCanceled {
					progress = "-"
				}
				return []string{o.ID, o.Kind, o.Target, string(o.State), progress, ago(o.CreatedAt), orDash(result)}
			})
		}))
	cmd.AddCommand(a.command("show ID", "Show an operation", exactArgs("ID"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			op, err := c.Operation(ctx, args[0])
			if err != nil {
				return err
			}
			return printOperation(a, op)
		}))
	cmd.AddCommand(a.command("wait ID", "Wait for an operation to end, showing its progress", exactArgs("ID"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			op, err := c.Operation(ctx, args[0])
			if err != nil {
				return err
			}
			return a.finishOp(ctx, c, op, false)
		}))
	cmd.AddCommand(a.command("cancel ID", "Cancel a running operation; its work undoes what it did", exactArgs("ID"),
		func(ctx context.Context, c *apiclient.Client, args []string) error {
			op, err := c.CancelOperation(ctx, args[0])
			if err != nil {
				return err
			}
			if err := printOperation(a, op); err != nil {
				return err
			}
			if op.State == engine.OpFailed {
				return opError(op)
			}
			return nil
		}))
	return cmd
}
