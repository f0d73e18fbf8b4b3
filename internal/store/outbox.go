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
	if err := checkMessage(kind, payload); err != nil {
		return OutboxMessage{}, fmt.Errorf("enqueue notification: %w", err)
	}
	now := s.now()
	m := OutboxMessage{ID: uuid.NewString(), Kind: kind, Payload: payload, NextAttemptAt: now, CreatedAt: now}
	err := s.e.inTx(ctx, func(q querier) error {
		_, err := insertMessage(ctx, q, m, false)
		return err
	})
	if err != nil {
		return OutboxMessage{}, fmt.Errorf("enqueue %s notification: %w", kind, err)
	}
	return m, nil
}

func (s *sqlStore) EnqueueOnce(ctx context.Context, id, kind string, payload json.RawMessage) (bool, error) {
	what := fmt.Sprintf("enqueue %s notification %q", kind, id)
	if id == "" {
		return false, fmt.Errorf("enqueue %s notification: missing id: %w", kind, ErrInvalid)
	}
	if err := checkMessage(kind, payload); err != nil {
		return false, fmt.Errorf("%s: %w", what, err)
	}
	now := s.now()
	m := OutboxMessage{ID: id, Kind: kind, Payload: payload, NextAttemptAt: now, CreatedAt: now}
	var n int64
	err := s.e.inTx(ctx, func(q querier) error {
		var err error
		n, err = insertMessage(ctx, q, m, true)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("%s: %w", what, err)
	}
	return n == 1, nil
}

// checkMessage validates the kind and payload of a new outbox message.
func checkMessage(kind string, payload json.RawMessage) error {
	if kind == "" {
		return fmt.Errorf("missing kind: %w", ErrInvalid)
	}
	if !json.Valid(payload) {
		return fmt.Errorf("%s payload is not valid JSON: %w", kind, ErrInvalid)
	}
	return nil
}

// insertMessage inserts m and returns the rows inserted. With
// ignoreDuplicate, an existing row with m's id is left as it is and the
// result is 0. ON CONFLICT (id) DO NOTHING is valid SQL on both backends.
func insertMessage(ctx context.Context, q querier, m OutboxMessage, ignoreDuplicate bool) (int64, error) {
	query := `INSERT INTO outbox (id, kind, payload, next_attempt_at, created_at)
		VALUES ($1, $2, $3, $4, $5)`
	if ignoreDuplicate {
		query += ` ON CONFLICT (id) DO NOTHING`
	}
	return q.exec(ctx, query, m.ID, m.Kind, string(m.Payload), m.NextAttemptAt, m.CreatedAt)
}

// insertEvent writes the KindEvent message of event about request id,
// which has just entered state, inside the caller's transaction.
func insertEvent(ctx context.Context, q querier, id, event string, state RequestState, now time.Time) error {
	payload, err := json.Marshal(EventPayload{RequestID: id, Event: event, State: state, Time: now})
	if err != nil {
		return fmt.Errorf("encode %s event: %w", event, err)
	}
	m := OutboxMessage{ID: uuid.NewString(), Kind: KindEvent, Payload: payload, NextAttemptAt: now, CreatedAt: now}
	if _, err := insertMessage(ctx, q, m, false); err != nil {
		return fmt.Errorf("enqueue %s event: %w", event, err)
	}
	return nil
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
