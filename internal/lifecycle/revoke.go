package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/azure"
	"github.com/elevate-dev/elevate/internal/crashpoint"
)

// RevokeError lists the assignments that could not be removed, or whose
// removal could not be verified. They may still grant access and must be
// removed by hand or by a later `elevate revoke`.
type RevokeError struct {
	Failed []Grant
}

func (e *RevokeError) Error() string {
	parts := make([]string, len(e.Failed))
	for i, g := range e.Failed {
		parts[i] = fmt.Sprintf("%s (%s): %s; to end it, %s", assignmentPath(g), g.RoleName, g.RevokeError, manualFix(g))
	}
	return fmt.Sprintf("revoke failed for %d grant(s), which may still grant access: %s", len(e.Failed), strings.Join(parts, "; "))
}

// manualFix returns how a person ends g, which depends on its backend
// because PIM manages the role assignments it makes, and when Azure ends
// g by itself.
func manualFix(g Grant) string {
	var fix string
	switch g.Backend {
	case BackendPIMActivate, BackendPIMAssign:
		fix = "deactivate or remove it in Privileged Identity Management in the Azure portal"
	case BackendEntraRole:
		fix = "deactivate or remove it in Privileged Identity Management in the Microsoft Entra admin center"
	default:
		fix = "remove it with `az role assignment delete --ids " + assignmentPath(g) + "`"
	}
	if !g.EndsAt.IsZero() {
		fix += ", or wait: it ends by itself at " + g.EndsAt.UTC().Format(time.RFC3339)
	}
	return fix
}

func assignmentPath(g Grant) string {
	if g.AssignmentID != "" {
		return g.AssignmentID
	}
	return strings.TrimRight(g.Pair.Scope.String(), "/") + "/providers/Microsoft.Authorization/roleAssignments/" + g.AssignmentName
}

// RevokeAll removes every grant Elevate owns and verifies each removal by
// reading it back until Azure returns 404. It runs on a context detached from
// ctx's cancellation, bounded by RevokeTimeout plus any wait PIM's
// five-minute minimum imposes, so that SIGINT or a cancelled job still
// cleans up. Grants are updated in place.
func (e *Engine) RevokeAll(ctx context.Context, req access.Request, grants []Grant) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.opts.RevokeTimeout+e.pimWait(grants))
	defer cancel()
	var mu sync.Mutex
	var g errgroup.Group
	g.SetLimit(e.opts.Concurrency)
	for i := range grants {
		if !grants[i].Owned() {
			continue
		}
		g.Go(func() error {
			grant := grants[i]
			e.revokeOne(ctx, req, &grant)
			mu.Lock()
			grants[i] = grant
			mu.Unlock()
			return nil
		})
	}
	_ = g.Wait()
	var failed []Grant
	for _, grant := range grants {
		if grant.Owned() && !grant.Verified {
			failed = append(failed, grant)
		}
	}
	if len(failed) > 0 {
		return &RevokeError{Failed: failed}
	}
	return nil
}

func (e *Engine) revokeOne(ctx context.Context, req access.Request, g *Grant) {
	backend := e.backendOf(*g)
	scope := g.Pair.Scope.String()
	log := e.log.With("request_id", req.ID, "assignment_name", g.AssignmentName, "scope", scope, "backend", g.Backend)
	// A grant that does not exist needs no removal. This also keeps a caller
	// that could never grant from failing to remove what it never made.
	if exists, err := backend.Exists(ctx, *g); err == nil && !exists {
		g.Verified = true
		log.DebugContext(ctx, "grant absent, nothing to revoke")
		return
	}
	var err error
	for attempt := 1; attempt <= e.opts.RevokeAttempts; attempt++ {
		crashpoint.Hit("revoke.delete_before")
		err = backend.Remove(ctx, req, g)
		if err == nil {
			g.Revoked = true
			crashpoint.Hit("revoke.delete_after")
			break
		}
		if errors.Is(err, azure.ErrLocked) || ctx.Err() != nil {
			break // a lock does not go away by retrying
		}
		delay := e.backoff(attempt)
		log.WarnContext(ctx, "revoke failed, retrying", "attempt", attempt, "delay", delay, "error", err)
		if e.sleep(ctx, delay) != nil {
			break
		}
	}
	if !g.Revoked {
		g.RevokeError = fmt.Sprintf("delete: %v", err)
		log.ErrorContext(ctx, "revoke failed", "error", err)
		return
	}
	crashpoint.Hit("revoke.verify_before")
	if err := e.verifyGone(ctx, backend, *g); err != nil {
		g.RevokeError = fmt.Sprintf("verify: %v", err)
		log.ErrorContext(ctx, "revoke not verified", "error", err)
		return
	}
	g.Verified = true
	log.InfoContext(ctx, "grant removed and verified")
}

// verifyGone reads the grant back until Azure no longer has it.
func (e *Engine) verifyGone(ctx context.Context, backend Backend, g Grant) error {
	ctx, cancel := context.WithTimeout(ctx, e.opts.VerifyTimeout)
	defer cancel()
	for attempt := 1; ; attempt++ {
		crashpoint.Hit("revoke.verify_poll")
		exists, err := backend.Exists(ctx, g)
		if err == nil && !exists {
			return nil
		}
		reason := "still present"
		if err != nil {
			reason = err.Error()
		}
		if e.sleep(ctx, e.backoff(attempt)) != nil {
			return fmt.Errorf("assignment %s %s after %s", g.AssignmentName, reason, e.opts.VerifyTimeout)
		}
	}
}

// Remaining returns the owned grants that still exist in Azure. A grant
// whose existence cannot be read counts as remaining.
func (e *Engine) Remaining(ctx context.Context, grants []Grant) ([]Grant, error) {
	var left []Grant
	var firstErr error
	for _, g := range grants {
		if !g.Owned() {
			continue
		}
		exists, err := e.backendOf(g).Exists(ctx, g)
		if err != nil && firstErr == nil {
			firstErr = err
		}
		if exists || err != nil {
			left = append(left, g)
		}
	}
	return left, firstErr
}
