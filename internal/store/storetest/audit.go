package storetest

import (
	"encoding/json"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/store"
)

func testAuditChain(t *testing.T, e *env) {
	head, err := e.store.AuditHead(e.ctx)
	if err != nil || head != (store.AuditHead{}) {
		t.Fatalf("empty head: got %+v, %v; want zero", head, err)
	}
	first, err := e.store.AppendAudit(e.ctx, store.AuditEvent{RequestID: "r1", Event: "request.created",
		Actor: "repo:org/app", Detail: json.RawMessage(`{ "pairs" : 1 }`)})
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	if first.Seq != 1 || first.PrevHash != "" || string(first.Detail) != `{"pairs":1}` {
		t.Errorf("first event: got seq %d prev %q detail %s; want 1, empty, compacted", first.Seq, first.PrevHash, first.Detail)
	}

	// Appends from several replicas interleave into one chain.
	const workers, each = 4, 5
	stores := e.stores(workers)
	var failed atomic.Bool
	runParallel(workers, func(i int) {
		for j := range each {
			_, err := stores[i].AppendAudit(e.ctx, store.AuditEvent{RequestID: label("r", i), Event: "grant.created",
				Actor: "broker", Detail: json.RawMessage(`{"n":` + strconv.Itoa(j) + `}`)})
			if err != nil {
				failed.Store(true)
				t.Errorf("worker %d: %v", i, err)
			}
		}
	})
	if failed.Load() {
		return
	}
	verified, err := store.VerifyStoredAudit(e.ctx, e.store)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if verified.Seq != 1+workers*each {
		t.Errorf("verified head seq: got %d; want %d", verified.Seq, 1+workers*each)
	}

	events, err := e.store.AuditRange(e.ctx, 2, 3)
	if err != nil {
		t.Fatalf("range: %v", err)
	}
	if len(events) != 3 || events[0].Seq != 2 || events[0].PrevHash != first.Hash {
		t.Fatalf("range from 2: got %d events starting %+v; want 3 linked to the first", len(events), events)
	}
	tampered := append([]store.AuditEvent(nil), events...)
	tampered[1].Actor = "someone else"
	if _, err := store.VerifyAuditChain(tampered, first.Hash); err == nil {
		t.Errorf("verify tampered actor: got nil; want an error")
	}
	tampered = append([]store.AuditEvent(nil), events...)
	tampered[2].Time = tampered[2].Time.Add(time.Microsecond)
	if _, err := store.VerifyAuditChain(tampered, first.Hash); err == nil {
		t.Errorf("verify tampered time: got nil; want an error")
	}
	if _, err := store.VerifyAuditChain(events[1:], first.Hash); err == nil {
		t.Errorf("verify with a gap: got nil; want an error")
	}

	_, err = e.store.AppendAudit(e.ctx, store.AuditEvent{Event: "x", Detail: json.RawMessage(`{`)})
	wantErr(t, "invalid detail", err, store.ErrInvalid)
	_, err = e.store.AppendAudit(e.ctx, store.AuditEvent{})
	wantErr(t, "missing event", err, store.ErrInvalid)
}

func testOutbox(t *testing.T, e *env) {
	m, err := e.store.Enqueue(e.ctx, "approval_needed", json.RawMessage(`{"request_id":"r1"}`))
	if err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	now := e.clock.Now()
	got, err := e.store.ClaimDue(e.ctx, now, 10, time.Minute)
	if err != nil || len(got) != 1 || got[0].ID != m.ID || got[0].Attempts != 1 {
		t.Fatalf("claim due: got %+v, %v; want the message at attempt 1", got, err)
	}
	var payload map[string]string
	if err := json.Unmarshal(got[0].Payload, &payload); err != nil || payload["request_id"] != "r1" {
		t.Errorf("payload: got %s, %v; want request_id r1", got[0].Payload, err)
	}
	if again, err := e.store.ClaimDue(e.ctx, now, 10, time.Minute); err != nil || len(again) != 0 {
		t.Errorf("claim while reserved: got %d, %v; want none", len(again), err)
	}

	if err := e.store.MarkFailed(e.ctx, m.ID, "webhook: 502", now.Add(5*time.Minute)); err != nil {
		t.Fatalf("mark failed: %v", err)
	}
	if early, err := e.store.ClaimDue(e.ctx, now.Add(4*time.Minute), 10, time.Minute); err != nil || len(early) != 0 {
		t.Errorf("claim before retry time: got %d, %v; want none", len(early), err)
	}
	got, err = e.store.ClaimDue(e.ctx, now.Add(5*time.Minute), 10, time.Minute)
	if err != nil || len(got) != 1 || got[0].Attempts != 2 || got[0].LastError != "webhook: 502" {
		t.Fatalf("claim at retry time: got %+v, %v; want attempt 2 with the last error", got, err)
	}
	if err := e.store.MarkDelivered(e.ctx, m.ID); err != nil {
		t.Fatalf("mark delivered: %v", err)
	}
	wantErr(t, "deliver twice", e.store.MarkDelivered(e.ctx, m.ID), store.ErrConflict)
	wantErr(t, "fail after delivery", e.store.MarkFailed(e.ctx, m.ID, "late", now), store.ErrConflict)
	wantErr(t, "deliver missing", e.store.MarkDelivered(e.ctx, "no-such-message"), store.ErrNotFound)
	if after, err := e.store.ClaimDue(e.ctx, now.Add(time.Hour), 10, time.Minute); err != nil || len(after) != 0 {
		t.Errorf("claim after delivery: got %d, %v; want none", len(after), err)
	}
	_, err = e.store.Enqueue(e.ctx, "approval_needed", json.RawMessage(`not json`))
	wantErr(t, "enqueue invalid payload", err, store.ErrInvalid)
}

func testReopen(t *testing.T, e *env) {
	before, err := e.store.Migrations(e.ctx)
	if err != nil {
		t.Fatalf("migrations: %v", err)
	}
	if len(before) == 0 || before[0].Version != 1 {
		t.Fatalf("migrations after open: got %+v; want version 1 first", before)
	}
	r := e.create(sampleRequest("reopen"))
	if err := e.store.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	e.clock.Advance(time.Hour)
	reopened := e.open()
	after, err := reopened.Migrations(e.ctx)
	if err != nil {
		t.Fatalf("migrations after reopen: %v", err)
	}
	if len(after) != len(before) {
		t.Fatalf("migrations after reopen: got %d; want %d", len(after), len(before))
	}
	for i := range after {
		if after[i] != before[i] {
			t.Errorf("migration %d after reopen: got %+v; want %+v unchanged", i, after[i], before[i])
		}
	}
	if _, err := reopened.GetRequest(e.ctx, r.ID); err != nil {
		t.Errorf("request after reopen: %v", err)
	}
	if err := reopened.Ping(e.ctx); err != nil {
		t.Errorf("ping: %v", err)
	}
}
