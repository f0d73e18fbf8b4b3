package storetest

import (
	"errors"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/store"
)

func testOverlappingLeases(t *testing.T, e *env) {
	a, b := e.approved("lease a"), e.approved("lease b")

	first := e.mustAcquire(a.ID, scopeA)
	if !first.Create || first.Grant.State != store.GrantIntent {
		t.Fatalf("first acquire: got create=%v state %s; want create=true intent", first.Create, first.Grant.State)
	}
	// The same pair with other case is the same grant.
	second := e.mustAcquire(b.ID, strings.ToUpper(scopeA))
	if second.Create {
		t.Errorf("second acquire: got create=true; want false")
	}
	if second.Grant.ID != first.Grant.ID {
		t.Errorf("second acquire grant: got %q; want shared %q", second.Grant.ID, first.Grant.ID)
	}
	retry := e.mustAcquire(a.ID, scopeA)
	if !retry.Create || retry.Lease.ID != first.Lease.ID {
		t.Errorf("retry by creator: got create=%v lease %q; want create=true lease %q", retry.Create, retry.Lease.ID, first.Lease.ID)
	}

	assignmentID := scopeA + "/providers/Microsoft.Authorization/roleAssignments/" + first.Grant.AssignmentName
	active, err := e.store.MarkGrant(e.ctx, first.Grant.ID, []store.GrantState{store.GrantIntent}, store.GrantActive,
		store.GrantUpdate{AssignmentID: &assignmentID})
	if err != nil {
		t.Fatalf("mark active: %v", err)
	}
	if active.AssignmentID != assignmentID || active.GrantedAt.IsZero() {
		t.Errorf("active grant: got assignment %q granted %s; want %q and now", active.AssignmentID, active.GrantedAt, assignmentID)
	}

	relA, err := e.store.ReleaseLease(e.ctx, first.Lease.ID)
	if err != nil {
		t.Fatalf("release a: %v", err)
	}
	if relA.Revoke || relA.Grant.State != store.GrantActive {
		t.Errorf("release a: got revoke=%v grant %s; want false, active", relA.Revoke, relA.Grant.State)
	}
	relB, err := e.store.ReleaseLease(e.ctx, second.Lease.ID)
	if err != nil {
		t.Fatalf("release b: %v", err)
	}
	if !relB.Revoke || relB.Grant.State != store.GrantRevoking {
		t.Errorf("release b: got revoke=%v grant %s; want true, revoking", relB.Revoke, relB.Grant.State)
	}
	if relB.Lease.State != store.LeaseReleased || relB.Lease.ReleasedAt.IsZero() {
		t.Errorf("released lease: got %s at %s; want released now", relB.Lease.State, relB.Lease.ReleasedAt)
	}
	_, err = e.store.ReleaseLease(e.ctx, second.Lease.ID)
	wantErr(t, "release twice", err, store.ErrConflict)
	_, err = e.store.ReleaseLease(e.ctx, "no-such-lease")
	wantErr(t, "release missing lease", err, store.ErrNotFound)

	c := e.approved("lease c")
	_, err = e.acquire(e.store, c.ID, scopeA)
	wantErr(t, "acquire while revoking", err, store.ErrConflict)
	_, err = e.acquire(e.store, a.ID, scopeA)
	wantErr(t, "acquire after own release", err, store.ErrConflict)

	if _, err := e.store.MarkGrant(e.ctx, first.Grant.ID, []store.GrantState{store.GrantRevoking},
		store.GrantRevoked, store.GrantUpdate{VerifiedAt: e.clock.Now()}); err != nil {
		t.Fatalf("mark revoked: %v", err)
	}
	fresh := e.mustAcquire(c.ID, scopeA)
	if !fresh.Create || fresh.Grant.ID == first.Grant.ID {
		t.Errorf("acquire after revoke: got create=%v grant %q; want a new grant", fresh.Create, fresh.Grant.ID)
	}

	leases, err := e.store.ListLeases(e.ctx, store.LeaseFilter{GrantID: first.Grant.ID})
	if err != nil {
		t.Fatalf("list leases: %v", err)
	}
	if len(leases) != 2 {
		t.Errorf("leases of first grant: got %d; want 2", len(leases))
	}
	_, err = e.store.ListLeases(e.ctx, store.LeaseFilter{})
	wantErr(t, "list leases without filter", err, store.ErrInvalid)
}

