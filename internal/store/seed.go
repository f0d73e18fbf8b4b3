package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// ActiveSeed is one request that SeedActive stores as granted: Request
// gives its content, and AssignmentNames holds one role assignment name per
// pair, in pair order.
type ActiveSeed struct {
	Request         Request
	AssignmentNames []string
}

// Seeder is implemented by the stores that OpenSQLite and OpenPostgres
// return. Load tests use it to fill a store with active leases far faster
// than Create can; the broker itself never calls it.
type Seeder interface {
	// SeedActive inserts each seed as an active request with, per pair, an
	// active grant and one active lease that ends at the request's
	// ExpiresAt, all in one transaction. It writes no audit events and calls
	// nothing in Azure, so the role assignments the grants name do not
	// exist. It returns the stored requests.
	SeedActive(ctx context.Context, seeds []ActiveSeed) ([]Request, error)
}

// SeedActive implements Seeder.
func (s *sqlStore) SeedActive(ctx context.Context, seeds []ActiveSeed) ([]Request, error) {
	now := s.now()
	out := make([]Request, len(seeds))
	for i, seed := range seeds {
		r := seed.Request
		if len(seed.AssignmentNames) != len(r.Pairs) {
			return nil, fmt.Errorf("seed request %d: got %d assignment names for %d pairs; give one per pair: %w",
				i, len(seed.AssignmentNames), len(r.Pairs), ErrInvalid)
		}
		if err := checkNewRequest(&r); err != nil {
			return nil, fmt.Errorf("seed request %d: %w", i, err)
		}
		if !utc(r.ExpiresAt).After(now) {
			return nil, fmt.Errorf("seed request %d: expiry %s is not after now %s: %w",
				i, r.ExpiresAt.Format(time.RFC3339), now.Format(time.RFC3339), ErrInvalid)
		}
		r.State = RequestActive
		r.CreatedAt, r.UpdatedAt, r.GrantedAt, r.Version = now, now, now, 1
		r.ExpiresAt = utc(r.ExpiresAt)
		r.Principal.ID = strings.ToLower(r.Principal.ID)
		out[i] = r
	}
	err := s.e.inTx(ctx, func(q querier) error {
		for i, r := range out {
			if err := seedActiveTx(ctx, q, r, seeds[i].AssignmentNames, now); err != nil {
				return fmt.Errorf("seed request %d (%s): %w", i, r.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("seed active requests: %w", err)
	}
	return out, nil
}

// seedActiveTx inserts one active request, its pairs, grants and leases.
func seedActiveTx(ctx context.Context, q querier, r Request, names []string, now time.Time) error {
	var key any
	if r.IdempotencyKey != "" {
		key = r.IdempotencyKey
	}
	jsons, err := marshalAll(r.Claims, r.Pairs, r.Metadata, r.Decision)
	if err != nil {
		return err
	}
	_, err = q.exec(ctx, `INSERT INTO requests (id, idempotency_key, requester, claims,
		principal_id, principal_type, pairs, justification, duration_ns, metadata,
		request_hash, backend, decision, state, created_at, updated_at, granted_at,
		expires_at, version)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)`,
		r.ID, key, r.Requester, jsons[0], r.Principal.ID, r.Principal.Type, jsons[1],
		r.Justification, int64(r.Duration), jsons[2], r.Hash, r.Backend, jsons[3],
		string(r.State), r.CreatedAt, r.UpdatedAt, r.GrantedAt, r.ExpiresAt, r.Version)
	if err != nil {
		return err
	}
	for i, p := range r.Pairs {
		roleID, scopeKey := strings.ToLower(p.RoleID), strings.ToLower(p.Scope)
		_, err := q.exec(ctx, `INSERT INTO request_pairs (request_id, ordinal, role_id, scope_key)
			VALUES ($1, $2, $3, $4)`, r.ID, i, roleID, scopeKey)
		if err != nil {
			return fmt.Errorf("insert pair %d: %w", i, err)
		}
		grantID := uuid.NewString()
		assignmentID := p.Scope + "/providers/Microsoft.Authorization/roleAssignments/" + names[i]
		_, err = q.exec(ctx, `INSERT INTO grants (id, principal_id, principal_type, role_id, scope,
			scope_key, request_id, assignment_name, assignment_id, backend, state, created_at,
			updated_at, granted_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
			grantID, r.Principal.ID, r.Principal.Type, roleID, p.Scope, scopeKey, r.ID, names[i],
			assignmentID, r.Backend, string(GrantActive), now, now, now)
		if err != nil {
			return fmt.Errorf("insert grant of pair %d: %w", i, err)
		}
		_, err = q.exec(ctx, `INSERT INTO leases (id, grant_id, request_id, state, expires_at, created_at)
			VALUES ($1, $2, $3, $4, $5, $6)`, uuid.NewString(), grantID, r.ID, LeaseActive, r.ExpiresAt, now)
		if err != nil {
			return fmt.Errorf("insert lease of pair %d: %w", i, err)
		}
	}
	return nil
}
