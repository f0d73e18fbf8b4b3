package lifecycle

import (
	"context"
	"errors"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/elevate-dev/elevate/internal/access"
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
	// Backend names the Backend that made the grant; "" means rbac.
	Backend string
	// EndsAt is when the platform itself ends the grant, for backends that
	// set an expiry in Azure; zero when only Elevate's revoke ends it.
	EndsAt time.Time
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
			Backend:          BackendRBAC,
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
			err := e.granter(grant).Grant(gctx, req, &grant)
			mu.Lock()
			grants[i] = grant
			mu.Unlock()
			return err
		})
	}
	return g.Wait()
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