func testAcquireRequiresApproval(t *testing.T, e *env) {
	pending := e.create(sampleRequest("pending"))
	_, err := e.acquire(e.store, pending.ID, scopeA)
	wantErr(t, "acquire for pending request", err, store.ErrConflict)
	_, err = e.acquire(e.store, "00000000-0000-0000-0000-000000000000", scopeA)
	wantErr(t, "acquire for missing request", err, store.ErrNotFound)

	r := e.approved("expiry")
	_, err = e.store.AcquireGrant(e.ctx, store.AcquireParams{RequestID: r.ID, PrincipalID: principalID,
		RoleID: readerRole, Scope: scopeA, AssignmentName: "n", LeaseExpiresAt: e.clock.Now()})
	wantErr(t, "lease expiring now", err, store.ErrInvalid)
	_, err = e.store.AcquireGrant(e.ctx, store.AcquireParams{RequestID: r.ID, PrincipalID: principalID,
		RoleID: readerRole, Scope: scopeA, LeaseExpiresAt: e.clock.Now().Add(time.Hour)})
	wantErr(t, "missing assignment name", err, store.ErrInvalid)
}

func testPreExistingGrant(t *testing.T, e *env) {
	r := e.approved("adopted")
	acq := e.mustAcquire(r.ID, scopeA)
	yes := true
	if _, err := e.store.MarkGrant(e.ctx, acq.Grant.ID, []store.GrantState{store.GrantIntent}, store.GrantActive,
		store.GrantUpdate{PreExisting: &yes}); err != nil {
		t.Fatalf("mark adopted grant active: %v", err)
	}
	rel, err := e.store.ReleaseLease(e.ctx, acq.Lease.ID)
	if err != nil {
		t.Fatalf("release: %v", err)
	}
	if rel.Revoke {
		t.Errorf("release of adopted grant: got revoke=true; want false")
	}
	if rel.Grant.State != store.GrantRevoked || !rel.Grant.PreExisting {
		t.Errorf("adopted grant after release: got %s pre_existing=%v; want revoked true", rel.Grant.State, rel.Grant.PreExisting)
	}
}

func testMarkGrant(t *testing.T, e *env) {
	r := e.approved("mark")
	acq := e.mustAcquire(r.ID, scopeA)
	id := acq.Grant.ID

	_, err := e.store.MarkGrant(e.ctx, id, []store.GrantState{store.GrantActive}, store.GrantGrantFailed, store.GrantUpdate{})
	wantErr(t, "active to grant_failed", err, store.ErrInvalid)
	_, err = e.store.MarkGrant(e.ctx, id, []store.GrantState{store.GrantActive}, store.GrantRevoking, store.GrantUpdate{})
	wantErr(t, "intent grant is not active", err, store.ErrConflict)
	_, err = e.store.MarkGrant(e.ctx, "no-such-grant", []store.GrantState{store.GrantIntent}, store.GrantActive, store.GrantUpdate{})
	wantErr(t, "missing grant", err, store.ErrNotFound)

	steps := []struct {
		from, to store.GrantState
		update   store.GrantUpdate
	}{
		{store.GrantIntent, store.GrantActive, store.GrantUpdate{}},
		{store.GrantActive, store.GrantRevoking, store.GrantUpdate{}},
		{store.GrantRevoking, store.GrantRevokeFailed, store.GrantUpdate{LastError: ptr("429 too many requests"),
			NextAttemptAt: e.clock.Now().Add(time.Minute)}},
		{store.GrantRevokeFailed, store.GrantRevoking, store.GrantUpdate{}},
		{store.GrantRevoking, store.GrantRevoked, store.GrantUpdate{VerifiedAt: e.clock.Now()}},
	}
	var g store.Grant
	for _, step := range steps {
		g, err = e.store.MarkGrant(e.ctx, id, []store.GrantState{step.from}, step.to, step.update)
		if err != nil {
			t.Fatalf("%s to %s: %v", step.from, step.to, err)
		}
		if g.State != step.to {
			t.Errorf("%s to %s: got state %s", step.from, step.to, g.State)
		}
	}
	if g.LastError != "429 too many requests" || g.RevokedAt.IsZero() || g.VerifiedAt.IsZero() {
		t.Errorf("revoked grant: got error %q revoked %s verified %s; want error kept and both times", g.LastError, g.RevokedAt, g.VerifiedAt)
	}
	for _, to := range store.GrantStates {
		_, err := e.store.MarkGrant(e.ctx, id, []store.GrantState{store.GrantRevoked}, to, store.GrantUpdate{})
		wantErr(t, "revoked to "+string(to), err, store.ErrInvalid)
	}
}

