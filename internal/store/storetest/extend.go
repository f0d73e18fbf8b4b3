package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/store"
)

func testExtendRequest(t *testing.T, e *env) {
	r := e.approved("extend")
	e.mustAcquire(r.ID, scopeA)
	r, err := e.store.TransitionRequest(e.ctx, r.ID, []store.RequestState{store.RequestApproved}, store.RequestActive,
		store.RequestUpdate{GrantedAt: e.clock.Now(), ExpiresAt: e.clock.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	later := r.ExpiresAt.Add(30 * time.Minute)
	got, err := e.store.ExtendRequest(e.ctx, r.ID, later)
	if err != nil {
		t.Fatalf("ExtendRequest: %v", err)
	}
	if !got.ExpiresAt.Equal(later) {
		t.Errorf("request expires at %s; want %s", got.ExpiresAt, later)
	}
	leases, err := e.store.ListLeases(e.ctx, store.LeaseFilter{RequestID: r.ID})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leases {
		if !l.ExpiresAt.Equal(later) {
			t.Errorf("lease %s expires at %s; want %s", l.ID, l.ExpiresAt, later)
		}
	}
	// The old expiry no longer ends the lease.
	e.clock.Advance(80 * time.Minute)
	claimed, err := e.store.ClaimExpired(e.ctx, e.clock.Now(), 10, "a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(claimed) != 0 {
		t.Errorf("claimed %d leases before the extended expiry; want 0", len(claimed))
	}

	if _, err := e.store.ExtendRequest(e.ctx, r.ID, later.Add(-time.Minute)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("shortening error = %v; want ErrConflict", err)
	}
	pending := e.create(sampleRequest("pending"))
	if _, err := e.store.ExtendRequest(e.ctx, pending.ID, later); !errors.Is(err, store.ErrConflict) {
		t.Errorf("extending a pending request error = %v; want ErrConflict", err)
	}
	if _, err := e.store.ExtendRequest(e.ctx, "00000000-0000-0000-0000-00000000dead", later); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("extending an unknown request error = %v; want ErrNotFound", err)
	}
}

func testExtendAfterExpiry(t *testing.T, e *env) {
	// activeFor makes an active request whose one lease ends at the
	// request's expiry, an hour from now.
	activeFor := func(label, scope string) store.Request {
		r := e.approved(label)
		e.mustAcquire(r.ID, scope)
		r, err := e.store.TransitionRequest(e.ctx, r.ID, []store.RequestState{store.RequestApproved}, store.RequestActive,
			store.RequestUpdate{GrantedAt: e.clock.Now(), ExpiresAt: e.clock.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	leaseOf := func(id string) store.Lease {
		leases, err := e.store.ListLeases(e.ctx, store.LeaseFilter{RequestID: id})
		if err != nil || len(leases) != 1 {
			t.Fatalf("leases of %s: got %d, %v; want one", id, len(leases), err)
		}
		return leases[0]
	}

	// A sweeper whose clock runs ahead claimed this lease before the
	// store's clock reached the expiry.
	claimed := activeFor("extend-claimed", scopeB)
	if _, err := e.store.ClaimExpired(e.ctx, e.clock.Now().Add(2*time.Hour), 10, "replica-b", time.Minute); err != nil {
		t.Fatal(err)
	}
	_, err := e.store.ExtendRequest(e.ctx, claimed.ID, claimed.ExpiresAt.Add(30*time.Minute))
	wantErr(t, "extending a request whose lease is claimed", err, store.ErrConflict)
	if l := leaseOf(claimed.ID); !l.ExpiresAt.Equal(claimed.ExpiresAt) {
		t.Errorf("claimed lease expires at %s; want it unchanged at %s", l.ExpiresAt, claimed.ExpiresAt)
	}

	// Past the expiry, before any sweep.
	expired := activeFor("extend-expired", scopeA)
	e.clock.Advance(61 * time.Minute)
	_, err = e.store.ExtendRequest(e.ctx, expired.ID, expired.ExpiresAt.Add(30*time.Minute))
	wantErr(t, "extending an expired request", err, store.ErrConflict)
	got, err := e.store.GetRequest(e.ctx, expired.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.ExpiresAt.Equal(expired.ExpiresAt) {
		t.Errorf("expired request expires at %s; want it unchanged at %s", got.ExpiresAt, expired.ExpiresAt)
	}
	swept, err := e.store.ClaimExpired(e.ctx, e.clock.Now(), 10, "replica-a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(swept) != 1 || swept[0].RequestID != expired.ID {
		t.Errorf("claimed after the expiry: %+v; want the expired request's lease", swept)
	}
}
