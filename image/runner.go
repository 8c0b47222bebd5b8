package image

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Runner runs the host programs the builder needs (apt-get, dpkg-deb, tar, depmod,
// mksquashfs, grub-mkrescue). The builder is an ordinary program, not PID 1, so it
// uses os/exec directly; every host program goes through this one type.
type Runner struct {
	// Logger gets one debug line per command.
	Logger *slog.Logger
	// Env is added to the environment of every command.
	Env []string
}

// Cmd is one host command.
type Cmd struct {
	Name string
	Args []string
	// Dir is the working folder (empty: the builder's).
	Dir string
	// Env is added to the runner's environment for this command only.
	Env []string
	// Stdout receives the standard output; nil collects it for the result.
	Stdout io.Writer
}

// Run runs name with args and returns its standard output. A failure's error names the
// command and carries its last line of standard error, which usually says why.
func (r *Runner) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	return r.RunCmd(ctx, Cmd{Name: name, Args: args})
}

// RunCmd runs c and returns its standard output when c.Stdout is nil.
func (r *Runner) RunCmd(ctx context.Context, c Cmd) ([]byte, error) {
	cmd := r.command(ctx, c)
	var out, stderr bytes.Buffer
	cmd.Stdout = &out
	if c.Stdout != nil {
		cmd.Stdout = c.Stdout
	}
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	r.logger().Debug("ran", "cmd", c.Name, "args", shortArgs(c.Args), "took", time.Since(start).Round(time.Millisecond))
	if err != nil {
		return out.Bytes(), fmt.Errorf("%s %s: %w: %s", c.Name, shortArgs(c.Args), err, lastLine(stderr.Bytes(), out.Bytes()))
	}
	return out.Bytes(), nil
}

// Pipe runs first with its standard output connected to the standard input of second,
// as a shell's `first | second` does, and fails when either fails.
func (r *Runner) Pipe(ctx context.Context, first, second Cmd) error {
	a := r.command(ctx, first)
	b := r.command(ctx, second)
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("pipe %s | %s: %w", first.Name, second.Name, err)
	}
	var aErr, bErr bytes.Buffer
	a.Stdout, a.Stderr = pw, &aErr
	b.Stdin, b.Stderr, b.Stdout = pr, &bErr, &bErr
	if err := a.Start(); err != nil {
		pr.Close()
		pw.Close()
		return fmt.Errorf("%s: %w", first.Name, err)
	}
	if err := b.Start(); err != nil {
		pr.Close()
		pw.Close()
		_ = a.Process.Kill()
		_ = a.Wait()
		return fmt.Errorf("%s: %w", second.Name, err)
	}
	pw.Close()
	pr.Close()
	ea := a.Wait()
	eb := b.Wait()
	if ea != nil {
		return fmt.Errorf("%s %s: %w: %s", first.Name, shortArgs(first.Args), ea, lastLine(aErr.Bytes(), nil))
	}
	if eb != nil {
		return fmt.Errorf("%s %s: %w: %s", second.Name, shortArgs(second.Args), eb, lastLine(bErr.Bytes(), nil))
	}
	return nil
}

func (r *Runner) command(ctx context.Context, c Cmd) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.Name, c.Args...)
	cmd.Dir = c.Dir
	cmd.Env = append(append(os.Environ(), r.Env...), c.Env...)
	return cmd
}

func (r *Runner) logger() *slog.Logger {
	if r.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Logger
}

// shortArgs keeps error messages readable when a command has hundreds of arguments.
func shortArgs(args []string) string {
	if len(args) > 12 {
		return strings.Join(args[:12], " ") + fmt.Sprintf(" … (%d more)", len(args)-12)
	}
	return strings.Join(args, " ")
}

func lastLine(stderr, stdout []byte) string {
	s := strings.TrimSpace(string(stderr))
	if s == "" {
		s = strings.TrimSpace(string(stdout))
	}
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 400 {
		s = s[:400]
	}
	return s
}
