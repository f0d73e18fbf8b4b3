package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// chainedFields is the JSON object an audit event's hash covers. The field
// order is fixed by the struct, so the encoding is stable.
type chainedFields struct {
	Seq       int64           `json:"seq"`
	Time      string          `json:"time"`
	RequestID string          `json:"request_id"`
	Event     string          `json:"event"`
	Actor     string          `json:"actor"`
	Detail    json.RawMessage `json:"detail"`
	Prev      string          `json:"prev"`
}

// HashAuditEvent returns the SHA-256 hex digest of e's fields and PrevHash,
// as AppendAudit computes Hash. The time is encoded as RFC 3339 in UTC with
// microseconds, the precision the store keeps.
func HashAuditEvent(e AuditEvent) (string, error) {
	body, err := json.Marshal(chainedFields{
		Seq:       e.Seq,
		Time:      e.Time.UTC().Format("2006-01-02T15:04:05.000000Z"),
		RequestID: e.RequestID,
		Event:     e.Event,
		Actor:     e.Actor,
		Detail:    e.Detail,
		Prev:      e.PrevHash,
	})
	if err != nil {
		return "", fmt.Errorf("encode audit event %d for hashing: %w", e.Seq, err)
	}
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:]), nil
}

// compactDetail returns detail compacted, or {} when it is empty, so the
// stored text and the hashed text are the same bytes.
func compactDetail(detail json.RawMessage) (json.RawMessage, error) {
	if len(bytes.TrimSpace(detail)) == 0 {
		return json.RawMessage("{}"), nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, detail); err != nil {
		return nil, fmt.Errorf("audit detail is not valid JSON: %w: %w", err, ErrInvalid)
	}
	return buf.Bytes(), nil
}

// VerifyAuditChain checks that events are consecutive, that each links to
// the hash before it (prev for the first) and that each hash matches the
// event's fields. It returns the hash of the last event.
func VerifyAuditChain(events []AuditEvent, prev string) (string, error) {
	for i, e := range events {
		if i > 0 && e.Seq != events[i-1].Seq+1 {
			return "", fmt.Errorf("audit event %d follows %d; want %d", e.Seq, events[i-1].Seq, events[i-1].Seq+1)
		}
		if e.PrevHash != prev {
			return "", fmt.Errorf("audit event %d links to %q; want %q", e.Seq, e.PrevHash, prev)
		}
		sum, err := HashAuditEvent(e)
		if err != nil {
			return "", err
		}
		if sum != e.Hash {
			return "", fmt.Errorf("audit event %d has hash %q; its fields hash to %q", e.Seq, e.Hash, sum)
		}
		prev = e.Hash
	}
	return prev, nil
}

// VerifyStoredAudit reads the whole audit table of s in pages, verifies the
// chain from the first event and checks that it ends at AuditHead. It
// returns the verified head.
func VerifyStoredAudit(ctx context.Context, s Store) (AuditHead, error) {
	const page = 500
	head, err := s.AuditHead(ctx)
	if err != nil {
		return AuditHead{}, err
	}
	verified := AuditHead{}
	for verified.Seq < head.Seq {
		events, err := s.AuditRange(ctx, verified.Seq+1, page)
		if err != nil {
			return AuditHead{}, err
		}
		if len(events) == 0 {
			return AuditHead{}, fmt.Errorf("audit table ends at seq %d but the head is at seq %d", verified.Seq, head.Seq)
		}
		if events[0].Seq != verified.Seq+1 {
			return AuditHead{}, fmt.Errorf("audit event %d is missing; next stored is %d", verified.Seq+1, events[0].Seq)
		}
		last, err := VerifyAuditChain(events, verified.Hash)
		if err != nil {
			return AuditHead{}, err
		}
		verified = AuditHead{Seq: events[len(events)-1].Seq, Hash: last}
	}
	if verified != head {
		return AuditHead{}, fmt.Errorf("audit chain ends at seq %d hash %q; head is seq %d hash %q",
			verified.Seq, verified.Hash, head.Seq, head.Hash)
	}
	return verified, nil
}
