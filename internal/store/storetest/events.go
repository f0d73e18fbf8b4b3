package storetest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/store"
)

// drainOutbox claims every undelivered message, marks each delivered and
// returns them, so the next call returns only messages written after it.
func (e *env) drainOutbox() []store.OutboxMessage {
	e.t.Helper()
	msgs, err := e.store.ClaimDue(e.ctx, e.clock.Now().Add(time.Hour), 100, time.Minute)
	if err != nil {
		e.t.Fatalf("claim due: %v", err)
	}
	for _, m := range msgs {
		if err := e.store.MarkDelivered(e.ctx, m.ID); err != nil {
			e.t.Fatalf("mark %s delivered: %v", m.ID, err)
		}
	}
	return msgs
}

// wantEvent checks that msgs is one KindEvent message of event about
// request id in state.
func wantEvent(t *testing.T, what string, msgs []store.OutboxMessage, id, event string, state store.RequestState) {
	t.Helper()
	if len(msgs) != 1 {
		t.Errorf("%s: got %d outbox messages; want 1", what, len(msgs))
		return
	}
	if msgs[0].Kind != store.KindEvent {
		t.Errorf("%s: kind: got %q; want %q", what, msgs[0].Kind, store.KindEvent)
	}
	var p store.EventPayload
	if err := json.Unmarshal(msgs[0].Payload, &p); err != nil {
		t.Fatalf("%s: decode payload %s: %v", what, msgs[0].Payload, err)
	}
	if p.RequestID != id || p.Event != event || p.State != state {
		t.Errorf("%s: payload: got %+v; want request %s, event %s, state %s", what, p, id, event, state)
	}
	if p.Time.IsZero() {
		t.Errorf("%s: payload time is zero; want the transition's time", what)
	}
}

func testTransitionEvents(t *testing.T, e *env) {
	in := sampleRequest("events")
	in.IdempotencyKey = "events-key"
	in.CreateEvent = "request"
	r := e.create(in)
	if r.CreateEvent != "" {
		t.Errorf("created request: CreateEvent = %q; want it cleared", r.CreateEvent)
	}
	wantEvent(t, "create", e.drainOutbox(), r.ID, "request", store.RequestPending)

	// A repeat with the same key finds the request and writes no event.
	if _, created, err := e.store.CreateRequest(e.ctx, in); err != nil || created {
		t.Fatalf("repeat create: got created %v, error %v; want the stored request", created, err)
	}
	if got := e.drainOutbox(); len(got) != 0 {
		t.Errorf("repeat create: got %d outbox messages; want 0", len(got))
	}

	pending := []store.RequestState{store.RequestPending}
	if _, err := e.store.TransitionRequest(e.ctx, r.ID, pending, store.RequestApproved,
		store.RequestUpdate{Event: "approved"}); err != nil {
		t.Fatalf("approve: %v", err)
	}
	wantEvent(t, "approve", e.drainOutbox(), r.ID, "approved", store.RequestApproved)

	// A transition that loses its condition, or that the state machine
	// rejects, writes no event.
	_, err := e.store.TransitionRequest(e.ctx, r.ID, pending, store.RequestDenied, store.RequestUpdate{Event: "denied"})
	wantErr(t, "deny an approved request", err, store.ErrConflict)
	_, err = e.store.TransitionRequest(e.ctx, r.ID, pending, store.RequestRevoked, store.RequestUpdate{Event: "revoked"})
	wantErr(t, "edge outside the machine", err, store.ErrInvalid)
	_, err = e.store.TransitionRequest(e.ctx, "00000000-0000-4000-8000-000000000000", pending, store.RequestApproved,
		store.RequestUpdate{Event: "approved"})
	wantErr(t, "missing request", err, store.ErrNotFound)
	if got := e.drainOutbox(); len(got) != 0 {
		t.Errorf("failed transitions: got %d outbox messages; want 0", len(got))
	}

	// Without Event a transition writes nothing.
	e.moveTo(r.ID, store.RequestActive)
	if got := e.drainOutbox(); len(got) != 0 {
		t.Errorf("transition without event: got %d outbox messages; want 0", len(got))
	}
}

func testConcurrentTransitionEvents(t *testing.T, e *env) {
	const workers = 12
	r := e.create(sampleRequest("event-race"))
	stores := e.stores(workers)
	runParallel(workers, func(i int) {
		_, _ = stores[i].TransitionRequest(e.ctx, r.ID, []store.RequestState{store.RequestPending},
			store.RequestApproved, store.RequestUpdate{Event: "approved"})
	})
	wantEvent(t, "racing approvals", e.drainOutbox(), r.ID, "approved", store.RequestApproved)
}

func testEnqueueOnce(t *testing.T, e *env) {
	const id = "5a0f3c1e-8d2b-5e47-9c16-0b7a4d2e9f13"
	created, err := e.store.EnqueueOnce(e.ctx, id, "notification", json.RawMessage(`{"n":1}`))
	if err != nil || !created {
		t.Fatalf("first enqueue: got created %v, error %v; want created", created, err)
	}
	created, err = e.store.EnqueueOnce(e.ctx, id, "notification", json.RawMessage(`{"n":2}`))
	if err != nil || created {
		t.Fatalf("second enqueue: got created %v, error %v; want not created", created, err)
	}
	msgs := e.drainOutbox()
	if len(msgs) != 1 {
		t.Fatalf("messages: got %d; want 1", len(msgs))
	}
	if msgs[0].ID != id {
		t.Errorf("id: got %q; want %q", msgs[0].ID, id)
	}
	var p struct{ N int }
	if err := json.Unmarshal(msgs[0].Payload, &p); err != nil || p.N != 1 {
		t.Errorf("payload: got %s; want the first one kept", msgs[0].Payload)
	}

	// A delivered message is not enqueued again either.
	created, err = e.store.EnqueueOnce(e.ctx, id, "notification", json.RawMessage(`{"n":3}`))
	if err != nil || created {
		t.Errorf("enqueue after delivery: got created %v, error %v; want not created", created, err)
	}
	if got := e.drainOutbox(); len(got) != 0 {
		t.Errorf("after delivery: got %d due messages; want 0", len(got))
	}

	_, err = e.store.EnqueueOnce(e.ctx, "", "notification", json.RawMessage(`{}`))
	wantErr(t, "missing id", err, store.ErrInvalid)
	_, err = e.store.EnqueueOnce(e.ctx, id, "notification", json.RawMessage(`not json`))
	wantErr(t, "invalid payload", err, store.ErrInvalid)
}
