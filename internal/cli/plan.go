package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/approval"
	"github.com/elevate-dev/elevate/internal/github"
	"github.com/elevate-dev/elevate/internal/lifecycle"
	"github.com/elevate-dev/elevate/internal/plan"
)

func init() { commands = append(commands, newPlanCommand) }

type planOptions struct {
	requestOptions
	PlanFile string
	ValidFor time.Duration
	Output   string
}

// ErrPreflight means a pre-flight check refused the request.
var ErrPreflight = errors.New("pre-flight check failed")

func newPlanCommand(streams Streams) *cobra.Command {
	var o planOptions
	cmd := &cobra.Command{
		Use:   "plan --role ROLE --scope SCOPE --justification TEXT [flags]",
		Short: "Validate a request, run pre-flight checks and write the approval table and plan file",
		Long: `Validate the request, resolve role and resource names, check the role
assignment quota, locks that would block the revoke, and the caller's right to
grant, then write the plan file for ` + "`elevate apply`" + `. In GitHub Actions the
approval table goes to the job summary and request-id, plan-path, plan-hash and
approval-table to the step outputs; elsewhere everything goes to stdout.
Nothing is granted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Output != "markdown" && o.Output != "json" {
				return &UsageError{fmt.Errorf("invalid --output %q: use markdown or json", o.Output)}
			}
			if o.ValidFor < time.Minute || o.ValidFor > 7*24*time.Hour {
				return &UsageError{fmt.Errorf("invalid --valid-for %s: use 1m to 168h", o.ValidFor)}
			}
			ctx := cmd.Context()
			sess, err := newSession(ctx, streams)
			if err != nil {
				return reportError(streams, err)
			}
			return reportError(streams, runPlan(ctx, streams, sess, &o))
		},
	}
	o.bind(cmd.Flags())
	cmd.Flags().StringVar(&o.PlanFile, "plan-file", "elevate-plan.json", "where to write the plan file")
	cmd.Flags().DurationVar(&o.ValidFor, "valid-for", 12*time.Hour, "how long the plan may wait for approval before apply refuses it")
	cmd.Flags().StringVarP(&o.Output, "output", "o", "markdown", "stdout format outside GitHub Actions: markdown or json")
	return cmd
}

func runPlan(ctx context.Context, streams Streams, sess *session, o *planOptions) error {
	engine := lifecycle.New(lifecycle.Config{ARM: sess.rbac, CallerID: sess.caller.ObjectID, Logger: sess.log})
	o.planning = true
	p, err := sess.prepare(ctx, &o.requestOptions, streams, engine)
	if err != nil {
		return err
	}
	checks := preflight(ctx, engine, p)
	pairs := make([]plan.Pair, len(p.req.Pairs))
	for i, g := range lifecycle.PlanGrants(p.req, p.roles) {
		pairs[i] = plan.Pair{RoleID: g.Pair.RoleID, RoleName: g.RoleName, RoleDefinitionID: g.RoleDefinitionID,
			Scope: g.Pair.Scope.String(), AssignmentName: g.AssignmentName}
	}
	pl, err := plan.New(p.req, pairs, p.table, toPlanChecks(checks), time.Now(), o.ValidFor)
	if err != nil {
		return err
	}
	markdown := p.table.Markdown() + "\n" + checksMarkdown(checks)
	failed := lifecycle.Failed(checks)
	var hash string
	if len(failed) == 0 {
		if hash, err = plan.Write(o.PlanFile, pl); err != nil {
			return err
		}
		markdown += fmt.Sprintf("\nPlan `%s`, SHA-256 `%s`, valid until %s.\n", approval.EscapeCell(o.PlanFile), hash, pl.ValidUntil.Format(time.RFC3339))
	}
	runner := github.FromEnv(streams.getenv, streams.Out)
	if runner.InActions() {
		if err := writePlanOutputs(runner, p.req.ID, o.PlanFile, hash, markdown); err != nil {
			return err
		}
	} else if o.Output == "json" {
		if len(failed) == 0 {
			fmt.Fprintf(streams.Out, "{\"request_id\":%q,\"plan_path\":%q,\"plan_hash\":%q}\n", p.req.ID, o.PlanFile, hash)
		}
	} else {
		fmt.Fprintln(streams.Out, markdown)
	}
	if len(failed) > 0 {
		parts := make([]string, len(failed))
		for i, c := range failed {
			parts[i] = fmt.Sprintf("%s at %s: %s", c.Name, c.Scope, c.Detail)
		}
		return fmt.Errorf("%w: %s", ErrPreflight, strings.Join(parts, "; "))
	}
	return nil
}

func writePlanOutputs(runner github.Runner, requestID, path, hash, markdown string) error {
	if err := runner.AppendSummary(markdown); err != nil {
		return err
	}
	for _, kv := range [][2]string{
		{"request-id", requestID}, {"plan-path", path}, {"plan-hash", hash}, {"approval-table", markdown},
	} {
		if err := runner.SetOutput(kv[0], kv[1]); err != nil {
			return err
		}
	}
	return nil
}

func toPlanChecks(checks []lifecycle.Check) []plan.Check {
	out := make([]plan.Check, len(checks))
	for i, c := range checks {
		out[i] = plan.Check(c)
	}
	return out
}

// checksMarkdown renders pre-flight results as a table, every cell escaped.
func checksMarkdown(checks []lifecycle.Check) string {
	var b strings.Builder
	b.WriteString("#### Pre-flight checks\n\n| Result | Check | Scope | Detail |\n| --- | --- | --- | --- |\n")
	for _, c := range checks {
		result := "pass"
		switch {
		case c.Warning:
			result = "warning"
		case !c.OK:
			result = "FAIL"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", result, approval.EscapeCell(c.Name),
			approval.EscapeCell(c.Scope), approval.EscapeCell(c.Detail))
	}
	return b.String()
}

// reportError also writes err as a GitHub annotation when running in Actions,
// so the run's page shows it next to the step.
func reportError(streams Streams, err error) error {
	if err == nil {
		return nil
	}
	runner := github.FromEnv(streams.getenv, streams.Out)
	if runner.InActions() {
		title := "elevate"
		var input *access.InputError
		if errors.As(err, &input) {
			title = input.Field
		}
		runner.Annotate(github.LevelError, title, err.Error())
	}
	return err
}
