// Command elevate gives automation short, approved, audited Azure privileges.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/elevate-dev/elevate/internal/cli"
)

func main() {
	// A reader of stdout or stderr that goes away (a `| head` in a job
	// step) must not kill elevate between grant and revoke: with SIGPIPE
	// handled, writes to the closed pipe fail with EPIPE instead, and the
	// revoke still runs. Unlike ignoring it, handling it is reset for the
	// commands elevate starts.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], cli.StandardStreams())
	stop()
	os.Exit(code)
}
