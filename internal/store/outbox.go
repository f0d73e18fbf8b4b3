package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/google/uuid"
)

const outboxColumns = `id, kind, payload, attempts, next_attempt_at, delivered_at, last_error, created_at`

func scanOutbox(row rowScanner) (OutboxMessage, error) {
	var m OutboxMessage
	var payload string
	err := row.Scan(&m.ID, &m.Kind, &payload, &m.Attempts, &m.NextAttemptAt, &m.DeliveredAt,
		&m.LastError, &m.CreatedAt)
	m.Payload = json.RawMessage(payload)
	return m, err
}

func (s *sqlStore) Enqueue(ctx context.Context, kind string, payload json.RawMessage) (OutboxMessage, error) {
	if kind == "" {
		return OutboxMessage{}, fmt.Errorf("enqueue notification: missing kind: %w", ErrInvalid)
	}
	if !json.Valid(payload) {
		return OutboxMessage{}, fmt.Errorf("enqueue %s notification: payload is not valid JSON: %w", kind, ErrInvalid)
	}
	now := s.now()
	m := OutboxMessage{ID: uuid.NewString(), Kind: kind, Payload: payload, NextAttemptAt: now, CreatedAt: now}
	err := s.e.inTx(ctx, func(q querier) error {
		_, err := q.exec(ctx, `INSERT INTO outbox (id, kind, payload, next_attempt_at, created_at)
			VALUES ($1, $2, $3, $4, $5)`, m.ID, m.Kind, string(m.Payload), m.NextAttemptAt, m.CreatedAt)
		return err
	})
	if err != nil {
		return OutboxMessage{}, fmt.Errorf("enqueue %s notification: %w", kind, err)
	}
	return m, nil
}

func (s *sqlStore) ClaimDue(ctx context.Context, now time.Time, limit int, claimFor time.Duration) ([]OutboxMessage, error) {
	if err := checkClaim(limit, "", claimFor, false); err != nil {
		return nil, fmt.Errorf("claim due notifications: %w", err)
	}
	now = utc(now)
	query := `UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1
		WHERE id IN (SELECT id FROM outbox WHERE delivered_at IS NULL AND next_attempt_at <= $2
			ORDER BY next_attempt_at, id LIMIT $3 ` + s.e.lock("FOR UPDATE SKIP LOCKED") + `)
		RETURNING ` + outboxColumns
	var msgs []OutboxMessage
	err := s.e.inTx(ctx, func(q querier) error {
		var err error
		msgs, err = queryAll(ctx, q, scanOutbox, query, now.Add(claimFor), now, limit)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("claim due notifications: %w", err)
	}
	sort.Slice(msgs, func(i, j int) bool {
		if !msgs[i].CreatedAt.Equal(msgs[j].CreatedAt) {
			return msgs[i].CreatedAt.Before(msgs[j].CreatedAt)
		}
		return msgs[i].ID < msgs[j].ID
	})
	return msgs, nil
}

func (s *sqlStore) MarkDelivered(ctx context.Context, id string) error {
	return s.updateUndelivered(ctx, fmt.Sprintf("mark notification %q delivered", id),
		`UPDATE outbox SET delivered_at = $1 WHERE id = $2 AND delivered_at IS NULL`, s.now(), id)
}

func (s *sqlStore) MarkFailed(ctx context.Context, id string, cause string, next time.Time) error {
	return s.updateUndelivered(ctx, fmt.Sprintf("mark notification %q failed", id),
		`UPDATE outbox SET last_error = $1, next_attempt_at = $2 WHERE id = $3 AND delivered_at IS NULL`,
		cause, utc(next), id)
}

// updateUndelivered runs an update of one undelivered message and explains
// a miss: ErrNotFound, or ErrConflict when it was delivered already.
func (s *sqlStore) updateUndelivered(ctx context.Context, what, query string, args ...any) error {
	var n int64
	err := s.e.inTx(ctx, func(q querier) error {
		var err error
		n, err = q.exec(ctx, query, args...)
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if n == 1 {
		return nil
	}
	id := args[len(args)-1]
	var delivered time.Time
	err = queryOne(ctx, s.e, func(row rowScanner) error { return row.Scan(&delivered) },
		`SELECT delivered_at FROM outbox WHERE id = $1`, id)
	if errors.Is(err, errNoRows) {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%s: delivered already at %s: %w", what, delivered.Format(time.RFC3339), ErrConflict)
}
