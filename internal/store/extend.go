package store

import (
	"context"
	"fmt"
	"time"
)

// ExtendRequest moves the expiry of an active request, and of each of its
// active leases, to expiresAt, in one transaction. expiresAt must be later
// than the current expiry, so an extension never shortens a lease that
// another caller relies on. It returns ErrConflict when the request is not
// active, already expires at or after expiresAt, has expired, or has a
// lease that a sweeper claimed to end.
func (s *sqlStore) ExtendRequest(ctx context.Context, id string, expiresAt time.Time) (Request, error) {
	what := fmt.Sprintf("extend request %q", id)
	expiresAt = utc(expiresAt)
	now := s.now()
	var r Request
	err := s.e.inTx(ctx, func(q querier) error {
		var err error
		r, err = getRequest(ctx, q, id, s.e.lock("FOR UPDATE"))
		if err != nil {
			return err
		}
		if err := checkExtension(r, expiresAt, now); err != nil {
			return err
		}
		// Lock the leases before checking their claims. A sweeper that is
		// claiming one commits first, and one that comes later skips the
		// locked rows and then reads the new expiry.
		leases, err := queryAll(ctx, q, scanLease, `SELECT `+leaseColumns+` FROM leases
			WHERE request_id = $1 AND state = $2 `+s.e.lock("FOR UPDATE"), id, LeaseActive)
		if err != nil {
			return err
		}
		for _, l := range leases {
			if l.ClaimUntil.After(now) {
				return fmt.Errorf("lease %q is being ended by %s; create a new request: %w", l.ID, l.ClaimOwner, ErrConflict)
			}
		}
		err = queryOne(ctx, q, func(row rowScanner) (err error) {
			r, err = scanRequest(row)
			return err
		}, `UPDATE requests SET expires_at = $1, updated_at = $2, version = version + 1
			WHERE id = $3 RETURNING `+requestColumns, expiresAt, now, id)
		if err != nil {
			return err
		}
		_, err = q.exec(ctx, `UPDATE leases SET expires_at = $1 WHERE request_id = $2 AND state = $3`,
			expiresAt, id, LeaseActive)
		return err
	})
	if err != nil {
		return Request{}, notFoundOr(err, what)
	}
	return r, nil
}

// checkExtension returns ErrConflict unless the active request r may move
// its expiry to expiresAt at now. An expired request stays expired even
// before a sweeper ends it, so an extension cannot revive it.
func checkExtension(r Request, expiresAt, now time.Time) error {
	switch {
	case r.State != RequestActive:
		return fmt.Errorf("request is %s, not active: %w", r.State, ErrConflict)
	case !r.ExpiresAt.After(now):
		return fmt.Errorf("request expired at %s; create a new request: %w", r.ExpiresAt.Format(time.RFC3339), ErrConflict)
	case !expiresAt.After(r.ExpiresAt):
		return fmt.Errorf("new expiry %s is not after the current %s: %w",
			expiresAt.Format(time.RFC3339), r.ExpiresAt.Format(time.RFC3339), ErrConflict)
	}
	return nil
}
