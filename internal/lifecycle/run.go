package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/audit"
	"github.com/elevate-dev/elevate/internal/crashpoint"
)

// Action is the privileged work done while the grant is in place.
type Action interface {
	// Name is a short label for progress lines and audit records.
	Name() string
	Run(ctx context.Context) (ActionResult, error)
}

// ActionResult is what an action reports. It never carries a secret value.
type ActionResult struct {
	ExitCode              int
	SecretVersion         string
	PreviousSecretVersion string
	Detail                string
}

// Result is the outcome of Run.
type Result struct {
	Request   access.Request
	Grants    []Grant
	Action    ActionResult
	Durations audit.Durations
	// AuditPath is the audit log file the records went to.
	AuditPath string
}

// Errors that Run wraps, for exit-code mapping.
var (
	ErrAction      = errors.New("action failed")
	ErrInterrupted = errors.New("interrupted")
	ErrWindowEnded = errors.New("elevation window ended")
)

// Run grants every pair of req, waits until the grant is effective, runs the
// action, then revokes and verifies, appending an audit record at each step.
// The grants are revoked on every path out of Run once any was attempted.
// The returned error wraps *RevokeError when a grant may remain; that takes
// precedence over the action's own failure, which is still reported.
func (e *Engine) Run(ctx context.Context, req access.Request, roles map[string]Role, action Action, probers []Prober) (Result, error) {
	res := Result{Request: req, AuditPath: e.audit.Path()}
	res.Grants = PlanGrants(req, roles)
	e.setChosenBackends(res.Grants)
	started := e.clock.Now()

	// The request and the names of the assignments go to the audit log before
	// any Azure call, so a crash leaves a record of what to remove.
	if _, err := e.record(ctx, req, "request", "ok", res.Grants, func(r *audit.Record) {
		r.Detail = fmt.Sprintf("action=%s duration=%s justification=%q", action.Name(), req.Duration, req.Justification)
	}); err != nil {
		return res, fmt.Errorf("write audit record before granting: %w", err)
	}
	crashpoint.Hit("request.audited")

	e.progress.Step(fmt.Sprintf("granting %d role assignment(s)", len(res.Grants)))
	grantErr := e.GrantAll(ctx, req, res.Grants)
	res.Durations.GrantMS = e.since(started)
	crashpoint.Hit("grant.done")
	if grantErr != nil {
		e.recordQuiet(ctx, req, "grant", "failed", res.Grants, func(r *audit.Record) { r.Error = grantErr.Error() })
		return res, e.finish(ctx, req, &res, grantErr)
	}
	e.recordQuiet(ctx, req, "grant", "ok", res.Grants, func(r *audit.Record) { r.Durations = durationsPtr(res.Durations) })
	crashpoint.Hit("grant.audited")

	e.progress.Step("waiting until the grant is effective")
	effStart := e.clock.Now()
	effErr := e.WaitEffective(ctx, req.Principal.ID, res.Grants, roles, probers)
	res.Durations.EffectiveMS = e.since(effStart)
	if effErr != nil {
		if ctx.Err() != nil {
			effErr = fmt.Errorf("%w while waiting for the grant: %w", ErrInterrupted, ctx.Err())
		}
		e.recordQuiet(ctx, req, "effective", "failed", nil, func(r *audit.Record) { r.Error = effErr.Error() })
		return res, e.finish(ctx, req, &res, effErr)
	}
	e.recordQuiet(ctx, req, "effective", "ok", nil, func(r *audit.Record) { r.Durations = durationsPtr(res.Durations) })
	crashpoint.Hit("effective.audited")

	e.progress.Step("running " + action.Name())
	heldFrom := e.clock.Now()
	// The action may use the grant only for the requested duration.
	actCtx, cancel := context.WithTimeoutCause(ctx, req.Duration, ErrWindowEnded)
	crashpoint.Hit("action.start")
	actRes, actErr := action.Run(actCtx)
	crashpoint.Hit("action.done")
	windowEnded := errors.Is(context.Cause(actCtx), ErrWindowEnded)
	cancel()
	res.Action = actRes
	outcome := "ok"
	if actErr != nil {
		outcome = "failed"
		if windowEnded {
			actErr = fmt.Errorf("%w after %s: %s stopped: %w", ErrWindowEnded, req.Duration, action.Name(), actErr)
		} else if ctx.Err() != nil {
			actErr = fmt.Errorf("%w during %s: %w", ErrInterrupted, action.Name(), actErr)
		} else {
			actErr = fmt.Errorf("%w: %w", ErrAction, actErr)
		}
	}
	e.recordQuiet(ctx, req, "action", outcome, nil, func(r *audit.Record) {
		r.SecretVersion = actRes.SecretVersion
		r.PreviousSecretVersion = actRes.PreviousSecretVersion
		r.Detail = fmt.Sprintf("%s exit_code=%d %s", action.Name(), actRes.ExitCode, actRes.Detail)
		if actErr != nil {
			r.Error = actErr.Error()
		}
	})
	crashpoint.Hit("action.audited")
	err := e.finish(ctx, req, &res, actErr)
	res.Durations.HeldMS = e.since(heldFrom)
	return res, err
}

