package lifecycle

import (
	"context"
	"errors"
	"fmt"

	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/azure"
	"github.com/elevate-dev/elevate/internal/crashpoint"
)

// Backend makes one pair real for a principal and ends it again. The engine
// owns retries of removal, verification and auditing; a backend owns the
// Azure calls of its kind of grant.
type Backend interface {
	// Grant creates or adopts the grant and fills in g: AssignmentID,
	// Created or PreExisting, GrantedAt and, where Azure ends the grant
	// itself, EndsAt.
	Grant(ctx context.Context, req access.Request, g *Grant) error
	// Remove ends an owned grant. A grant that is already gone is no error.
	Remove(ctx context.Context, req access.Request, g *Grant) error
	// Exists reports whether the grant still exists in Azure.
	Exists(ctx context.Context, g Grant) (bool, error)
}

// BackendRBAC is the backend of temporary role assignments.
const BackendRBAC = "rbac"

// rbacBackend grants with a temporary Azure RBAC role assignment whose name
// is the grant's deterministic AssignmentName.
type rbacBackend struct {
	e   *Engine
	arm ARM
}

// Grant creates the role assignment, retrying PrincipalNotFound while a new
// identity replicates, and adopts an existing assignment of the same role to
// the same principal at the same scope.
func (b *rbacBackend) Grant(ctx context.Context, req access.Request, g *Grant) error {
	e := b.e
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
		crashpoint.Hit("grant.put_before")
		created, err := b.arm.CreateAssignment(ctx, want)
		switch {
		case err == nil:
			g.AssignmentID = created.ID
			g.Created = true
			g.GrantedAt = e.clock.Now()
			log.InfoContext(ctx, "role assignment created", "assignment_id", created.ID)
			crashpoint.Hit("grant.put_after")
			return nil

		case errors.Is(err, azure.ErrAssignmentExists):
			// The same principal already holds the role at this scope under
			// another name: adopt it, and leave it in place afterwards.
			existing, findErr := b.arm.FindAssignment(ctx, scope, g.RoleDefinitionID, req.Principal.ID)
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

		case errors.Is(err, azure.ErrForbidden):
			return fmt.Errorf("%w: role %s at %s: %w; the identity may grant only what its delegation allows "+
				"(`elevate bootstrap` prints one for the roles and scopes it needs)", ErrGrant, g.RoleName, scope, err)

		default:
			return fmt.Errorf("%w: role %s at %s: %w", ErrGrant, g.RoleName, scope, err)
		}
	}
}

// Remove deletes the role assignment; 204 and 404 both count as gone.
func (b *rbacBackend) Remove(ctx context.Context, _ access.Request, g *Grant) error {
	_, err := b.arm.DeleteAssignment(ctx, g.Pair.Scope.String(), g.AssignmentName)
	return err
}

// Exists reads the role assignment back.
func (b *rbacBackend) Exists(ctx context.Context, g Grant) (bool, error) {
	_, err := b.arm.GetAssignment(ctx, g.Pair.Scope.String(), g.AssignmentNameOrID())
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, azure.ErrNotFound):
		return false, nil
	default:
		return false, err
	}
}

// backendOf returns the backend that made or will make g.
func (e *Engine) backendOf(g Grant) Backend {
	return e.Backend(g.Backend)
}

// HasBackend reports whether the backend called name is registered.
func (e *Engine) HasBackend(name string) bool {
	_, ok := e.backends[name]
	return ok
}

// Backend returns the backend registered under name, or the rbac backend
// when name is empty or unknown.
func (e *Engine) Backend(name string) Backend {
	if b, ok := e.backends[name]; ok {
		return b
	}
	return e.backends[BackendRBAC]
}
