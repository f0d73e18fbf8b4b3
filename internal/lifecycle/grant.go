package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/azure"
)

// Grant is one pair made real for the principal.
type Grant struct {
	Pair             access.Pair
	RoleName         string
	RoleDefinitionID string
	AssignmentName   string
	AssignmentID     string
	// PreExisting marks an assignment of the same role to the same principal
	// at the same scope that Elevate found rather than created. Elevate never
	// deletes it.
	PreExisting bool
	// Created is set when Azure confirmed the assignment this run asked for.
	Created     bool
	GrantedAt   time.Time
	Revoked     bool
	Verified    bool
	RevokeError string
}

// Owned reports whether Elevate must remove the assignment. That is every
// planned grant that was not adopted: a PUT whose response was lost may have
// created it, and its name derives from this request, so no one else owns it.
func (g Grant) Owned() bool { return !g.PreExisting }

// PlanGrants computes the deterministic assignment of every pair, so the
// names are known (and audited) before any Azure call.
func PlanGrants(req access.Request, roles map[string]Role) []Grant {
	grants := make([]Grant, len(req.Pairs))
	for i, p := range req.Pairs {
		grants[i] = Grant{
			Pair:             p,
			RoleName:         roles[p.RoleID].Name(),
			RoleDefinitionID: RoleDefinitionID(p.Scope, p.RoleID),
			AssignmentName:   access.AssignmentName(req.ID, req.Principal.ID, p.RoleID, p.Scope),
		}
	}
	return grants
}

// ErrGrant wraps failures to create a grant.
var ErrGrant = errors.New("grant failed")

// GrantAll creates every planned grant, at most Concurrency at a time. It
// updates grants in place, so on error the caller still sees which ones
// exist and must revoke them.
func (e *Engine) GrantAll(ctx context.Context, req access.Request, grants []Grant) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(e.opts.Concurrency)
	var mu sync.Mutex
	for i := range grants {
		g.Go(func() error {
			grant := grants[i]
			err := e.grantOne(gctx, req, &grant)
			mu.Lock()
			grants[i] = grant
			mu.Unlock()
			return err
		})
	}
	return g.Wait()
}

func (e *Engine) grantOne(ctx context.Context, req access.Request, g *Grant) error {
	scope := g.Pair.Scope.String()
	log := e.log.With("request_id", req.ID, "assignment_name", g.AssignmentName, "scope", scope, "role_id", g.Pair.RoleID)
	want := azure.Assignment{
		Scope:            scope,
		Name:             g.AssignmentName,
		RoleDefinitionID: g.RoleDefinitionID,
		PrincipalID:      req.Principal.ID,
		PrincipalType:    req.Principal.Type,
		Description:      fmt.Sprintf("elevate request %s: %s", req.ID, truncate(req.Justification, 200)),
	}
	deadline := e.clock.Now().Add(e.opts.PrincipalWait)
	for attempt := 1; ; attempt++ {
		created, err := e.arm.CreateAssignment(ctx, want)
		switch {
		case err == nil:
			g.AssignmentID = created.ID
			g.Created = true
			g.GrantedAt = e.clock.Now()
			log.InfoContext(ctx, "role assignment created", "assignment_id", created.ID)
			return nil

		case errors.Is(err, azure.ErrAssignmentExists):
			// The same principal already holds the role at this scope under
			// another name: adopt it, and leave it in place afterwards.
			existing, findErr := e.arm.FindAssignment(ctx, scope, g.RoleDefinitionID, req.Principal.ID)
			if findErr != nil {
				return fmt.Errorf("%w: role %s at %s exists but could not be read: %w", ErrGrant, g.RoleName, scope, findErr)
			}
			g.AssignmentID = existing.ID
			g.PreExisting = true
			g.GrantedAt = e.clock.Now()
			log.InfoContext(ctx, "adopted pre-existing role assignment", "assignment_id", existing.ID)
			return nil

		case errors.Is(err, azure.ErrPrincipalNotFound):
			if !e.clock.Now().Before(deadline) {
				return fmt.Errorf("%w: principal %s not found after %s: %w; "+
					"--principal-id must be the object id of the service principal or managed identity, "+
					"not its application (client) id, and a new identity can take minutes to replicate",
					ErrGrant, req.Principal.ID, e.opts.PrincipalWait, err)
			}
			delay := e.backoff(attempt)
			log.InfoContext(ctx, "principal not replicated yet, retrying", "attempt", attempt, "delay", delay)
			if err := e.sleep(ctx, delay); err != nil {
				return fmt.Errorf("%w: role %s at %s: %w", ErrGrant, g.RoleName, scope, err)
			}

		default:
			return fmt.Errorf("%w: role %s at %s: %w", ErrGrant, g.RoleName, scope, err)
		}
	}
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
