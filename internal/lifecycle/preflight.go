package lifecycle

import (
	"context"
	"fmt"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/elevate-dev/elevate/internal/access"
)

// DefaultAssignmentLimit is Azure's limit of role assignments per subscription.
const DefaultAssignmentLimit = 4000

// Check is one pre-flight result. A failed check that is not a warning means
// the request cannot be granted, or could not be revoked, and is refused
// before anyone is asked to approve it.
type Check struct {
	Name    string
	Scope   string
	OK      bool
	Warning bool
	Detail  string
}

// Quota, lock and permission checks, by name.
const (
	CheckQuota       = "assignment quota"
	CheckLocks       = "locks"
	CheckPermissions = "caller can grant and revoke"
)

// Preflight checks every subscription's role assignment quota, every scope's
// locks (a lock would block the delete, so the grant could outlive its
// window), and, when the caller is the principal that will grant itself,
// whether it may write and delete these role assignments there, with the
// ABAC conditions on its own role assignments evaluated. A planner identity
// cannot see another identity's rights, so apply finds those out. A check
// that cannot run is a warning, not a failure.
func (e *Engine) Preflight(ctx context.Context, req access.Request) []Check {
	var checks []Check
	perSub := map[string]int{}
	var subs []string
	var scopes []access.ResourceID
	pairsAt := map[string][]access.Pair{}
	for _, p := range req.Pairs {
		if sub := p.Scope.SubscriptionID(); sub != "" {
			if perSub[sub] == 0 {
				subs = append(subs, sub)
			}
			perSub[sub]++
		}
		if _, seen := pairsAt[p.Scope.Key()]; !seen {
			scopes = append(scopes, p.Scope)
		}
		pairsAt[p.Scope.Key()] = append(pairsAt[p.Scope.Key()], p)
	}

	self := strings.EqualFold(req.Principal.ID, e.callerID)
	roles := newRoleCache(e.arm)
	for _, scope := range scopes {
		checks = append(checks, e.checkLocks(ctx, scope.String()))
		if self {
			checks = append(checks, e.checkCanGrant(ctx, req, scope.String(), pairsAt[scope.Key()], roles))
		}
	}
	for _, sub := range subs {
		checks = append(checks, e.checkQuota(ctx, sub, perSub[sub]))
	}
	return checks
}

// Failed returns the checks that refuse the request.
func Failed(checks []Check) []Check {
	var out []Check
	for _, c := range checks {
		if !c.OK && !c.Warning {
			out = append(out, c)
		}
	}
	return out
}

func (e *Engine) checkQuota(ctx context.Context, sub string, need int) Check {
	scope := "/subscriptions/" + sub
	c := Check{Name: CheckQuota, Scope: scope}
	n, err := e.arm.CountAssignments(ctx, scope)
	if err != nil {
		c.Warning = true
		c.Detail = "could not count role assignments: " + shortError(err)
		return c
	}
	return QuotaCheck(sub, n, need)
}

func (e *Engine) checkLocks(ctx context.Context, scope string) Check {
	c := Check{Name: CheckLocks, Scope: scope}
	locks, err := e.arm.Locks(ctx, scope)
	if err != nil {
		c.Warning = true
		c.Detail = "could not list locks: " + shortError(err)
		return c
	}
	var blocking []string
	for _, l := range locks {
		if !lockCovers(l.ID, scope) {
			continue // a lock on a resource below the scope does not apply to it
		}
		if strings.EqualFold(l.Level, "CanNotDelete") || strings.EqualFold(l.Level, "ReadOnly") {
			blocking = append(blocking, fmt.Sprintf("%s (%s)", l.Name, l.Level))
		}
	}
	if len(blocking) > 0 {
		c.Detail = "lock " + strings.Join(blocking, ", ") + " would block removing the assignment; remove the lock or choose a scope it does not cover"
		return c
	}
	c.OK = true
	c.Detail = "no lock blocks removing the assignment"
	return c
}

// checkCanGrant checks that the caller may write and delete role
// assignments at scope and that the conditions on its own role assignments
// allow those of pairs.
// lockCovers reports whether the lock with id lockID applies at scope: it
// sits at the scope or above it. ARM's lock list for a resource group also
// returns the locks of the resources in it, which do not. A lock id of
// another form is taken to apply, the safe reading.
func lockCovers(lockID, scope string) bool {
	lockScope, _, ok := strings.Cut(strings.ToLower(lockID), "/providers/microsoft.authorization/locks/")
	if !ok {
		return true
	}
	scope = strings.ToLower(strings.TrimRight(scope, "/"))
	return scope == lockScope || strings.HasPrefix(scope, lockScope+"/")
}

func (e *Engine) checkCanGrant(ctx context.Context, req access.Request, scope string, pairs []access.Pair, roles *roleCache) Check {
	c := Check{Name: CheckPermissions, Scope: scope}
	perms, err := e.arm.Permissions(ctx, scope)
	if err != nil {
		c.Warning = true
		c.Detail = "could not read the caller's permissions: " + shortError(err)
		return c
	}
	for _, action := range []string{"Microsoft.Authorization/roleAssignments/write", "Microsoft.Authorization/roleAssignments/delete"} {
		if !allows(perms.Actions, perms.NotActions, action) {
			c.Detail = fmt.Sprintf("the caller lacks %s here; give it the constrained delegation that `elevate bootstrap` prints", action)
			return c
		}
	}
	return e.checkConditions(ctx, req, scope, pairs, roles)
}

// PreflightLocks runs only the lock check of every scope: the one check that
// is cheap at any scale. The broker uses it per request with a quota check
// from QuotaCheck on a cached count, because counting a subscription's role
// assignments lists all of them.
func (e *Engine) PreflightLocks(ctx context.Context, req access.Request) []Check {
	var scopes []string
	seen := map[string]bool{}
	for _, p := range req.Pairs {
		if !seen[p.Scope.Key()] {
			seen[p.Scope.Key()] = true
			scopes = append(scopes, p.Scope.String())
		}
	}
	// One lookup per scope, Concurrency at a time; the checks keep the
	// order of the scopes.
	checks := make([]Check, len(scopes))
	var g errgroup.Group
	g.SetLimit(e.opts.Concurrency)
	for i, scope := range scopes {
		g.Go(func() error {
			checks[i] = e.checkLocks(ctx, scope)
			return nil
		})
	}
	_ = g.Wait() // the lookups report failures as warnings, never as errors
	return checks
}

// CountAssignments returns how many role assignments the subscription sub
// holds, for a caller that caches the count and checks it with QuotaCheck.
func (e *Engine) CountAssignments(ctx context.Context, sub string) (int, error) {
	return e.arm.CountAssignments(ctx, "/subscriptions/"+sub)
}

// QuotaCheck is the assignment quota check of subscription sub holding used
// assignments (as counted at some earlier time) when a request needs need
// more.
func QuotaCheck(sub string, used, need int) Check {
	left := DefaultAssignmentLimit - used
	c := Check{Name: CheckQuota, Scope: "/subscriptions/" + sub, OK: left >= need,
		Detail: fmt.Sprintf("%d of %d role assignments used, %d left, request needs %d", used, DefaultAssignmentLimit, left, need)}
	if !c.OK {
		c.Detail += "; remove unused role assignments in the subscription, or ask for fewer pairs"
	}
	return c
}