func testConcurrentAcquire(t *testing.T, e *env) {
	const workers = 8
	requests := make([]store.Request, workers)
	for i := range requests {
		requests[i] = e.approved(label("acquire", i))
	}
	stores := e.stores(workers)
	results := make([]store.Acquisition, workers)
	runParallel(workers, func(i int) {
		var err error
		results[i], err = e.acquire(stores[i], requests[i].ID, scopeA)
		if err != nil {
			t.Errorf("worker %d: %v", i, err)
		}
	})
	creators := 0
	for i, r := range results {
		if r.Create {
			creators++
		}
		if r.Grant.ID != results[0].Grant.ID {
			t.Errorf("worker %d grant: got %q; want shared %q", i, r.Grant.ID, results[0].Grant.ID)
		}
	}
	if creators != 1 {
		t.Errorf("acquisitions with Create set: got %d; want 1", creators)
	}
	live, err := e.store.NonTerminalGrants(e.ctx)
	if err != nil {
		t.Fatalf("list grants: %v", err)
	}
	if len(live) != 1 {
		t.Errorf("live grants: got %d; want 1", len(live))
	}
}

func testConcurrentRelease(t *testing.T, e *env) {
	const workers = 8
	requests := make([]store.Request, workers)
	leases := make([]store.Lease, workers)
	for i := range requests {
		requests[i] = e.approved(label("release", i))
		leases[i] = e.mustAcquire(requests[i].ID, scopeA).Lease
	}
	// Each lease is released twice at once: once by its request and once
	// by a sweeper. One release per lease succeeds, and exactly one of all
	// returns Revoke set.
	stores := e.stores(2 * workers)
	var revokes, released, conflicts atomic.Int32
	runParallel(2*workers, func(i int) {
		rel, err := stores[i].ReleaseLease(e.ctx, leases[i%workers].ID)
		switch {
		case err == nil:
			released.Add(1)
			if rel.Revoke {
				revokes.Add(1)
			}
		case errors.Is(err, store.ErrConflict):
			conflicts.Add(1)
		default:
			t.Errorf("worker %d: %v", i, err)
		}
	})
	if released.Load() != workers || conflicts.Load() != workers || revokes.Load() != 1 {
		t.Errorf("released, conflicts, revokes: got %d, %d, %d; want %d, %d, 1",
			released.Load(), conflicts.Load(), revokes.Load(), workers, workers)
	}
}

func testClaimExpiredOnce(t *testing.T, e *env) {
	const leases, workers = 20, 4
	want := map[string]bool{}
	for i := range leases {
		r := e.approved(label("sweep", i))
		acq := e.mustAcquire(r.ID, scopeA+"/providers/Microsoft.Storage/storageAccounts/"+label("sa", i))
		want[acq.Lease.ID] = true
	}
	e.clock.Advance(2 * time.Hour)
	now := e.clock.Now()

	stores := e.stores(workers)
	var mu sync.Mutex
	claims := map[string][]string{}
	runParallel(workers, func(i int) {
		owner := label("replica", i)
		for {
			got, err := stores[i].ClaimExpired(e.ctx, now, 3, owner, time.Minute)
			if err != nil {
				t.Errorf("%s: %v", owner, err)
				return
			}
			if len(got) == 0 {
				return
			}
			mu.Lock()
			for _, l := range got {
				claims[l.ID] = append(claims[l.ID], owner)
				if l.ClaimOwner != owner {
					t.Errorf("lease %s claim owner: got %q; want %q", l.ID, l.ClaimOwner, owner)
				}
			}
			mu.Unlock()
		}
	})
	for id, owners := range claims {
		if len(owners) != 1 {
			t.Errorf("lease %s claimed by %v; want one owner", id, owners)
		}
		if !want[id] {
			t.Errorf("lease %s claimed but not expired", id)
		}
	}
	if len(claims) != leases {
		t.Errorf("leases claimed: got %d; want %d", len(claims), leases)
	}
}

