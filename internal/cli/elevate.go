package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/pflag"

	"github.com/elevate-dev/elevate/internal/approval"
	"github.com/elevate-dev/elevate/internal/audit"
	"github.com/elevate-dev/elevate/internal/github"
	"github.com/elevate-dev/elevate/internal/lifecycle"
)

// elevateOptions are the flags of the commands that grant: run and rotate-secret.
type elevateOptions struct {
	requestOptions
	Output   string
	AuditLog string
}

func (o *elevateOptions) bind(fs *pflag.FlagSet) {
	o.requestOptions.bind(fs)
	fs.StringVarP(&o.Output, "output", "o", "text", "result format on stdout: text or json")
	fs.StringVar(&o.AuditLog, "audit-log", "", "audit log file, JSON Lines, appended to (default $ELEVATE_AUDIT_LOG, else elevate-audit.jsonl)")
}

func (o *elevateOptions) check(streams Streams) error {
	if o.Output != "text" && o.Output != "json" {
		return &UsageError{fmt.Errorf("invalid --output %q: use text or json", o.Output)}
	}
	if o.AuditLog == "" {
		o.AuditLog = streams.getenv("ELEVATE_AUDIT_LOG")
	}
	if o.AuditLog == "" {
		o.AuditLog = "elevate-audit.jsonl"
	}
	return nil
}

// actionFactory builds the action once the request is known.
type actionFactory func(p prepared) (lifecycle.Action, []lifecycle.Prober, error)

// elevate runs the whole lifecycle for one request and prints the table and
// the summary to stdout.
func elevate(ctx context.Context, streams Streams, sess *session, o *elevateOptions, makeAction actionFactory) (lifecycle.Result, error) {
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
	prog.Step("resolving roles and resources")
	p, err := sess.prepare(ctx, &o.requestOptions, streams, engine)
	if err != nil {
		return res, err
	}
	// The checks that plan shows run here too, before anything is granted.
	// Otherwise a lock that blocks the delete, a full assignment quota or a
	// delegation whose condition excludes the role shows up only after the
	// grant, or leaves the grant in place.
	prog.Step("checking locks, quota and the caller's rights")
	if err := failedChecks(lifecycle.Failed(preflight(ctx, engine, p))); err != nil {
		return res, err
	}
	action, probers, err := makeAction(p)
	if err != nil {
		return res, err
	}
	if o.Output == "text" {
		prog.Done()
		fmt.Fprintln(streams.Out, p.table.Text())
	}
	res, runErr := engine.Run(ctx, p.req, p.roles, action, probers)
	prog.Done()
	if err := reportResult(streams, o.Output, withReasons(summarize(res, runErr, log.Head()), p.choices)); err != nil {
		return res, err
	}
	return res, runErr
}

// summary is the JSON form of a finished elevation.
type summary struct {
	RequestID     string          `json:"request_id"`
	Outcome       string          `json:"outcome"`
	Error         string          `json:"error,omitempty"`
	Grants        []grantSummary  `json:"grants"`
	ExitCode      int             `json:"exit_code"`
	SecretVersion string          `json:"secret_version,omitempty"`
	PrevVersion   string          `json:"previous_secret_version,omitempty"`
	Durations     audit.Durations `json:"durations"`
	AuditLog      string          `json:"audit_log"`
	// AuditHead is the SHA-256 of the audit log's last line after the run.
	// Kept outside the file, it lets `elevate audit verify --head` detect
	// records cut from the end, which the hash chain alone cannot.
	AuditHead string `json:"audit_head"`
}

type grantSummary struct {
	Role         string `json:"role"`
	RoleID       string `json:"role_id"`
	Scope        string `json:"scope"`
	AssignmentID string `json:"assignment_id"`
	PreExisting  bool   `json:"pre_existing"`
	Created      bool   `json:"created"`
	Revoked      bool   `json:"revoked"`
	Verified     bool   `json:"verified"`
	RevokeError  string `json:"revoke_error,omitempty"`
	grantBackend
}

