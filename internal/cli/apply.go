package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/audit"
	"github.com/elevate-dev/elevate/internal/github"
	"github.com/elevate-dev/elevate/internal/lifecycle"
	"github.com/elevate-dev/elevate/internal/plan"
	"github.com/elevate-dev/elevate/internal/rotate"
)

func init() { commands = append(commands, newApplyCommand) }

type applyOptions struct {
	PlanFile   string
	ExpectHash string
	Rotate     bool
	Output     string
	AuditLog   string
}

func newApplyCommand(streams Streams) *cobra.Command {
	var o applyOptions
	var r rotateOptions
	cmd := &cobra.Command{
		Use:   "apply --plan FILE [--expect-hash HASH] (-- COMMAND [ARGS...] | --rotate-secret --vault V --secret S)",
		Short: "Grant an approved plan, run the action, then revoke and verify",
		Long: `Check the plan file (its content hash, --expect-hash when given, its validity
window and that its pairs are the ones approved), then grant, wait until
effective, run the command or the secret rotation, revoke and verify. Pair it
with an ` + "`if: always()`" + ` step running ` + "`elevate revoke --plan FILE`" + `.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Rotate == (len(args) > 0) {
				return &UsageError{fmt.Errorf("give exactly one action: a command after `--`, or --rotate-secret")}
			}
			eo := &elevateOptions{Output: o.Output, AuditLog: o.AuditLog}
			if err := eo.check(streams); err != nil {
				return err
			}
			if o.ExpectHash == "" {
				// Without the hash from the plan job, anyone able to replace
				// the plan artifact decides what is granted.
				if github.FromEnv(streams.getenv, streams.Out).InActions() {
					return reportError(streams, &UsageError{errors.New("missing --expect-hash: in GitHub Actions pass the plan job's plan-hash output, so that apply rejects a replaced plan file")})
				}
				fmt.Fprintln(streams.ErrOut, "warning: no --expect-hash given: the plan file is trusted as it is")
			}
			pl, req, err := loadPlan(o.PlanFile, o.ExpectHash)
			if err != nil {
				return reportError(streams, err)
			}
			ctx := cmd.Context()
			sess, err := newSession(ctx, streams)
			if err != nil {
				return reportError(streams, err)
			}
			res, err := applyPlan(ctx, streams, sess, eo, pl, req, func(p prepared) (lifecycle.Action, []lifecycle.Prober, error) {
				if !o.Rotate {
					return &lifecycle.Command{Args: args, Stdin: streams.In, Stdout: streams.Out, Stderr: streams.ErrOut}, nil, nil
				}
				vault, err := sess.vault(r.Vault)
				if err != nil {
					return nil, nil, err
				}
				rot := &rotate.Rotation{
					Store: vault, Secret: r.Secret, Length: r.Length, Charset: r.Charset, RequestID: p.req.ID,
					Validate: r.Validate, ValidateVia: r.ValidateVia, Stdout: streams.ErrOut, Stderr: streams.ErrOut,
					OnValue: maskInActions(streams),
				}
				if err := rot.CheckAndSetDefaults(); err != nil {
					return nil, nil, &UsageError{err}
				}
				return rot, []lifecycle.Prober{rot}, nil
			})
			if o.Rotate {
				// A failed validation exits ExitActionFailure, as rotate-secret does.
				return reportError(streams, err)
			}
			return reportError(streams, commandExit(res, err))
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.PlanFile, "plan", "", "plan file written by `elevate plan` (required)")
	fs.StringVar(&o.ExpectHash, "expect-hash", "", "plan SHA-256 from the plan job's plan-hash output; apply refuses any other plan")
	fs.BoolVar(&o.Rotate, "rotate-secret", false, "run the built-in secret rotation instead of a command")
	fs.StringVarP(&o.Output, "output", "o", "text", "result format on stdout: text or json")
	fs.StringVar(&o.AuditLog, "audit-log", "", "audit log file (default $ELEVATE_AUDIT_LOG, else elevate-audit.jsonl)")
	bindRotate(cmd, &r)
	_ = cmd.MarkFlagRequired("plan")
	return cmd
}

// loadPlan reads and checks a plan file for apply and revoke.
func loadPlan(path, expectHash string) (plan.Plan, access.Request, error) {
	pl, err := plan.Read(path)
	if err != nil {
		return pl, access.Request{}, err
	}
	req, err := pl.Check(time.Now(), expectHash)
	return pl, req, err
}

// applyPlan runs the lifecycle for a checked plan.
func applyPlan(ctx context.Context, streams Streams, sess *session, o *elevateOptions, pl plan.Plan, req access.Request, makeAction actionFactory) (lifecycle.Result, error) {
	var res lifecycle.Result
	log, err := audit.Open(o.AuditLog)
	if err != nil {
		return res, fmt.Errorf("open audit log: %w", err)
	}
	defer log.Close()
	prog := newProgress(streams.ErrOut, streams.ErrIsTerminal)
	defer prog.Done()
	engine := lifecycle.New(lifecycle.Config{
		ARM: sess.rbac, Audit: log, CallerID: sess.caller.ObjectID, Logger: sess.log, Progress: prog, Clock: streams.Clock,
	})
	refs := make([]access.RoleRef, 0, len(pl.Pairs))
	seen := map[string]bool{}
	for _, p := range pl.Pairs {
		if !seen[p.RoleID] {
			seen[p.RoleID] = true
			refs = append(refs, access.RoleRef{GUID: p.RoleID})
		}
	}
	scopes := make([]access.ResourceID, len(req.Pairs))
	for i, p := range req.Pairs {
		scopes[i] = p.Scope
	}
	roles, err := engine.ResolveRoles(ctx, refs, lifecycle.LookupScope(scopes))
	if err != nil {
		return res, err
	}
	byID := make(map[string]lifecycle.Role, len(roles))
	for _, r := range roles {
		byID[r.GUID] = r
	}
	// The plan carries the backend the approver saw; apply uses it as is.
	bo, fixed, err := planBackend(pl.Table, len(req.Pairs))
	if err != nil {
		return res, err
	}
	addPlannedReasons(fixed, pl.Preflight, req)
	choices, pimCfg, err := sess.addBackends(ctx, engine, bo, req, fixed)
	if err != nil {
		return res, err
	}
	p := prepared{req: req, roles: byID, choices: choices, pimCfg: pimCfg}
	// Run the pre-flight again as the identity that grants: a lock added
	// since the plan, or a delegation the planner could not see, must stop
	// apply before anything is granted.
	if err := failedChecks(lifecycle.Failed(preflight(ctx, engine, p))); err != nil {
		return res, err
	}
	action, probers, err := makeAction(p)
	if err != nil {
		return res, err
	}
	res, runErr := engine.Run(ctx, req, byID, action, probers)
	prog.Done()
	if err := reportResult(streams, o.Output, withReasons(summarize(res, runErr, log.Head()), choices)); err != nil {
		return res, err
	}
	return res, runErr
}
