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
)

// Streams are the standard streams a command writes to, injected so tests can
// capture them.
type Streams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
}

// StandardStreams returns the process's stdin, stdout and stderr.
func StandardStreams() Streams {
	return Streams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
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
	return root
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

// UsageError marks an error caused by invalid flags or arguments.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// ExitCode maps an error returned by a command to the process exit status.
func ExitCode(err error) int {
	var usage *UsageError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &usage):
		return ExitUsage
	default:
		return ExitFailure
	}
}