// finish revokes, audits the revocation and the end of the request, and
// joins a revoke failure with cause.
func (e *Engine) finish(ctx context.Context, req access.Request, res *Result, cause error) error {
	e.progress.Step("revoking and verifying")
	crashpoint.Hit("revoke.start")
	revokeErr := e.RevokeAll(ctx, req, res.Grants)
	crashpoint.Hit("revoke.done")
	var rerr *RevokeError
	if errors.As(revokeErr, &rerr) {
		e.recordQuiet(ctx, req, "revoke_failed", "failed", rerr.Failed, func(r *audit.Record) {
			r.Error = revokeErr.Error()
			r.Detail = "these assignments may still grant access: remove them by hand or run `elevate revoke`"
		})
	} else {
		e.recordQuiet(ctx, req, "revoke", "ok", res.Grants, nil)
	}
	crashpoint.Hit("revoke.audited")
	outcome := "ok"
	if cause != nil || revokeErr != nil {
		outcome = "failed"
	}
	e.recordQuiet(ctx, req, "complete", outcome, nil, func(r *audit.Record) {
		r.Durations = durationsPtr(res.Durations)
		r.SecretVersion = res.Action.SecretVersion
		if cause != nil {
			r.Error = cause.Error()
		}
	})
	switch {
	case revokeErr != nil && cause != nil:
		return errors.Join(revokeErr, cause)
	case revokeErr != nil:
		return revokeErr
	}
	return cause
}

func (e *Engine) since(t time.Time) int64 { return e.clock.Now().Sub(t).Milliseconds() }

func durationsPtr(d audit.Durations) *audit.Durations { return &d }

// record appends one audit record for req.
func (e *Engine) record(ctx context.Context, req access.Request, event, outcome string, grants []Grant, edit func(*audit.Record)) (audit.Record, error) {
	r := audit.Record{
		RequestID: req.ID,
		Event:     event,
		Actor:     e.callerID,
		Principal: req.Principal.ID,
		Outcome:   outcome,
		Pairs:     pairRecords(grants),
	}
	if edit != nil {
		edit(&r)
	}
	return e.audit.Append(r)
}

// recordQuiet appends a record after a grant may exist. A failed append must
// not stop the revoke, so it is logged, record included, and not returned.
func (e *Engine) recordQuiet(ctx context.Context, req access.Request, event, outcome string, grants []Grant, edit func(*audit.Record)) {
	if r, err := e.record(ctx, req, event, outcome, grants, edit); err != nil {
		e.log.ErrorContext(ctx, "audit append failed", "request_id", req.ID, "event", event,
			"outcome", r.Outcome, "error", err)
	}
}

func pairRecords(grants []Grant) []audit.PairRecord {
	if len(grants) == 0 {
		return nil
	}
	out := make([]audit.PairRecord, len(grants))
	for i, g := range grants {
		out[i] = audit.PairRecord{
			RoleID:         g.Pair.RoleID,
			RoleName:       g.RoleName,
			Scope:          g.Pair.Scope.String(),
			AssignmentID:   assignmentPath(g),
			AssignmentName: g.AssignmentName,
			PreExisting:    g.PreExisting,
			Backend:        orRBAC(g.Backend),
		}
	}
	return out
}

// RevokePlanned removes the planned grants of req outside a Run, as the
// clean-up step after a cancelled or failed apply does, and audits it.
// Deleting an assignment that never existed counts as done.
func (e *Engine) RevokePlanned(ctx context.Context, req access.Request, grants []Grant) error {
	return e.finish(ctx, req, &Result{Request: req, Grants: grants}, nil)
}
