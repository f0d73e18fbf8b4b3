package broker

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/emulator"
	"github.com/elevate-dev/elevate/internal/store"
)

func TestReviewRefusesRequesterAliases(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	rerun := pipeline
	rerun.Claims = map[string]string{"repository": "contoso/payments", "environment": "production",
		"actor": "alice", "triggering_actor": "approver@contoso.example"}
	r, err := h.svc.Create(ctx, rerun, readerRequest("alias"))
	if err != nil {
		t.Fatal(err)
	}
	// The approver re-ran the workflow: triggering_actor names them.
	if _, err := h.svc.Review(ctx, approver, r.ID, store.VerdictApprove, r.Hash, ""); !errors.Is(err, ErrForbidden) {
		t.Errorf("review by the triggering actor: error = %v; want ErrForbidden", err)
	}

	self := readerRequest("self-principal")
	self.PrincipalID = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c03"
	self.PrincipalType = "User"
	r2, err := h.svc.Create(ctx, pipeline, self)
	if err != nil {
		t.Fatal(err)
	}
	// The reviewer would receive the role: their token's oid is the principal.
	reviewer := approver
	reviewer.Claims = map[string]string{"oid": self.PrincipalID}
	if _, err := h.svc.Review(ctx, reviewer, r2.ID, store.VerdictApprove, r2.Hash, ""); !errors.Is(err, ErrForbidden) {
		t.Errorf("review by the principal: error = %v; want ErrForbidden", err)
	}
}

func TestStaleApprovalLapsesOnReconcile(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	r, err := h.svc.Create(ctx, pipeline, readerRequest("stale"))
	if err != nil {
		t.Fatal(err)
	}
	// A crash right after the approval leaves the request approved but
	// never activated.
	if _, err := h.store.TransitionRequest(ctx, r.ID, []store.RequestState{store.RequestPending}, store.RequestApproved, store.RequestUpdate{}); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(30 * time.Minute)
	h.svc.Reconcile(ctx)
	got, err := h.store.GetRequest(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != store.RequestGrantFailed {
		t.Errorf("state after a restart 30 minutes later = %s; want grant_failed", got.State)
	}
	if n := h.liveAssignments(); n != 0 {
		t.Errorf("assignments = %d; want 0: a lapsed approval must grant nothing", n)
	}
}

func TestDisconnectedCallerStillActivated(t *testing.T) {
	h := newHarness(t)
	if err := h.srv.SetFaults(emulator.FaultConfig{Rules: []emulator.FaultRule{
		{Method: "PUT", Path: "roleAssignments", Latency: 300 * time.Millisecond},
	}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	r, err := h.svc.Create(ctx, pipeline, vaultRequest("gone"))
	if err != nil && r.ID == "" {
		// Create may return early for the caller; the request must still
		// end up active in the store.
		page, lerr := h.store.ListRequests(context.Background(), store.RequestFilter{})
		if lerr != nil || len(page.Requests) != 1 {
			t.Fatalf("Create: %v; requests stored: %v", err, lerr)
		}
		r = page.Requests[0]
	}
	got, err := h.store.GetRequest(context.Background(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != store.RequestActive {
		t.Errorf("state after the caller left = %s; want active", got.State)
	}
	if n := h.liveAssignments(); n != 1 {
		t.Errorf("assignments = %d; want 1", n)
	}
}
