package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	"github.com/elevate-dev/elevate/internal/store"
)

// ContentTypeCloudEvents is the media type of a CloudEvent in structured
// mode with the JSON event format (CloudEvents 1.0, JSON format section 4).
const ContentTypeCloudEvents = "application/cloudevents+json; charset=utf-8"

// AuditTypePrefix starts the CloudEvents type of every audit event; the
// audit event name follows, as in dev.elevate.audit.grant.
const AuditTypePrefix = "dev.elevate.audit."

// CloudEvent is an audit event in the CloudEvents 1.0 JSON format.
type CloudEvent struct {
	SpecVersion     string    `json:"specversion"`
	ID              string    `json:"id"` // the audit seq, unique within Source
	Source          string    `json:"source"`
	Type            string    `json:"type"`
	Subject         string    `json:"subject,omitempty"` // the request id
	Time            time.Time `json:"time"`
	DataContentType string    `json:"datacontenttype"`
	Data            AuditData `json:"data"`
}

// AuditData is a CloudEvent's data: the audit event with its place in the
// hash chain, so a receiver can check the chain itself.
type AuditData struct {
	Seq       int64           `json:"seq"`
	Time      time.Time       `json:"time"`
	RequestID string          `json:"request_id,omitempty"`
	Event     string          `json:"event"`
	Actor     string          `json:"actor"`
	Detail    json.RawMessage `json:"detail"`
	PrevHash  string          `json:"prev_hash"`
	Hash      string          `json:"hash"`
}

// NewCloudEvent returns e as a CloudEvent from source.
func NewCloudEvent(source string, e store.AuditEvent) CloudEvent {
	detail := e.Detail
	if len(detail) == 0 {
		detail = json.RawMessage("{}")
	}
	return CloudEvent{
		SpecVersion: "1.0", ID: strconv.FormatInt(e.Seq, 10), Source: source,
		Type: AuditTypePrefix + e.Event, Subject: e.RequestID, Time: e.Time.UTC(),
		DataContentType: "application/json",
		Data: AuditData{Seq: e.Seq, Time: e.Time.UTC(), RequestID: e.RequestID, Event: e.Event,
			Actor: e.Actor, Detail: detail, PrevHash: e.PrevHash, Hash: e.Hash},
	}
}

// auditSeq reads the seq of an audit outbox message.
func auditSeq(payload json.RawMessage) (int64, error) {
	var ev struct {
		Data struct {
			Seq int64 `json:"seq"`
		} `json:"data"`
	}
	if err := json.Unmarshal(payload, &ev); err != nil {
		return 0, fmt.Errorf("decode audit event: %w", err)
	}
	if ev.Data.Seq <= 0 {
		return 0, fmt.Errorf("decode audit event: invalid seq %d", ev.Data.Seq)
	}
	return ev.Data.Seq, nil
}

// auditStore is a store.Store whose AppendAudit also enqueues the event for
// the audit stream.
type auditStore struct {
	store.Store
	source func() string
	log    *slog.Logger
}

// StreamAudit returns st with an AppendAudit that, after each append,
// enqueues the event as a CloudEvent for a Dispatcher with an audit stream.
// source returns the CloudEvents source; it is a function because the
// broker learns its URL after it opens the store.
//
// NOTE: the append and the enqueue are two transactions. A crash between
// them leaves the event in the chain but not in the stream, so the
// receiver finds a gap in prev_hash, which the broker's audit API can fill.
func StreamAudit(st store.Store, source func() string, log *slog.Logger) store.Store {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &auditStore{Store: st, source: source, log: log}
}

func (s *auditStore) AppendAudit(ctx context.Context, e store.AuditEvent) (store.AuditEvent, error) {
	stored, err := s.Store.AppendAudit(ctx, e)
	if err != nil {
		return stored, err
	}
	payload, err := json.Marshal(NewCloudEvent(s.source(), stored))
	if err == nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), enqueueTimeout)
		_, err = s.Store.Enqueue(ctx, KindAudit, payload)
		cancel()
	}
	if err != nil {
		s.log.ErrorContext(ctx, "audit stream: enqueue failed; the event is in the chain but will not be streamed",
			"seq", stored.Seq, "event", stored.Event, "request_id", stored.RequestID, "error", err)
	}
	return stored, nil
}
