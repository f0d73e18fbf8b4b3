package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"syscall"
	"time"
)

// Command is the action that runs any program while the grant is in place.
// Its output streams through, and its exit code becomes Elevate's.
type Command struct {
	Args   []string
	Env    []string // full environment; nil inherits Elevate's
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// GracePeriod is how long the program has to exit after SIGTERM when the
	// elevation is cancelled, before it is killed. Default 10s.
	GracePeriod time.Duration
}

// Name returns a label naming the program, not its arguments, which may carry
// sensitive values.
func (c *Command) Name() string { return "command " + c.Args[0] }

// Run starts the program and waits for it. A cancelled ctx sends SIGTERM.
func (c *Command) Run(ctx context.Context) (ActionResult, error) {
	if len(c.Args) == 0 {
		return ActionResult{ExitCode: 2}, errors.New("no command given: put it after `--`")
	}
	cmd := exec.CommandContext(ctx, c.Args[0], c.Args[1:]...)
	cmd.Env = c.Env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = c.Stdin, c.Stdout, c.Stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = c.GracePeriod
	if cmd.WaitDelay <= 0 {
		cmd.WaitDelay = 10 * time.Second
	}
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return ActionResult{ExitCode: 0}, nil
	case errors.As(err, &exit):
		code := exit.ExitCode()
		if code < 0 {
			code = 128 + int(syscall.SIGTERM) // killed by a signal
		}
		return ActionResult{ExitCode: code}, fmt.Errorf("%s exited with code %d", c.Args[0], code)
	default:
		return ActionResult{ExitCode: 127}, fmt.Errorf("start %s: %w", c.Args[0], err)
	}
}
