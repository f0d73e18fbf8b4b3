package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/store"
)

// testSeedActive checks that requests stored by store.Seeder look like
// requests that went through Create and activation: active, each pair
// with an active grant and lease, which AcquireGrant shares, the sweeper
// claims at expiry and ReleaseLease revokes.
func testSeedActive(t *testing.T, e *env) {
	seeder, ok := e.store.(store.Seeder)
	if !ok {
		t.Fatalf("store %T does not implement store.Seeder", e.store)
	}
	expires := e.clock.Now().Add(time.Hour)
	var seeds []store.ActiveSeed
	for i := range 3 {
		r := sampleRequest(fmt.Sprintf("seed-%d", i))
		r.Principal.ID = fmt.Sprintf("11111111-2222-3333-4444-%012d", i)
		r.ExpiresAt = expires
		seeds = append(seeds, store.ActiveSeed{Request: r, AssignmentNames: []string{fmt.Sprintf("name-%d", i)}})
	}
	stored, err := seeder.SeedActive(e.ctx, seeds)
	if err != nil {
		t.Fatalf("seed: %v", err)
	}
	if len(stored) != len(seeds) {
		t.Fatalf("seeded requests: got %d; want %d", len(stored), len(seeds))
	}
	for _, r := range stored {
		got, err := e.store.GetRequest(e.ctx, r.ID)
		if err != nil {
			t.Fatalf("get seeded request: %v", err)
		}
		if got.State != store.RequestActive {
			t.Errorf("seeded request %s: got %s; want active", r.ID, got.State)
		}
		if !got.ExpiresAt.Equal(utcMicro(expires)) {
			t.Errorf("seeded request %s expiry: got %s; want %s", r.ID, got.ExpiresAt, utcMicro(expires))
		}
		leases, err := e.store.ListLeases(e.ctx, store.LeaseFilter{RequestID: r.ID})
		if err != nil || len(leases) != 1 || leases[0].State != store.LeaseActive {
			t.Fatalf("leases of seeded request %s: got %+v, %v; want one active", r.ID, leases, err)
		}
	}
	active, err := e.store.ActiveGrants(e.ctx)
	if err != nil {
		t.Fatalf("active grants: %v", err)
	}
	if len(active) != len(seeds) {
		t.Errorf("active grants: got %d; want %d", len(active), len(seeds))
	}

	// A new request for a seeded pair shares the seeded grant.
	next := sampleRequest("after-seed")
	next.Principal.ID = seeds[0].Request.Principal.ID
	r := e.create(next)
	e.moveTo(r.ID, store.RequestApproved)
	acq, err := e.store.AcquireGrant(e.ctx, store.AcquireParams{RequestID: r.ID, PrincipalID: seeds[0].Request.Principal.ID,
		RoleID: readerRole, Scope: scopeA, AssignmentName: "name-new", LeaseExpiresAt: expires})
	if err != nil {
		t.Fatalf("acquire seeded pair: %v", err)
	}
	if acq.Create {
		t.Errorf("acquire seeded pair: Create = true; want the seeded grant shared")
	}
	if acq.Grant.AssignmentName != "name-0" {
		t.Errorf("acquire seeded pair: got assignment %q; want name-0", acq.Grant.AssignmentName)
	}

	// At expiry the sweeper claims the seeded leases, and releasing the
	// last lease of a grant revokes it.
	e.clock.Advance(2 * time.Hour)
	claimed, err := e.store.ClaimExpired(e.ctx, e.clock.Now(), 10, "sweeper", time.Minute)
	if err != nil {
		t.Fatalf("claim expired: %v", err)
	}
	if len(claimed) != len(seeds)+1 {
		t.Errorf("claimed leases: got %d; want %d", len(claimed), len(seeds)+1)
	}
	for _, l := range claimed {
		if l.RequestID != stored[1].ID {
			continue
		}
		rel, err := e.store.ReleaseLease(e.ctx, l.ID)
		if err != nil {
			t.Fatalf("release seeded lease: %v", err)
		}
		if !rel.Revoke {
			t.Errorf("release of the only lease of a seeded grant: Revoke = false; want true")
		}
	}

	_, err = seeder.SeedActive(e.ctx, []store.ActiveSeed{{Request: seeds[2].Request}})
	wantErr(t, "seed without assignment names", err, store.ErrInvalid)
	past := seeds[2]
	past.Request.ExpiresAt = e.clock.Now().Add(-time.Minute)
	_, err = seeder.SeedActive(e.ctx, []store.ActiveSeed{past})
	wantErr(t, "seed with past expiry", err, store.ErrInvalid)
}

// utcMicro returns t as the store returns it: UTC, whole microseconds.
func utcMicro(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }
