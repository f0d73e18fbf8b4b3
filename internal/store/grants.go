package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
)

const grantColumns = `id, principal_id, principal_type, role_id, scope, scope_key, request_id,
	assignment_name, assignment_id, backend, pre_existing, state, attempts, next_attempt_at,
	claim_owner, last_error, created_at, updated_at, granted_at, revoked_at, verified_at`

func scanGrant(row rowScanner) (Grant, error) {
	var g Grant
	err := row.Scan(&g.ID, &g.PrincipalID, &g.PrincipalType, &g.RoleID, &g.Scope, &g.ScopeKey,
		&g.RequestID, &g.AssignmentName, &g.AssignmentID, &g.Backend, &g.PreExisting, &g.State,
		&g.Attempts, &g.NextAttemptAt, &g.ClaimOwner, &g.LastError, &g.CreatedAt, &g.UpdatedAt,
		&g.GrantedAt, &g.RevokedAt, &g.VerifiedAt)
	return g, err
}

const leaseColumns = `id, grant_id, request_id, state, expires_at, created_at, released_at,
	claim_owner, claim_until`

func scanLease(row rowScanner) (Lease, error) {
	var l Lease
	err := row.Scan(&l.ID, &l.GrantID, &l.RequestID, &l.State, &l.ExpiresAt, &l.CreatedAt,
		&l.ReleasedAt, &l.ClaimOwner, &l.ClaimUntil)
	return l, err
}

// acquireAttempts bounds the retries of AcquireGrant when a concurrent
// caller inserts the same grant first.
const acquireAttempts = 3

func (s *sqlStore) AcquireGrant(ctx context.Context, p AcquireParams) (Acquisition, error) {
	what := fmt.Sprintf("acquire grant of role %q at %q for request %q", p.RoleID, p.Scope, p.RequestID)
	now := s.now()
	p.LeaseExpiresAt = utc(p.LeaseExpiresAt)
	switch {
	case p.RequestID == "" || p.PrincipalID == "" || p.RoleID == "" || p.Scope == "":
		return Acquisition{}, fmt.Errorf("%s: request id, principal id, role id and scope are required: %w", what, ErrInvalid)
	case p.AssignmentName == "":
		return Acquisition{}, fmt.Errorf("%s: missing assignment name; derive it from the request and pair: %w", what, ErrInvalid)
	case !p.LeaseExpiresAt.After(now):
		return Acquisition{}, fmt.Errorf("%s: lease expiry %s is not after now %s: %w",
			what, p.LeaseExpiresAt.Format(time.RFC3339), now.Format(time.RFC3339), ErrInvalid)
	}
	// GUIDs and resource ids compare without case in Azure.
	p.PrincipalID = strings.ToLower(p.PrincipalID)
	p.RoleID = strings.ToLower(p.RoleID)

	// A unique violation means a concurrent caller inserted the grant or
	// the lease first; the next attempt finds and shares it.
	var acq Acquisition
	var err error
	for attempt := 1; attempt <= acquireAttempts; attempt++ {
		err = s.e.inTx(ctx, func(q querier) error {
			var txErr error
			acq, txErr = s.acquireTx(ctx, q, p, now)
			return txErr
		})
		if !errors.Is(err, errUnique) {
			break
		}
	}
	switch {
	case errors.Is(err, errUnique):
		return Acquisition{}, fmt.Errorf("%s: lost the race to insert %d times; retry: %w", what, acquireAttempts, ErrConflict)
	case err != nil:
		return Acquisition{}, notFoundOr(err, what)
	}
	return acq, nil
}

func (s *sqlStore) acquireTx(ctx context.Context, q querier, p AcquireParams, now time.Time) (Acquisition, error) {
	// The request must be approved or active. FOR SHARE keeps it so until
	// the lease is committed.
	var state RequestState
	err := queryOne(ctx, q, func(row rowScanner) error { return row.Scan(&state) },
		`SELECT state FROM requests WHERE id = $1 `+s.e.lock("FOR SHARE"), p.RequestID)
	if err != nil {
		return Acquisition{}, err
	}
	if state != RequestApproved && state != RequestActive {
		return Acquisition{}, fmt.Errorf("request is %s, not approved or active: %w", state, ErrConflict)
	}

	// Lock the live grant, so a concurrent ReleaseLease cannot move it to
	// revoking between this check and the new lease.
	marks, args := placeholders([]any{p.PrincipalID, p.RoleID, strings.ToLower(p.Scope)}, liveGrantStates)
	var g Grant
	err = queryOne(ctx, q, func(row rowScanner) (err error) {
		g, err = scanGrant(row)
		return err
	}, `SELECT `+grantColumns+` FROM grants WHERE principal_id = $1 AND role_id = $2
		AND scope_key = $3 AND state IN (`+marks+`) `+s.e.lock("FOR UPDATE"), args...)
	switch {
	case errors.Is(err, errNoRows):
		return s.insertGrant(ctx, q, p, now)
	case err != nil:
		return Acquisition{}, err
	case g.State == GrantRevoking || g.State == GrantRevokeFailed:
		return Acquisition{}, fmt.Errorf("grant %q is being revoked; retry after it ends: %w", g.ID, ErrConflict)
	}

	// The request may hold a lease already: a retry after a crash.
	var l Lease
	err = queryOne(ctx, q, func(row rowScanner) (err error) {
		l, err = scanLease(row)
		return err
	}, `SELECT `+leaseColumns+` FROM leases WHERE grant_id = $1 AND request_id = $2`, g.ID, p.RequestID)
	switch {
	case err == nil && l.State == LeaseReleased:
		return Acquisition{}, fmt.Errorf("request released its lease %q on grant %q already: %w", l.ID, g.ID, ErrConflict)
	case err == nil:
	case errors.Is(err, errNoRows):
		if l, err = insertLease(ctx, q, g.ID, p, now); err != nil {
			return Acquisition{}, err
		}
	default:
		return Acquisition{}, err
	}
	create := g.State == GrantIntent && g.RequestID == p.RequestID
	return Acquisition{Grant: g, Lease: l, Create: create}, nil
}

func (s *sqlStore) insertGrant(ctx context.Context, q querier, p AcquireParams, now time.Time) (Acquisition, error) {
	g := Grant{
		ID:             uuid.NewString(),
		PrincipalID:    p.PrincipalID,
		PrincipalType:  p.PrincipalType,
		RoleID:         p.RoleID,
		Scope:          p.Scope,
		ScopeKey:       strings.ToLower(p.Scope),
		RequestID:      p.RequestID,
		AssignmentName: p.AssignmentName,
		Backend:        p.Backend,
		State:          GrantIntent,
		CreatedAt:      now,
		UpdatedAt:      now,
	}
	_, err := q.exec(ctx, `INSERT INTO grants (id, principal_id, principal_type, role_id, scope,
		scope_key, request_id, assignment_name, backend, state, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		g.ID, g.PrincipalID, g.PrincipalType, g.RoleID, g.Scope, g.ScopeKey, g.RequestID,
		g.AssignmentName, g.Backend, string(g.State), g.CreatedAt, g.UpdatedAt)
	if err != nil {
		return Acquisition{}, err
	}
	l, err := insertLease(ctx, q, g.ID, p, now)
	if err != nil {
		return Acquisition{}, err
	}
	return Acquisition{Grant: g, Lease: l, Create: true}, nil
}

func insertLease(ctx context.Context, q querier, grantID string, p AcquireParams, now time.Time) (Lease, error) {
	l := Lease{
		ID:        uuid.NewString(),
		GrantID:   grantID,
		RequestID: p.RequestID,
		State:     LeaseActive,
		ExpiresAt: p.LeaseExpiresAt,
		CreatedAt: now,
	}
	_, err := q.exec(ctx, `INSERT INTO leases (id, grant_id, request_id, state, expires_at, created_at)
		VALUES ($1, $2, $3, $4, $5, $6)`, l.ID, l.GrantID, l.RequestID, l.State, l.ExpiresAt, l.CreatedAt)
	return l, err
}

func (s *sqlStore) GetGrant(ctx context.Context, id string) (Grant, error) {
	g, err := getGrant(ctx, s.e, id, "")
	if err != nil {
		return Grant{}, notFoundOr(err, fmt.Sprintf("get grant %q", id))
	}
	return g, nil
}

func getGrant(ctx context.Context, q querier, id, lock string) (Grant, error) {
	var g Grant
	err := queryOne(ctx, q, func(row rowScanner) (err error) {
		g, err = scanGrant(row)
		return err
	}, `SELECT `+grantColumns+` FROM grants WHERE id = $1 `+lock, id)
	return g, err
}

func (s *sqlStore) MarkGrant(ctx context.Context, id string, from []GrantState, to GrantState, u GrantUpdate) (Grant, error) {
	what := fmt.Sprintf("mark grant %q %s", id, to)
	if err := checkEdges(from, to, GrantState.CanTransition); err != nil {
		return Grant{}, fmt.Errorf("%s: %w", what, err)
	}
	now := s.now()
	grantedAt, revokedAt := utc(u.GrantedAt), utc(u.RevokedAt)
	if grantedAt.IsZero() && to == GrantActive {
		grantedAt = now
	}
	if revokedAt.IsZero() && to == GrantRevoked {
		revokedAt = now
	}
	var assignmentID, preExisting, lastError any
	if u.AssignmentID != nil {
		assignmentID = *u.AssignmentID
	}
	if u.PreExisting != nil {
		preExisting = *u.PreExisting
	}
	if u.LastError != nil {
		lastError = *u.LastError
	}
	args := []any{string(to), now, assignmentID, preExisting, lastError, utc(u.NextAttemptAt),
		grantedAt, revokedAt, utc(u.VerifiedAt), id}
	marks, args := placeholders(args, from)
	query := `UPDATE grants SET state = $1, updated_at = $2,
		assignment_id = COALESCE($3, assignment_id),
		pre_existing = COALESCE($4, pre_existing),
		last_error = COALESCE($5, last_error),
		next_attempt_at = COALESCE($6, next_attempt_at),
		granted_at = COALESCE($7, granted_at),
		revoked_at = COALESCE($8, revoked_at),
		verified_at = COALESCE($9, verified_at)
		WHERE id = $10 AND state IN (` + marks + `)
		RETURNING ` + grantColumns

	var g Grant
	err := s.e.inTx(ctx, func(q querier) error {
		return queryOne(ctx, q, func(row rowScanner) (err error) {
			g, err = scanGrant(row)
			return err
		}, query, args...)
	})
	if errors.Is(err, errNoRows) {
		current, getErr := getGrant(ctx, s.e, id, "")
		if getErr != nil {
			return Grant{}, notFoundOr(getErr, what)
		}
		return Grant{}, fmt.Errorf("%s: grant is %s, not %s: %w", what, current.State, joinStates(from), ErrConflict)
	}
	if err != nil {
		return Grant{}, fmt.Errorf("%s: %w", what, err)
	}
	return g, nil
}

func (s *sqlStore) ReleaseLease(ctx context.Context, leaseID string) (Release, error) {
	what := fmt.Sprintf("release lease %q", leaseID)
	var rel Release
	err := s.e.inTx(ctx, func(q querier) error {
		var err error
		rel, err = s.releaseTx(ctx, q, leaseID)
		return err
	})
	if errors.Is(err, errNoRows) {
		return Release{}, s.explainLeaseMiss(ctx, what, leaseID)
	}
	if err != nil {
		return Release{}, fmt.Errorf("%s: %w", what, err)
	}
	return rel, nil
}

func (s *sqlStore) releaseTx(ctx context.Context, q querier, leaseID string) (Release, error) {
	now := s.now()
	var rel Release
	err := queryOne(ctx, q, func(row rowScanner) (err error) {
		rel.Lease, err = scanLease(row)
		return err
	}, `UPDATE leases SET state = $1, released_at = $2 WHERE id = $3 AND state = $4
		RETURNING `+leaseColumns, LeaseReleased, now, leaseID, LeaseActive)
	if err != nil {
		return Release{}, err
	}

	// Lock the grant before counting, so an AcquireGrant that adds a lease
	// either committed before the count or finds the grant revoking after.
	rel.Grant, err = getGrant(ctx, q, rel.Lease.GrantID, s.e.lock("FOR UPDATE"))
	if err != nil {
		return Release{}, fmt.Errorf("lock grant %q: %w", rel.Lease.GrantID, err)
	}
	var remaining int64
	err = queryOne(ctx, q, func(row rowScanner) error { return row.Scan(&remaining) },
		`SELECT COUNT(*) FROM leases WHERE grant_id = $1 AND state = $2`, rel.Grant.ID, LeaseActive)
	if err != nil {
		return Release{}, fmt.Errorf("count leases of grant %q: %w", rel.Grant.ID, err)
	}
	if remaining > 0 || !isOneOf(rel.Grant.State, GrantIntent, GrantActive) {
		return rel, nil
	}

	// The last lease ended. Elevate never deletes an assignment it
	// adopted, so a pre-existing grant ends here without a revoke.
	if rel.Grant.PreExisting {
		rel.Grant, err = s.setGrantState(ctx, q, rel.Grant.ID, GrantRevoked, now, time.Time{}, false)
		return rel, err
	}
	// NOTE: a grant still in intent also moves to revoking here. Its
	// creator then gets ErrConflict from MarkGrant(intent -> active) and
	// must delete what it created, because the revoker may have deleted
	// before the create landed.
	rel.Grant, err = s.setGrantState(ctx, q, rel.Grant.ID, GrantRevoking, now, now.Add(s.opts.RevokeClaim), true)
	rel.Revoke = err == nil
	return rel, err
}

// setGrantState moves a locked grant to state, for ReleaseLease. A revoking
// grant gets its first attempt counted and reserved until next.
func (s *sqlStore) setGrantState(ctx context.Context, q querier, id string, state GrantState, now, next time.Time, attempt bool) (Grant, error) {
	var revokedAt time.Time
	if state == GrantRevoked {
		revokedAt = now
	}
	added := 0
	if attempt {
		added = 1
	}
	var g Grant
	err := queryOne(ctx, q, func(row rowScanner) (err error) {
		g, err = scanGrant(row)
		return err
	}, `UPDATE grants SET state = $1, updated_at = $2, next_attempt_at = $3, revoked_at = $4,
		attempts = attempts + $5 WHERE id = $6 RETURNING `+grantColumns,
		string(state), now, next, revokedAt, added, id)
	if err != nil {
		return Grant{}, fmt.Errorf("mark grant %q %s: %w", id, state, err)
	}
	return g, nil
}

func (s *sqlStore) explainLeaseMiss(ctx context.Context, what, leaseID string) error {
	var state string
	err := queryOne(ctx, s.e, func(row rowScanner) error { return row.Scan(&state) },
		`SELECT state FROM leases WHERE id = $1`, leaseID)
	if err != nil {
		return notFoundOr(err, what)
	}
	return fmt.Errorf("%s: lease is %s, not active: %w", what, state, ErrConflict)
}

func (s *sqlStore) ListLeases(ctx context.Context, f LeaseFilter) ([]Lease, error) {
	var conds []string
	var args []any
	if f.RequestID != "" {
		args = append(args, f.RequestID)
		conds = append(conds, fmt.Sprintf("request_id = $%d", len(args)))
	}
	if f.GrantID != "" {
		args = append(args, f.GrantID)
		conds = append(conds, fmt.Sprintf("grant_id = $%d", len(args)))
	}
	if len(conds) == 0 {
		return nil, fmt.Errorf("list leases: give a request id or a grant id: %w", ErrInvalid)
	}
	leases, err := queryAll(ctx, s.e, scanLease, `SELECT `+leaseColumns+` FROM leases WHERE `+
		strings.Join(conds, " AND ")+` ORDER BY created_at, id`, args...)
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	return leases, nil
}

func (s *sqlStore) ClaimExpired(ctx context.Context, now time.Time, limit int, owner string, claimFor time.Duration) ([]Lease, error) {
	if err := checkClaim(limit, owner, claimFor, true); err != nil {
		return nil, fmt.Errorf("claim expired leases: %w", err)
	}
	now = utc(now)
	// On PostgreSQL, SKIP LOCKED passes over leases another replica is
	// claiming right now, and the re-check of the WHERE clause after a
	// concurrent commit excludes leases it has just claimed. On SQLite the
	// statement runs inside the single write transaction.
	query := `UPDATE leases SET claim_owner = $1, claim_until = $2
		WHERE id IN (SELECT id FROM leases WHERE state = $3 AND expires_at <= $4
			AND (claim_until IS NULL OR claim_until <= $4)
			ORDER BY expires_at, id LIMIT $5 ` + s.e.lock("FOR UPDATE SKIP LOCKED") + `)
		RETURNING ` + leaseColumns
	var leases []Lease
	err := s.e.inTx(ctx, func(q querier) error {
		var err error
		leases, err = queryAll(ctx, q, scanLease, query, owner, now.Add(claimFor), LeaseActive, now, limit)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("claim expired leases for %q: %w", owner, err)
	}
	sort.Slice(leases, func(i, j int) bool {
		if !leases[i].ExpiresAt.Equal(leases[j].ExpiresAt) {
			return leases[i].ExpiresAt.Before(leases[j].ExpiresAt)
		}
		return leases[i].ID < leases[j].ID
	})
	return leases, nil
}

func (s *sqlStore) ClaimRetries(ctx context.Context, now time.Time, limit int, owner string, claimFor time.Duration) ([]Grant, error) {
	if err := checkClaim(limit, owner, claimFor, true); err != nil {
		return nil, fmt.Errorf("claim grant retries: %w", err)
	}
	now = utc(now)
	query := `UPDATE grants SET claim_owner = $1, next_attempt_at = $2, attempts = attempts + 1, updated_at = $3
		WHERE id IN (SELECT id FROM grants WHERE state IN ($4, $5)
			AND (next_attempt_at IS NULL OR next_attempt_at <= $3)
			ORDER BY next_attempt_at, id LIMIT $6 ` + s.e.lock("FOR UPDATE SKIP LOCKED") + `)
		RETURNING ` + grantColumns
	var grants []Grant
	err := s.e.inTx(ctx, func(q querier) error {
		var err error
		grants, err = queryAll(ctx, q, scanGrant, query, owner, now.Add(claimFor), now,
			string(GrantRevoking), string(GrantRevokeFailed), limit)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("claim grant retries for %q: %w", owner, err)
	}
	sort.Slice(grants, func(i, j int) bool { return grants[i].ID < grants[j].ID })
	return grants, nil
}

func (s *sqlStore) NonTerminalGrants(ctx context.Context) ([]Grant, error) {
	marks, args := placeholders(nil, liveGrantStates)
	grants, err := queryAll(ctx, s.e, scanGrant, `SELECT `+grantColumns+` FROM grants
		WHERE state IN (`+marks+`) ORDER BY created_at, id`, args...)
	if err != nil {
		return nil, fmt.Errorf("list non-terminal grants: %w", err)
	}
	return grants, nil
}

func (s *sqlStore) ActiveGrants(ctx context.Context) ([]Grant, error) {
	grants, err := queryAll(ctx, s.e, scanGrant, `SELECT `+grantColumns+` FROM grants
		WHERE state = $1 ORDER BY created_at, id`, string(GrantActive))
	if err != nil {
		return nil, fmt.Errorf("list active grants: %w", err)
	}
	return grants, nil
}

func (s *sqlStore) StrandedRequests(ctx context.Context, now, quietSince time.Time, limit int) ([]string, error) {
	if limit <= 0 || limit > MaxListLimit {
		return nil, fmt.Errorf("list stranded requests: invalid limit %d: use 1 to %d: %w", limit, MaxListLimit, ErrInvalid)
	}
	ids, err := queryAll(ctx, s.e, func(row rowScanner) (id string, err error) {
		err = row.Scan(&id)
		return id, err
	}, `SELECT r.id FROM requests r
		WHERE (r.state IN ($1, $2) OR (r.state = $3 AND r.expires_at <= $4))
		AND r.updated_at <= $5
		AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.request_id = r.id AND l.state = $6)
		ORDER BY r.id LIMIT $7`,
		string(RequestRevoking), string(RequestRevokeFailed), string(RequestActive), utc(now), utc(quietSince),
		string(LeaseActive), limit)
	if err != nil {
		return nil, fmt.Errorf("list stranded requests: %w", err)
	}
	return ids, nil
}
