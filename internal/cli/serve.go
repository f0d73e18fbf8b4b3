package cli

import (
	"context"
	"errors"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/elevate-dev/elevate/internal/broker"
	"github.com/elevate-dev/elevate/internal/webui"
)

func init() { commands = append(commands, newServeCommand) }

func newServeCommand(streams Streams) *cobra.Command {
	var configFile string
	cmd := &cobra.Command{
		Use:   "serve --config FILE",
		Short: "Run the Elevate broker: the HTTP API, approvals and the expiry sweeper",
		Long: `Run the broker that pipelines request roles from and reviewers approve in.
The configuration file sets the listener, TLS, storage, policy and how callers
authenticate (see examples/broker/elevate.yaml and docs/broker.md). The
broker's own Azure identity, which holds the right to grant, comes from the
same environment variables as the other commands (AZURE_TENANT_ID,
AZURE_CLIENT_ID, AZURE_CLIENT_SECRET or a federated token, ELEVATE_CREDENTIAL).

SIGINT or SIGTERM stops it gracefully: no new calls are accepted, calls in
flight finish, the sweeper stops and the store is closed. Logs go to stderr
at ELEVATE_LOG_LEVEL (default info), as JSON with ELEVATE_LOG_FORMAT=json.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServe(cmd.Context(), streams, configFile)
		},
	}
	cmd.Flags().StringVar(&configFile, "config", "", "broker configuration file (required)")
	return cmd
}

func runServe(ctx context.Context, streams Streams, configFile string) error {
	if configFile == "" {
		return &UsageError{errors.New("missing --config: give the broker configuration file, such as elevate.yaml")}
	}
	cfg, err := broker.LoadServerConfig(configFile, streams.getenv)
	if err != nil {
		return &UsageError{err}
	}
	srv, err := broker.NewServer(ctx, cfg, broker.ServerOptions{Getenv: streams.getenv, Logger: serveLogger(streams), UI: webui.New})
	if err != nil {
		return err
	}
	return srv.Run(ctx)
}

// serveLogger is newLogger with info as the default level, because a
// service logs its starts, stops and calls.
func serveLogger(streams Streams) *slog.Logger {
	if streams.getenv("ELEVATE_LOG_LEVEL") != "" {
		return newLogger(streams)
	}
	env := streams
	env.Getenv = func(k string) string {
		if k == "ELEVATE_LOG_LEVEL" {
			return "info"
		}
		return streams.getenv(k)
	}
	return newLogger(env)
}
