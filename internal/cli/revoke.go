package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/audit"
	"github.com/elevate-dev/elevate/internal/github"
	"github.com/elevate-dev/elevate/internal/lifecycle"
	"github.com/elevate-dev/elevate/internal/plan"
)

func init() { commands = append(commands, newRevokeCommand) }

func newRevokeCommand(streams Streams) *cobra.Command {
	var planFile, auditLog string
	var settle time.Duration
	var revokeByBroker func(ctx context.Context, id string) error
	cmd := &cobra.Command{
		Use:   "revoke (--plan FILE | --broker URL REQUEST_ID)",
		Short: "Remove every assignment a plan may have created, or end a broker request",
		Long: `Delete and verify the role assignments named in the plan, for an
` + "`if: always()`" + ` step after apply. Only the plan's own deterministic
assignment names are deleted, so an assignment Elevate did not create is never
touched. PIM grants are ended through the backend the plan names; an Entra
grant that no audit record names is found by the request id in its
justification. An expired plan is still revoked. Exits 4 when an assignment
could not be removed.

With --broker URL REQUEST_ID, an admin ends an active broker request now.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 && planFile != "" {
				return &UsageError{errors.New("invalid arguments: give --plan FILE or a broker request id, not both")}
			}
			if len(args) == 1 {
				return reportError(streams, revokeByBroker(cmd.Context(), args[0]))
			}
			if planFile == "" {
				return &UsageError{errors.New("missing --plan: give the plan file written by `elevate plan`, or --broker URL and a request id")}
			}
			if auditLog == "" {
				auditLog = streams.getenv("ELEVATE_AUDIT_LOG")
			}
			if auditLog == "" {
				auditLog = "elevate-audit.jsonl"
			}
			pl, err := plan.Read(planFile)
			if err != nil {
				return reportError(streams, err)
			}
			// Expiry does not matter here: clean-up must work on old plans.
			req, err := pl.Check(pl.CreatedAt, "")
			if err != nil && !errors.Is(err, plan.ErrExpired) {
				return reportError(streams, err)
			}
			ctx := cmd.Context()
			sess, err := newSession(ctx, streams)
			if err != nil {
				return reportError(streams, err)
			}
			return reportError(streams, revokePlan(ctx, streams, sess, pl, req, auditLog, settle))
		},
	}
	cmd.Flags().StringVar(&planFile, "plan", "", "plan file written by `elevate plan`")
	cmd.Flags().StringVar(&auditLog, "audit-log", "", "audit log file (default $ELEVATE_AUDIT_LOG, else elevate-audit.jsonl)")
	cmd.Flags().DurationVar(&settle, "settle", 5*time.Second, "after revoking, wait this long and check again for grants a killed job's in-flight request created late; 0 skips the check")
	revokeByBroker = bindBrokerRevoke(cmd, streams)
	return cmd
}

func revokePlan(ctx context.Context, streams Streams, sess *session, pl plan.Plan, req access.Request, auditLog string, settle time.Duration) error {
	log, err := audit.Open(auditLog)
	if err != nil {
		return fmt.Errorf("open audit log: %w", err)
	}
	defer log.Close()
	engine := lifecycle.New(lifecycle.Config{ARM: sess.rbac, Audit: log, CallerID: sess.caller.ObjectID, Logger: sess.log, Clock: streams.Clock})
	// Each pair is revoked through the backend the plan chose for it, so a
	// PIM activation is deactivated rather than looked up as a role
	// assignment that never existed.
	bo, fixed, err := planBackend(pl.Table, len(req.Pairs))
	if err != nil {
		return err
	}
	choices, _, err := sess.addBackends(ctx, engine, bo, req, fixed)
	if err != nil {
		return err
	}
	grants := make([]lifecycle.Grant, len(req.Pairs))
	for i, p := range req.Pairs {
		grants[i] = lifecycle.Grant{Pair: p, RoleName: pl.Pairs[i].RoleName, Backend: choices[i].Backend,
			RoleDefinitionID: pl.Pairs[i].RoleDefinitionID, AssignmentName: pl.Pairs[i].AssignmentName}
	}
	if err := applyAuditedGrants(auditLog, req.ID, grants); err != nil {
		sess.log.WarnContext(ctx, "could not read earlier grant records from the audit log", "path", auditLog, "error", err)
	}
	// Graph names Entra requests itself, so an entra-role grant that no
	// audit record names (the runner died first) is found by the request's
	// marker in its justification instead.
	// The other pairs are still revoked when the lookup fails.
	n, findErr := engine.FindEntraGrants(ctx, req, grants)
	if findErr != nil {
		// An Entra grant may remain, which exit code 4 means.
		findErr = &exitError{code: ExitRevokeFailed, err: fmt.Errorf(
			"look up the plan's Entra grants in Microsoft Graph: %w; run revoke again, or end them in the Entra admin center", findErr)}
		sess.log.ErrorContext(ctx, "Entra grant lookup failed", "request_id", req.ID, "error", findErr)
	} else if n > 0 {
		sess.log.InfoContext(ctx, "found Entra grants without audit records", "request_id", req.ID, "count", n)
	}
	start := time.Now()
	err = engine.RevokePlanned(ctx, req, grants)
	// A job killed mid-grant may have a PUT still in flight, which can land
	// after the first pass found nothing. Look again once it had time to.
	if err == nil && settle > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(settle):
		}
		if left, lerr := engine.Remaining(context.WithoutCancel(ctx), grants); lerr != nil || len(left) > 0 {
			sess.log.WarnContext(ctx, "grants appeared after the first revoke pass, revoking again", "count", len(left), "error", lerr)
			err = engine.RevokePlanned(ctx, req, grants)
		}
	}
	for _, g := range grants {
		state := "removed and verified"
		if g.RevokeError != "" {
			state = "FAILED: " + g.RevokeError
		}
		fmt.Fprintf(streams.Out, "%-32s %s\n  %s\n", g.RoleName, state, g.Pair.Scope)
	}
	err = errors.Join(err, findErr)
	fmt.Fprintf(streams.Out, "revoke of request %s finished in %s\n", req.ID, time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(streams.Out, "audit log %s, head %s\n", auditLog, log.Head())
	if runner := github.FromEnv(streams.getenv, streams.Out); runner.InActions() {
		outcome := "ok"
		if err != nil {
			outcome = "failed"
		}
		if perr := publishAuditHead(runner, req.ID, outcome, auditLog, log.Head()); perr != nil {
			return errors.Join(err, perr)
		}
	}
	return err
}

// applyAuditedGrants fills in what an earlier apply of the same request
// recorded about each grant: the Azure id (an Entra grant cannot be found
// without it) and whether the grant was adopted, in which case it is not
// Elevate's to remove. Grants with no record keep their planned values.
func applyAuditedGrants(path, requestID string, grants []lifecycle.Grant) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	byPair := make(map[string]int, len(grants))
	for i, g := range grants {
		byPair[strings.ToLower(g.Pair.RoleID)+"\n"+g.Pair.Scope.Key()] = i
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), audit.MaxLineBytes)
	for sc.Scan() {
		var rec audit.Record
		if json.Unmarshal(sc.Bytes(), &rec) != nil || !strings.EqualFold(rec.RequestID, requestID) {
			continue
		}
		for _, p := range rec.Pairs {
			i, ok := byPair[strings.ToLower(p.RoleID)+"\n"+strings.ToLower(p.Scope)]
			if !ok {
				continue
			}
			if p.PreExisting {
				grants[i].PreExisting = true
			}
			if p.AssignmentID != "" && (p.Backend == "" || p.Backend == grants[i].Backend || grants[i].Backend == "") {
				grants[i].AssignmentID = p.AssignmentID
			}
		}
	}
	return sc.Err()
}
