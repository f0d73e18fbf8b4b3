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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], cli.StandardStreams())
	stop()
	os.Exit(code)
}
