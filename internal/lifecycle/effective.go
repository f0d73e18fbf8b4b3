package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"

	"github.com/elevate-dev/elevate/internal/azure"
	"github.com/elevate-dev/elevate/internal/crashpoint"
)

// Prober checks on a data plane that a grant is effective, for example with a
// harmless Key Vault read. It returns an error wrapping azure.ErrForbidden
// while the permission has not propagated.
type Prober interface {
	Probe(ctx context.Context) error
}

// ErrNotEffective is returned when permissions did not propagate in time.
var ErrNotEffective = errors.New("grant not effective")

// WaitEffective polls until every grant's role shows in the caller's
// effective permissions at its scope and every prober succeeds. Only the
// propagation signals are retried (a missing permission, or 403 from a
// prober); any other error ends the wait. When the caller is not the
// principal, its own permissions tell nothing about the grant, so the wait
// only reads each assignment back.
func (e *Engine) WaitEffective(ctx context.Context, principalID string, grants []Grant, roles map[string]Role, probers []Prober) error {
	ctx, cancel := context.WithTimeout(ctx, e.opts.EffectiveTimeout)
	defer cancel()
	self := strings.EqualFold(principalID, e.callerID)
	if !self {
		e.log.WarnContext(ctx, "caller is not the principal: effectiveness is checked by reading the assignments back only",
			"principal_id", principalID, "caller_id", e.callerID)
	}
	// waitingFor names what the wait is on, for the timeout error, even when
	// the deadline strikes inside the first read.
	waitingFor := "the grant"
	if len(grants) > 0 {
		waitingFor = fmt.Sprintf("%s at %s", roles[grants[0].Pair.RoleID].Name(), grants[0].Pair.Scope)
	}
	for attempt := 1; ; attempt++ {
		crashpoint.Hit("effective.poll")
		pending, err := e.pendingGrant(ctx, self, grants, roles, probers)
		switch {
		case err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
			return fmt.Errorf("%w after %s: still waiting for %s (%w)", ErrNotEffective, e.opts.EffectiveTimeout, waitingFor, err)
		case err != nil && transient(err):
			// The SDK already retried this read; a later poll may still
			// succeed, and giving up would end an elevation that is fine.
			e.log.WarnContext(ctx, "effectiveness check failed, retrying", "attempt", attempt, "error", err)
			pending = waitingFor
		case err != nil:
			return err
		}
		waitingFor = pending
		if pending == "" {
			return nil
		}
		delay := e.backoff(attempt)
		e.log.DebugContext(ctx, "grant not effective yet", "waiting_for", pending, "attempt", attempt, "delay", delay)
		if err := e.sleep(ctx, delay); err != nil {
			return fmt.Errorf("%w after %s: still waiting for %s", ErrNotEffective, e.opts.EffectiveTimeout, pending)
		}
	}
}

// pendingGrant returns a description of the first check that has not passed,
// or "" when all have.
func (e *Engine) pendingGrant(ctx context.Context, self bool, grants []Grant, roles map[string]Role, probers []Prober) (string, error) {
	for _, g := range grants {
		scope := g.Pair.Scope.String()
		if !self {
			exists, err := e.backendOf(g).Exists(ctx, g)
			if err != nil {
				return "", fmt.Errorf("read back grant %s: %w", g.AssignmentName, err)
			}
			if !exists {
				return "grant " + g.AssignmentName, nil
			}
			continue
		}
		role := roles[g.Pair.RoleID]
		if len(role.Def.Actions)+len(role.Def.DataActions) == 0 {
			continue // unknown role: nothing to compare with
		}
		perms, err := e.arm.Permissions(ctx, scope)
		if err != nil {
			return "", fmt.Errorf("read permissions at %s: %w", scope, err)
		}
		if missing := missingAction(role.Def, perms); missing != "" {
			return fmt.Sprintf("%s at %s (%s)", role.Name(), scope, missing), nil
		}
	}
	for _, p := range probers {
		if err := p.Probe(ctx); err != nil {
			if errors.Is(err, azure.ErrForbidden) {
				return "data plane access", nil
			}
			return "", err
		}
	}
	return "", nil
}

// AssignmentNameOrID returns the name of an owned assignment, or the name part
// of an adopted one's id.
func (g Grant) AssignmentNameOrID() string {
	if g.PreExisting && g.AssignmentID != "" {
		return g.AssignmentID[strings.LastIndex(g.AssignmentID, "/")+1:]
	}
	return g.AssignmentName
}

// missingAction returns the first action or data action of def that perms
// does not allow, or "".
func missingAction(def azure.RoleDefinition, perms azure.Permissions) string {
	for _, a := range def.Actions {
		if !allows(perms.Actions, perms.NotActions, a) {
			return a
		}
	}
	for _, a := range def.DataActions {
		if !allows(perms.DataActions, perms.NotDataActions, a) {
			return a
		}
	}
	return ""
}

// allows reports whether the allowed patterns cover action and the denied
// ones do not. Patterns may end in "*"; so may action, which is then covered
// by a pattern whose prefix is no longer than its own.
func allows(allowed, denied []string, action string) bool {
	covered := false
	for _, p := range allowed {
		if covers(p, action) {
			covered = true
			break
		}
	}
	if !covered {
		return false
	}
	for _, p := range denied {
		if covers(p, action) && !strings.HasSuffix(action, "*") {
			return false
		}
	}
	return true
}

func covers(pattern, action string) bool {
	pattern, action = strings.ToLower(pattern), strings.ToLower(action)
	if pattern == action {
		return true
	}
	prefix, wild := strings.CutSuffix(pattern, "*")
	if !wild {
		return false
	}
	return strings.HasPrefix(strings.TrimSuffix(action, "*"), prefix)
}

// transient reports whether err may clear on its own: throttling, a 5xx
// response, or a failure without any HTTP response.
func transient(err error) bool {
	var re *azcore.ResponseError
	return errors.Is(err, azure.ErrTransient) || errors.Is(err, azure.ErrThrottled) || !errors.As(err, &re)
}
