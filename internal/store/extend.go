package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ExtendRequest moves the expiry of an active request, and of each of its
// active leases, to expiresAt, in one transaction. expiresAt must be later
// than the current expiry, so an extension never shortens a lease that
// another caller relies on. It returns ErrConflict when the request is not
// active or already expires at or after expiresAt.
func (s *sqlStore) ExtendRequest(ctx context.Context, id string, expiresAt time.Time) (Request, error) {
	what := fmt.Sprintf("extend request %q", id)
	expiresAt = utc(expiresAt)
	now := s.now()
	var r Request
	err := s.e.inTx(ctx, func(q querier) error {
		err := queryOne(ctx, q, func(row rowScanner) (err error) {
			r, err = scanRequest(row)
			return err
		}, `UPDATE requests SET expires_at = $1, updated_at = $2, version = version + 1
			WHERE id = $3 AND state = $4 AND expires_at < $1
			RETURNING `+requestColumns, expiresAt, now, id, string(RequestActive))
		if err != nil {
			return err
		}
		_, err = q.exec(ctx, `UPDATE leases SET expires_at = $1 WHERE request_id = $2 AND state = $3`,
			expiresAt, id, LeaseActive)
		return err
	})
	if errors.Is(err, errNoRows) {
		return Request{}, s.explainMiss(ctx, what, id, []RequestState{RequestActive})
	}
	if err != nil {
		return Request{}, fmt.Errorf("%s: %w", what, err)
	}
	return r, nil
}
