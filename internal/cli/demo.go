package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/elevate-dev/elevate/internal/audit"
	"github.com/elevate-dev/elevate/internal/emulator"
	"github.com/elevate-dev/elevate/internal/lifecycle"
)

func init() { commands = append(commands, newDemoCommand) }

// The demo tenant's fixed names, from the emulator's default seed.
const (
	demoResourceGroup = "rg-elevate-demo"
	demoVault         = "kv-elevate-demo"
	demoStorage       = "stelevatedemo"
	demoSecret        = "app-db-password"
	demoPrincipalName = "elevate-pipeline"
)

type demoOptions struct {
	PropagationDelay time.Duration
	AuditLog         string
	Output           string
	Backend          string
	Broker           bool // run the broker walkthrough of demo_broker.go
	UI               bool // with Broker, serve the web UI afterwards (demo_ui.go)
}

func newDemoCommand(streams Streams) *cobra.Command {
	var o demoOptions
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole elevation walkthrough against an in-process Azure emulator",
		Long: `Start the Azure emulator with the demo tenant, then, as the pipeline identity:
render the approval table for two role x resource pairs, grant a temporary
Key Vault Secrets Officer and Reader assignment, wait out the emulated RBAC
propagation delay, rotate and validate a secret, revoke, verify the removal,
and write and verify the audit log. Needs no Azure tenant and no network.
With --backend pim-assign the grant is a time-bound PIM assignment that
Azure would end by itself at the deadline, and Elevate removes it early.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.UI && !o.Broker {
				return &UsageError{errors.New("--ui needs --broker: the web UI is part of the broker")}
			}
			if o.Broker {
				return runBrokerDemo(cmd.Context(), streams, o)
			}
			return runDemo(cmd.Context(), streams, o)
		},
	}
	fs := cmd.Flags()
	fs.DurationVar(&o.PropagationDelay, "propagation-delay", 1500*time.Millisecond, "emulated RBAC propagation delay")
	fs.StringVar(&o.AuditLog, "audit-log", "", "audit log file (default: audit.jsonl in a new temporary directory)")
	fs.StringVarP(&o.Output, "output", "o", "text", "result format on stdout: text or json")
	fs.StringVar(&o.Backend, "backend", lifecycle.BackendRBAC, "grant backend of the walkthrough: rbac or pim-assign")
	fs.BoolVar(&o.Broker, "broker", false, "run the broker walkthrough instead: elevate serve on loopback, requests, an approval, revoke and cancel")
	fs.BoolVar(&o.UI, "ui", false, "with --broker: serve the web UI after the walkthrough, with one request to approve, until Ctrl-C")
	return cmd
}

func runDemo(ctx context.Context, streams Streams, o demoOptions) error {
	if o.Backend != lifecycle.BackendRBAC && o.Backend != lifecycle.BackendPIMAssign {
		return &UsageError{fmt.Errorf("invalid --backend %q for the demo: use rbac or pim-assign", o.Backend)}
	}
	if o.AuditLog == "" {
		dir, err := os.MkdirTemp("", "elevate-demo-")
		if err != nil {
			return fmt.Errorf("create demo directory: %w", err)
		}
		o.AuditLog = filepath.Join(dir, "audit.jsonl")
	}
	prog := newProgress(streams.ErrOut, streams.ErrIsTerminal)
	prog.Step("starting the Azure emulator")
	seed := emulator.DefaultSeed()
	srv, err := emulator.Start(ctx, emulator.Config{
		Seed:             seed,
		PropagationDelay: o.PropagationDelay,
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return fmt.Errorf("start emulator: %w", err)
	}
	defer srv.Close()
	prog.Done()

	pipeline, err := demoPrincipal(seed)
	if err != nil {
		return err
	}
	sub := seed.Subscriptions[0].ID
	rg := fmt.Sprintf("/subscriptions/%s/resourceGroups/%s", sub, demoResourceGroup)
	vaultID := rg + "/providers/Microsoft.KeyVault/vaults/" + demoVault
	storageID := rg + "/providers/Microsoft.Storage/storageAccounts/" + demoStorage

	// The pipeline signs in exactly as it would in CI: from the variables the
	// Azure login action exports, here pointing at the emulator.
	vars := map[string]string{
		"AZURE_TENANT_ID":      srv.TenantID(),
		"AZURE_CLIENT_ID":      pipeline.AppID,
		"AZURE_CLIENT_SECRET":  pipeline.ClientSecret,
		"AZURE_AUTHORITY_HOST": srv.URL() + "/",
		"ELEVATE_ARM_ENDPOINT": srv.URL(),
		"ELEVATE_VAULT_SUFFIX": srv.VaultSuffix(),
		"ELEVATE_CA_FILE":      srv.CAFile(),
		"ELEVATE_LOG_LEVEL":    streams.getenv("ELEVATE_LOG_LEVEL"),
		"ELEVATE_LOG_FORMAT":   streams.getenv("ELEVATE_LOG_FORMAT"),
	}
	demoStreams := streams
	demoStreams.Getenv = func(k string) string { return vars[k] }
	sess, err := newSession(ctx, demoStreams)
	if err != nil {
		return err
	}
	fmt.Fprintf(streams.ErrOut, "emulator %s, signed in as %s (object id %s)\n", srv.URL(), demoPrincipalName, sess.caller.ObjectID)

	eo := &elevateOptions{
		requestOptions: requestOptions{
			Roles:          []string{"Key Vault Secrets Officer", "Reader"},
			Scopes:         []string{vaultID, storageID},
			Duration:       15 * time.Minute,
			Justification:  "demo: rotate the payments database password",
			Ticket:         "CHG-1042",
			backendOptions: backendOptions{Backend: o.Backend},
		},
		Output:   o.Output,
		AuditLog: o.AuditLog,
	}
	if err := eo.check(demoStreams); err != nil {
		return err
	}
	if o.Output == "text" {
		fmt.Fprintln(streams.Out, "Decision: auto-approved by the demo policy (the pipeline's own vault, 15 minutes, ticket given).")
		fmt.Fprintln(streams.Out)
	}
	res, err := rotateSecret(ctx, demoStreams, sess, eo, rotateOptions{
		Vault:    demoVault,
		Secret:   demoSecret,
		Validate: `test "${#ELEVATE_SECRET_VALUE}" -eq 32`,
	})
	if err != nil {
		return err
	}
	return demoVerify(streams, srv, res.Request.Principal.ID, o)
}

// demoVerify proves the end state: no assignment of the run is left in the
// emulator, and the audit chain verifies.
func demoVerify(streams Streams, srv *emulator.Server, principalID string, o demoOptions) error {
	// PIM names its assignments itself and writes no description, so
	// anything of the principal's beyond the seed counts as left over.
	seeded := map[string]bool{}
	for _, a := range emulator.DefaultSeed().RoleAssignments {
		seeded[strings.ToLower(a.Name)] = true
	}
	left := 0
	for _, a := range srv.RoleAssignments() {
		if strings.EqualFold(a.PrincipalID, principalID) && !seeded[strings.ToLower(a.Name)] {
			left++
		}
	}
	report, err := audit.VerifyFile(o.AuditLog)
	if err != nil {
		return fmt.Errorf("verify audit log: %w", err)
	}
	if left != 0 {
		return fmt.Errorf("%d temporary role assignment(s) still exist in the emulator", left)
	}
	if o.Output == "text" {
		fmt.Fprintf(streams.Out, "Verified: no temporary role assignment remains; audit chain intact (%d records, head %s).\n",
			report.Records, report.Head[:12])
		fmt.Fprintf(streams.Out, "Check it yourself: elevate audit verify %s --head %s\n", o.AuditLog, report.Head)
	}
	return nil
}

func demoPrincipal(seed emulator.Seed) (emulator.Principal, error) {
	for _, p := range seed.Principals {
		if p.DisplayName == demoPrincipalName {
			return p, nil
		}
	}
	return emulator.Principal{}, fmt.Errorf("demo seed has no principal %q", demoPrincipalName)
}
