package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/elevate-dev/elevate/internal/emulator"
)

func init() { commands = append(commands, newEmulatorCommand) }

// emulatorOptions are the flags of `elevate emulator`.
type emulatorOptions struct {
	SeedFile         string
	Addr             string
	StateDir         string
	PropagationDelay time.Duration
	ReplicationDelay time.Duration

	streams Streams
}

func newEmulatorCommand(streams Streams) *cobra.Command {
	opts := &emulatorOptions{streams: streams}
	cmd := &cobra.Command{
		Use:   "emulator",
		Short: "Run the Azure emulator on loopback for offline pipeline rehearsals",
		Long: `Run an HTTPS server on loopback that emulates the Entra token endpoint,
ARM role assignments, role definitions, permissions and locks, Key Vault
secrets on NAME.vault.localhost, and a GitHub Actions OIDC issuer.

It prints the environment variables that point Elevate and the Azure SDKs
at it, then serves until interrupted (SIGINT or SIGTERM).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return opts.run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.SeedFile, "seed", "", "seed file (.yaml, .yml or .json) with the tenant, resources, principals and role assignments; default: the demo tenant")
	f.StringVar(&opts.Addr, "addr", "127.0.0.1:0", "listen address; port 0 picks a free port")
	f.StringVar(&opts.StateDir, "state-dir", "", "directory for ca.pem; default: a new temporary directory, removed on exit")
	f.DurationVar(&opts.PropagationDelay, "propagation-delay", 0, "time before a new or removed role assignment takes effect, e.g. 30s")
	f.DurationVar(&opts.ReplicationDelay, "replication-delay", 0, "time after a principal's creation during which ARM reports it as PrincipalNotFound")
	return cmd
}

// run starts the emulator, prints how to use it, and serves until ctx ends.
func (o *emulatorOptions) run(ctx context.Context) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if !strings.HasPrefix(o.Addr, "127.") && !strings.HasPrefix(o.Addr, "[::1]") && !strings.HasPrefix(o.Addr, "localhost:") {
		return &UsageError{Err: fmt.Errorf("invalid --addr %q: the emulator listens on loopback only; use 127.0.0.1:PORT or [::1]:PORT", o.Addr)}
	}
	cfg := emulator.Config{
		Addr:             o.Addr,
		StateDir:         o.StateDir,
		PropagationDelay: o.PropagationDelay,
		ReplicationDelay: o.ReplicationDelay,
		Logger:           emulatorLogger(o.streams),
	}
	if o.SeedFile != "" {
		seed, err := emulator.LoadSeed(o.SeedFile)
		if err != nil {
			return &UsageError{Err: err}
		}
		cfg.Seed = seed
	} else {
		cfg.Seed = emulator.DefaultSeed()
	}
	srv, err := emulator.Start(ctx, cfg)
	if err != nil {
		return err
	}
	if err := printEmulatorInfo(o.streams.Out, srv, cfg.Seed); err != nil {
		_ = srv.Close()
		return err
	}
	<-ctx.Done()
	return srv.Close()
}

// emulatorLogger logs to stderr at the level ELEVATE_LOG_LEVEL names,
// default info, so start and stop are visible.
func emulatorLogger(streams Streams) *slog.Logger {
	level := slog.LevelInfo
	if v := streams.getenv("ELEVATE_LOG_LEVEL"); v != "" {
		_ = level.UnmarshalText([]byte(v))
	}
	w := streams.ErrOut
	if w == nil {
		w = io.Discard
	}
	opts := &slog.HandlerOptions{Level: level}
	if streams.getenv("ELEVATE_LOG_FORMAT") == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// printEmulatorInfo writes the address, CA, tenant, admin token and the
// export lines for the first service principal with a client secret.
func printEmulatorInfo(w io.Writer, srv *emulator.Server, seed emulator.Seed) error {
	var clientID, secret string
	for _, p := range seed.Principals {
		if p.Type == emulator.PrincipalServicePrincipal && p.ClientSecret != "" {
			clientID, secret = p.AppID, p.ClientSecret
			break
		}
	}
	lines := []string{
		"Elevate Azure emulator",
		"  URL:          " + srv.URL(),
		"  CA file:      " + srv.CAFile(),
		"  Tenant:       " + srv.TenantID(),
		"  GitHub OIDC:  " + srv.GitHubIssuer(),
		"  Admin token:  " + srv.AdminToken(),
		"",
		"# Paste into a shell to point Elevate and the Azure SDKs at the emulator:",
		"export AZURE_TENANT_ID=" + srv.TenantID(),
	}
	if clientID != "" {
		lines = append(lines,
			"export AZURE_CLIENT_ID="+clientID,
			"export AZURE_CLIENT_SECRET="+secret)
	}
	lines = append(lines,
		"export AZURE_AUTHORITY_HOST="+srv.URL()+"/",
		"export ELEVATE_ARM_ENDPOINT="+srv.URL(),
		"export ELEVATE_CA_FILE="+srv.CAFile(),
		"export ELEVATE_VAULT_SUFFIX="+srv.VaultSuffix(),
		"export SSL_CERT_FILE="+srv.CAFile(),
		"",
		"# Serving until interrupted (Ctrl-C).",
	)
	_, err := fmt.Fprintln(w, strings.Join(lines, "\n"))
	return err
}