func testClaimExpiredWindow(t *testing.T, e *env) {
	r := e.approved("window")
	acq := e.mustAcquire(r.ID, scopeA)
	expiry := acq.Lease.ExpiresAt

	got, err := e.store.ClaimExpired(e.ctx, expiry.Add(-time.Microsecond), 10, "a", time.Minute)
	if err != nil || len(got) != 0 {
		t.Fatalf("claim before expiry: got %d leases, %v; want none", len(got), err)
	}
	got, err = e.store.ClaimExpired(e.ctx, expiry, 10, "a", time.Minute)
	if err != nil || len(got) != 1 {
		t.Fatalf("claim at expiry: got %d leases, %v; want 1", len(got), err)
	}
	if want := expiry.Add(time.Minute); !got[0].ClaimUntil.Equal(want) {
		t.Errorf("claim until: got %s; want %s", got[0].ClaimUntil, want)
	}
	got, err = e.store.ClaimExpired(e.ctx, expiry.Add(59*time.Second), 10, "b", time.Minute)
	if err != nil || len(got) != 0 {
		t.Errorf("claim while reserved: got %d leases, %v; want none", len(got), err)
	}
	// Replica a died: after its reservation the lease goes to b.
	got, err = e.store.ClaimExpired(e.ctx, expiry.Add(time.Minute), 10, "b", time.Minute)
	if err != nil || len(got) != 1 || got[0].ClaimOwner != "b" {
		t.Errorf("claim after reservation: got %+v, %v; want the lease for b", got, err)
	}
	if _, err := e.store.ReleaseLease(e.ctx, acq.Lease.ID); err != nil {
		t.Fatalf("release: %v", err)
	}
	got, err = e.store.ClaimExpired(e.ctx, expiry.Add(time.Hour), 10, "b", time.Minute)
	if err != nil || len(got) != 0 {
		t.Errorf("claim of released lease: got %d leases, %v; want none", len(got), err)
	}
	_, err = e.store.ClaimExpired(e.ctx, expiry, 0, "b", time.Minute)
	wantErr(t, "zero limit", err, store.ErrInvalid)
	_, err = e.store.ClaimExpired(e.ctx, expiry, 1, "", time.Minute)
	wantErr(t, "missing owner", err, store.ErrInvalid)
}

func testClaimRetries(t *testing.T, e *env) {
	r := e.approved("retries")
	acq := e.mustAcquire(r.ID, scopeA)
	if _, err := e.store.MarkGrant(e.ctx, acq.Grant.ID, []store.GrantState{store.GrantIntent}, store.GrantActive, store.GrantUpdate{}); err != nil {
		t.Fatalf("mark active: %v", err)
	}
	rel, err := e.store.ReleaseLease(e.ctx, acq.Lease.ID)
	if err != nil {
		t.Fatalf("release: %v", err)
	}
	if rel.Grant.Attempts != 1 {
		t.Errorf("attempts after release: got %d; want 1", rel.Grant.Attempts)
	}

	// The releaser holds the grant for RevokeClaim.
	got, err := e.store.ClaimRetries(e.ctx, e.clock.Now(), 10, "b", time.Minute)
	if err != nil || len(got) != 0 {
		t.Fatalf("claim during the releaser's reservation: got %d, %v; want none", len(got), err)
	}
	later := e.clock.Now().Add(store.DefaultRevokeClaim)
	got, err = e.store.ClaimRetries(e.ctx, later, 10, "b", time.Minute)
	if err != nil || len(got) != 1 {
		t.Fatalf("claim after the reservation: got %d, %v; want 1", len(got), err)
	}
	if got[0].Attempts != 2 || got[0].ClaimOwner != "b" {
		t.Errorf("claimed grant: got attempts %d owner %q; want 2, b", got[0].Attempts, got[0].ClaimOwner)
	}
	again, err := e.store.ClaimRetries(e.ctx, later, 10, "c", time.Minute)
	if err != nil || len(again) != 0 {
		t.Errorf("second claim: got %d, %v; want none", len(again), err)
	}

	failure := "delete role assignment: 503"
	if _, err := e.store.MarkGrant(e.ctx, acq.Grant.ID, []store.GrantState{store.GrantRevoking}, store.GrantRevokeFailed,
		store.GrantUpdate{LastError: &failure, NextAttemptAt: later.Add(10 * time.Minute)}); err != nil {
		t.Fatalf("mark revoke_failed: %v", err)
	}
	got, err = e.store.ClaimRetries(e.ctx, later.Add(9*time.Minute), 10, "c", time.Minute)
	if err != nil || len(got) != 0 {
		t.Errorf("claim before backoff ends: got %d, %v; want none", len(got), err)
	}
	got, err = e.store.ClaimRetries(e.ctx, later.Add(10*time.Minute), 10, "c", time.Minute)
	if err != nil || len(got) != 1 || got[0].State != store.GrantRevokeFailed {
		t.Errorf("claim after backoff: got %+v, %v; want the revoke_failed grant", got, err)
	}
}

