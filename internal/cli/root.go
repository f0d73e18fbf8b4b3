// Package cli implements the elevate commands. Only main exits; every command
// returns an error that ExitCode maps to the documented exit status.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/lifecycle"
	"github.com/elevate-dev/elevate/internal/plan"
	"github.com/elevate-dev/elevate/internal/rotate"
)

// Streams are the standard streams a command writes to, injected so tests can
// capture them.
type Streams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
	// Getenv reads the environment; tests replace it.
	Getenv func(string) string
	// ErrIsTerminal reports whether ErrOut is a terminal, which selects the
	// live progress line over timestamped lines.
	ErrIsTerminal bool
	// Clock is the time source of the grant lifecycle of run,
	// rotate-secret, apply and revoke; nil means the system clock. Tests
	// replace it to pass PIM's five minute minimum without waiting.
	Clock lifecycle.Clock
}

// StandardStreams returns the process's stdin, stdout and stderr.
func StandardStreams() Streams {
	return Streams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr, Getenv: os.Getenv,
		ErrIsTerminal: term.IsTerminal(int(os.Stderr.Fd())) && os.Getenv("CI") == ""}
}

func (s Streams) getenv(key string) string {
	if s.Getenv == nil {
		return ""
	}
	return s.Getenv(key)
}

// Main runs the command line args and returns the process exit code.
func Main(ctx context.Context, args []string, streams Streams) int {
	root := NewRootCommand(streams)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err != nil {
		fmt.Fprintf(streams.ErrOut, "error: %v\n", err)
	}
	return ExitCode(err)
}

// NewRootCommand builds the elevate command tree.
func NewRootCommand(streams Streams) *cobra.Command {
	root := &cobra.Command{
		Use:           "elevate",
		Short:         "Just-in-time Azure privileges for automation",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	for _, add := range commands {
		root.AddCommand(add(streams))
	}
	markUsageErrors(root)
	return root
}

// markUsageErrors makes cobra's own flag and argument errors (an unknown
// flag, a missing command after `--`) UsageErrors, so they exit with
// ExitUsage like every other invalid input.
func markUsageErrors(root *cobra.Command) {
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &UsageError{err} })
	for _, cmd := range root.Commands() {
		check := cmd.Args
		if check == nil {
			continue
		}
		cmd.Args = func(c *cobra.Command, args []string) error {
			if err := check(c, args); err != nil {
				return &UsageError{err}
			}
			return nil
		}
	}
}

// commands lists the constructors of the subcommands; each file of this
// package registers its own in an init function.
var commands []func(Streams) *cobra.Command

// Exit codes, documented in the README.
const (
	ExitOK            = 0
	ExitFailure       = 1
	ExitUsage         = 2
	ExitDenied        = 3
	ExitRevokeFailed  = 4
	ExitActionFailure = 5
)

// Exit code meanings, for help text and the README:
//
//	0 success
//	1 failure; every grant that was made has been removed
//	2 invalid flags or input; nothing was granted
//	3 the request was denied, or the plan is not the approved one or expired
//	4 a revoke failed: a grant may remain, see the audit log
//	5 the action's validation failed and the previous secret was restored
//
// `elevate run` exits with the command's own code when the command fails and
// every grant was removed.

// exitError carries an exit code chosen by the command, such as the exit
// code of the program that `elevate run` ran.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// UsageError marks an error caused by invalid flags or arguments.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// ExitCode maps an error returned by a command to the process exit status.
func ExitCode(err error) int {
	var usage *UsageError
	var exit *exitError
	var revoke *lifecycle.RevokeError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &revoke):
		return ExitRevokeFailed
	case errors.As(err, &exit):
		return exit.code
	case errors.As(err, &usage), errors.Is(err, access.ErrInvalidInput):
		return ExitUsage
	case errors.Is(err, rotate.ErrValidation):
		return ExitActionFailure
	case errors.Is(err, plan.ErrTampered), errors.Is(err, plan.ErrMismatch), errors.Is(err, plan.ErrExpired):
		return ExitDenied
	default:
		return ExitFailure
	}
}
