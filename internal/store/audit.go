package store

import (
	"context"
	"fmt"
)

func (s *sqlStore) AppendAudit(ctx context.Context, e AuditEvent) (AuditEvent, error) {
	if e.Event == "" {
		return AuditEvent{}, fmt.Errorf("append audit event: missing event name: %w", ErrInvalid)
	}
	detail, err := compactDetail(e.Detail)
	if err != nil {
		return AuditEvent{}, fmt.Errorf("append audit event %q: %w", e.Event, err)
	}
	e.Detail = detail

	err = s.e.inTx(ctx, func(q querier) error {
		// Taking the next seq is an UPDATE of the one head row, so
		// concurrent appends wait for each other and each links to the
		// hash its predecessor committed.
		err := queryOne(ctx, q, func(row rowScanner) error {
			return row.Scan(&e.Seq, &e.PrevHash)
		}, `UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash`)
		if err != nil {
			return fmt.Errorf("advance audit head: %w", err)
		}
		e.Time = s.now()
		if e.Hash, err = HashAuditEvent(e); err != nil {
			return err
		}
		_, err = q.exec(ctx, `INSERT INTO audit_events (seq, time, request_id, event, actor, detail,
			prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			e.Seq, e.Time, e.RequestID, e.Event, e.Actor, string(e.Detail), e.PrevHash, e.Hash)
		if err != nil {
			return fmt.Errorf("insert audit event %d: %w", e.Seq, err)
		}
		_, err = q.exec(ctx, `UPDATE audit_head SET hash = $1 WHERE id = 1`, e.Hash)
		return err
	})
	if err != nil {
		return AuditEvent{}, fmt.Errorf("append audit event %q: %w", e.Event, err)
	}
	return e, nil
}

func (s *sqlStore) AuditRange(ctx context.Context, fromSeq int64, limit int) ([]AuditEvent, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("read audit events: invalid limit %d; give a positive number: %w", limit, ErrInvalid)
	}
	events, err := queryAll(ctx, s.e, func(row rowScanner) (AuditEvent, error) {
		var e AuditEvent
		var detail string
		err := row.Scan(&e.Seq, &e.Time, &e.RequestID, &e.Event, &e.Actor, &detail, &e.PrevHash, &e.Hash)
		e.Detail = []byte(detail)
		return e, err
	}, `SELECT seq, time, request_id, event, actor, detail, prev_hash, hash FROM audit_events
		WHERE seq >= $1 ORDER BY seq LIMIT $2`, fromSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("read audit events from %d: %w", fromSeq, err)
	}
	return events, nil
}

func (s *sqlStore) AuditHead(ctx context.Context) (AuditHead, error) {
	var h AuditHead
	err := queryOne(ctx, s.e, func(row rowScanner) error {
		return row.Scan(&h.Seq, &h.Hash)
	}, `SELECT seq, hash FROM audit_head WHERE id = 1`)
	if err != nil {
		return AuditHead{}, fmt.Errorf("read audit head: %w", err)
	}
	return h, nil
}