func testGrantListings(t *testing.T, e *env) {
	r := e.approved("listings")
	intent := e.mustAcquire(r.ID, scopeA)
	active := e.mustAcquire(r.ID, scopeB)
	if _, err := e.store.MarkGrant(e.ctx, active.Grant.ID, []store.GrantState{store.GrantIntent}, store.GrantActive, store.GrantUpdate{}); err != nil {
		t.Fatalf("mark active: %v", err)
	}
	failedReq := e.approved("failed")
	failed := e.mustAcquire(failedReq.ID, scopeA+"/providers/Microsoft.Web/sites/app")
	if _, err := e.store.MarkGrant(e.ctx, failed.Grant.ID, []store.GrantState{store.GrantIntent}, store.GrantGrantFailed, store.GrantUpdate{}); err != nil {
		t.Fatalf("mark grant_failed: %v", err)
	}

	ids := func(gs []store.Grant) []string {
		var out []string
		for _, g := range gs {
			out = append(out, g.ID)
		}
		sort.Strings(out)
		return out
	}
	live, err := e.store.NonTerminalGrants(e.ctx)
	if err != nil {
		t.Fatalf("non-terminal grants: %v", err)
	}
	want := []string{intent.Grant.ID, active.Grant.ID}
	sort.Strings(want)
	if got := ids(live); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("non-terminal grants: got %v; want %v", got, want)
	}
	act, err := e.store.ActiveGrants(e.ctx)
	if err != nil {
		t.Fatalf("active grants: %v", err)
	}
	if got := ids(act); len(got) != 1 || got[0] != active.Grant.ID {
		t.Errorf("active grants: got %v; want [%s]", got, active.Grant.ID)
	}
	g, err := e.store.GetGrant(e.ctx, intent.Grant.ID)
	if err != nil {
		t.Fatalf("get grant: %v", err)
	}
	if g.RequestID != r.ID || g.AssignmentName != "name-"+r.ID || g.ScopeKey != strings.ToLower(scopeA) {
		t.Errorf("stored grant: got request %q name %q key %q", g.RequestID, g.AssignmentName, g.ScopeKey)
	}
}

func ptr[T any](v T) *T { return &v }

func testReleaseIntentGrant(t *testing.T, e *env) {
	r := e.approved("intent release")
	acq := e.mustAcquire(r.ID, scopeA)
	rel, err := e.store.ReleaseLease(e.ctx, acq.Lease.ID)
	if err != nil {
		t.Fatalf("release: %v", err)
	}
	if !rel.Revoke || rel.Grant.State != store.GrantRevoking {
		t.Errorf("release of intent grant: got revoke=%v state %s; want true, revoking", rel.Revoke, rel.Grant.State)
	}
	_, err = e.store.MarkGrant(e.ctx, acq.Grant.ID, []store.GrantState{store.GrantIntent}, store.GrantActive, store.GrantUpdate{})
	wantErr(t, "creator marks revoking grant active", err, store.ErrConflict)
}