func summarize(res lifecycle.Result, runErr error, auditHead string) summary {
	s := summary{
		AuditHead:     auditHead,
		RequestID:     res.Request.ID,
		Outcome:       "ok",
		ExitCode:      res.Action.ExitCode,
		SecretVersion: res.Action.SecretVersion,
		PrevVersion:   res.Action.PreviousSecretVersion,
		Durations:     res.Durations,
		AuditLog:      res.AuditPath,
	}
	if runErr != nil {
		s.Outcome = "failed"
		s.Error = runErr.Error()
	}
	for _, g := range res.Grants {
		s.Grants = append(s.Grants, grantSummary{
			Role: g.RoleName, RoleID: g.Pair.RoleID, Scope: g.Pair.Scope.String(),
			AssignmentID: g.AssignmentID, PreExisting: g.PreExisting, Created: g.Created,
			Revoked: g.Revoked, Verified: g.Verified, RevokeError: g.RevokeError,
			grantBackend: grantBackend{Backend: backendOrDefault(g.Backend, lifecycle.BackendRBAC), EndsAt: g.EndsAt},
		})
	}
	return s
}

// reportResult prints s to stdout and, in GitHub Actions, adds it to the job
// summary and the step outputs, so the audit head is kept outside the log.
func reportResult(streams Streams, format string, s summary) error {
	if err := printResult(streams.Out, format, s); err != nil {
		return err
	}
	runner := github.FromEnv(streams.getenv, streams.Out)
	if !runner.InActions() {
		return nil
	}
	return publishAuditHead(runner, s.RequestID, s.Outcome, s.AuditLog, s.AuditHead)
}

// publishAuditHead writes the request's outcome and the audit log's head to
// the job summary and to the step outputs outcome and audit-head.
func publishAuditHead(runner github.Runner, requestID, outcome, auditLog, head string) error {
	line := fmt.Sprintf("Elevation `%s`: %s. Audit log `%s`, head `%s`; check it with `elevate audit verify %s --head %s`.\n",
		requestID, outcome, approval.EscapeCell(auditLog), head, approval.EscapeCell(auditLog), head)
	if err := runner.AppendSummary(line); err != nil {
		return err
	}
	if err := runner.SetOutput("outcome", outcome); err != nil {
		return err
	}
	return runner.SetOutput("audit-head", head)
}

func printResult(w io.Writer, format string, s summary) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	}
	fmt.Fprintf(w, "Elevation %s: %s\n", s.RequestID, s.Outcome)
	for _, g := range s.Grants {
		state := "revoked and verified"
		switch {
		case g.PreExisting:
			state = "pre-existing, left in place"
		case g.RevokeError != "":
			state = "REVOKE FAILED: " + g.RevokeError
		case !g.Created:
			state = "not granted"
		}
		fmt.Fprintf(w, "  %-32s %s\n    %s\n", g.Role, state, g.Scope)
		if g.Backend != lifecycle.BackendRBAC {
			fmt.Fprintf(w, "    backend %s%s\n", g.Backend, endsLabel(g.EndsAt))
		}
	}
	fmt.Fprintf(w, "  time to grant %dms, to effective %dms, held %dms\n",
		s.Durations.GrantMS, s.Durations.EffectiveMS, s.Durations.HeldMS)
	if s.SecretVersion != "" {
		fmt.Fprintf(w, "  secret version %s (previous %s)\n", s.SecretVersion, orNone(s.PrevVersion))
	}
	fmt.Fprintf(w, "  audit log %s, head %s\n", s.AuditLog, s.AuditHead)
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// commandExit turns a failed command action into its exit code when every
// grant was removed.
func commandExit(res lifecycle.Result, err error) error {
	var revoke *lifecycle.RevokeError
	if err == nil || errors.As(err, &revoke) || !errors.Is(err, lifecycle.ErrAction) {
		return err
	}
	return &exitError{code: res.Action.ExitCode, err: err}
}
