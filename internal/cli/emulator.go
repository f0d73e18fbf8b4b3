package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
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
	GitHubJobs       []string // --github-job values, parsed by parseGitHubJob

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
at it, then serves until interrupted (SIGINT or SIGTERM).

Each --github-job registers a GitHub Actions job with the emulated Actions
runtime and prints the ACTIONS_ID_TOKEN_REQUEST_URL and
ACTIONS_ID_TOKEN_REQUEST_TOKEN exports of that job. In a shell with those
variables set, elevate request and elevate plan get a real OIDC token from the
emulator's GitHub issuer, as they would on a runner. The value is a
comma-separated list of KEY=VALUE pairs:

  repo         owner/name (required)
  environment  the job's environment; it sets the environment subject form
  ref          default refs/heads/main
  event        default push
  actor        default octocat
  workflow     default elevate
  sha          the commit; default 3f786850e387550fdab836ed7e6dc881de23001b

For example:

  elevate emulator --github-job repo=contoso/payments,environment=production`,
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
	f.StringArrayVar(&opts.GitHubJobs, "github-job", nil, "register a GitHub Actions job and print its OIDC token exports: repo=OWNER/NAME[,environment=ENV][,ref=REF][,event=EVENT][,actor=LOGIN][,workflow=NAME][,sha=COMMIT]; repeatable")
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
	jobs := make([]emulator.GitHubJob, 0, len(o.GitHubJobs))
	for i, spec := range o.GitHubJobs {
		job, err := parseGitHubJob(spec)
		if err != nil {
			return &UsageError{Err: err}
		}
		job.RunID = strconv.Itoa(i + 1)
		jobs = append(jobs, job)
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
	if err := printEmulatorInfo(o.streams.Out, srv, cfg.Seed, jobs); err != nil {
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
// export lines for the first service principal with a client secret. It
// registers each job with the emulated Actions runtime and writes a block of
// ACTIONS_ID_TOKEN_REQUEST_* export lines for it.
func printEmulatorInfo(w io.Writer, srv *emulator.Server, seed emulator.Seed, jobs []emulator.GitHubJob) error {
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
		"export ELEVATE_EMULATOR_ADMIN_TOKEN="+srv.AdminToken(),
	)
	for _, job := range jobs {
		requestURL, requestToken, err := srv.RegisterGitHubJob(job)
		if err != nil {
			return err
		}
		lines = append(lines,
			"",
			fmt.Sprintf("# GitHub Actions job %s: %s, subject %s.", job.RunID, job.Repository, emulator.GitHubSubject(job)),
			"# Paste into the shell that runs elevate request or plan; a later job's lines replace these:",
			"export ACTIONS_ID_TOKEN_REQUEST_URL="+shellQuote(requestURL),
			"export ACTIONS_ID_TOKEN_REQUEST_TOKEN="+requestToken,
		)
	}
	lines = append(lines,
		"",
		"# Serving until interrupted (Ctrl-C).",
	)
	_, err := fmt.Fprintln(w, strings.Join(lines, "\n"))
	return err
}

// gitHubJobKeys are the keys --github-job accepts, in the order help lists them.
var gitHubJobKeys = []string{"repo", "environment", "ref", "event", "actor", "workflow", "sha"}

// parseGitHubJob parses one --github-job value, a comma-separated list of
// KEY=VALUE pairs, into a job with defaults for the keys it omits.
func parseGitHubJob(spec string) (emulator.GitHubJob, error) {
	job := emulator.GitHubJob{
		Ref: "refs/heads/main", EventName: "push", Actor: "octocat", Workflow: "elevate",
		SHA: "3f786850e387550fdab836ed7e6dc881de23001b",
	}
	invalid := func(format string, args ...any) (emulator.GitHubJob, error) {
		return emulator.GitHubJob{}, fmt.Errorf("invalid --github-job %q: %s", spec, fmt.Sprintf(format, args...))
	}
	seen := map[string]bool{}
	for _, pair := range strings.Split(spec, ",") {
		key, value, ok := strings.Cut(pair, "=")
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		switch {
		case !ok:
			return invalid("%q is not KEY=VALUE; write pairs such as repo=contoso/payments,environment=production", pair)
		case !slices.Contains(gitHubJobKeys, key):
			return invalid("unknown key %q; use %s", key, strings.Join(gitHubJobKeys, ", "))
		case seen[key]:
			return invalid("key %q given twice; give each key once", key)
		case value == "":
			return invalid("empty value for %s; give a value or leave the key out", key)
		}
		seen[key] = true
		switch key {
		case "repo":
			owner, name, ok := strings.Cut(value, "/")
			if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
				return invalid("repo %q is not OWNER/NAME; write it as repo=contoso/payments", value)
			}
			job.Repository = value
		case "environment":
			job.Environment = value
		case "ref":
			if !strings.HasPrefix(value, "refs/") {
				return invalid("ref %q is not a full ref; write refs/heads/BRANCH, refs/tags/TAG or refs/pull/N/merge", value)
			}
			job.Ref = value
		case "event":
			job.EventName = value
		case "actor":
			job.Actor = value
		case "workflow":
			job.Workflow = value
		case "sha":
			job.SHA = value
		}
	}
	if job.Repository == "" {
		return invalid("missing repo; add repo=OWNER/NAME, such as repo=contoso/payments")
	}
	return job, nil
}
