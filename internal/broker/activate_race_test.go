package broker

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/azure"
	"github.com/elevate-dev/elevate/internal/store"
)

// gatedARM holds the first role assignment PUT until a second one arrives,
// and the second until release is closed, so two activations of one
// request overlap the way two replicas' can.
type gatedARM struct {
	*mapARM
	mu      sync.Mutex
	calls   int
	second  chan struct{}
	release chan struct{}
	// failFirst makes the first PUT fail once the second has arrived.
	failFirst bool
}

func (g *gatedARM) CreateAssignment(ctx context.Context, a azure.Assignment) (azure.Assignment, error) {
	g.mu.Lock()
	g.calls++
	n := g.calls
	g.mu.Unlock()
	switch n {
	case 1:
		<-g.second
		if g.failFirst {
			return azure.Assignment{}, errors.New("injected: ARM refused the PUT")
		}
	case 2:
		close(g.second)
		<-g.release
	}
	return g.mapARM.CreateAssignment(ctx, a)
}

// createApproved creates a Contributor request with idempotency key key
// and moves it to approved in the store, without activating it.
func createApproved(t *testing.T, svc *Service, st store.Store, key string) store.Request {
	t.Helper()
	ctx := context.Background()
	r, err := svc.Create(ctx, pipeline, contributorFor(0, key))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	approved, err := st.TransitionRequest(ctx, r.ID, []store.RequestState{store.RequestPending}, store.RequestApproved, store.RequestUpdate{})
	if err != nil {
		t.Fatalf("approve: %v", err)
	}
	return approved
}

// activateOverlapping activates r on each service at once through arm's
// gate, and releases the second PUT only after one activation returned.
func activateOverlapping(arm *gatedARM, r store.Request, services ...*Service) ([]store.Request, []error) {
	var wg sync.WaitGroup
	first := make(chan struct{}, len(services))
	results := make([]store.Request, len(services))
	errs := make([]error, len(services))
	for i, svc := range services {
		wg.Go(func() {
			results[i], errs[i] = svc.activate(context.Background(), r)
			first <- struct{}{}
		})
	}
	<-first // one activation finished while the other waits in its PUT
	close(arm.release)
	wg.Wait()
	return results, errs
}

// TestConcurrentActivationsAgree activates one approved request on two
// replicas at once, as a restarted replica's reconcile does while the
// approving replica is still granting. The slower one must not end the
// leases the faster one made active. At expiry the sweeper must revoke
// everything.
func TestConcurrentActivationsAgree(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: time.Date(2025, 3, 4, 9, 0, 0, 0, time.UTC)}
	arm := &gatedARM{mapARM: newMapARM(), second: make(chan struct{}), release: make(chan struct{})}
	st := openSQLite(t, clock.Now)
	a := serviceOn(t, st, arm, clock.Now, "replica-a")
	b := serviceOn(t, st, arm, clock.Now, "replica-b")

	r := createApproved(t, a, st, "race")
	results, errs := activateOverlapping(arm, r, a, b)
	for i := range results {
		// Both callers see the request active: a client whose retry
		// reached the slower replica must not get an error.
		if errs[i] != nil || results[i].State != store.RequestActive {
			t.Errorf("activation %d: got %s, %v; want active, no error", i, results[i].State, errs[i])
		}
	}

	got, err := st.GetRequest(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	leases, err := st.ListLeases(ctx, store.LeaseFilter{RequestID: r.ID})
	if err != nil {
		t.Fatal(err)
	}
	if got.State != store.RequestActive {
		t.Fatalf("state after two activations: got %s (%s); want active", got.State, got.Error)
	}
	for _, l := range leases {
		if l.State != store.LeaseActive {
			t.Errorf("lease %s of the active request: got %s; want active", l.ID, l.State)
		}
	}
	if n := len(arm.assignments); n != 1 {
		t.Errorf("assignments in ARM while active: got %d; want 1", n)
	}

	clock.Advance(11 * time.Minute)
	a.SweepOnce(ctx)
	got, err = st.GetRequest(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != store.RequestRevoked {
		t.Errorf("state after expiry and a sweep: got %s; want revoked", got.State)
	}
	if n := len(arm.assignments); n != 0 {
		t.Errorf("assignments in ARM after the sweep: got %d; want 0", n)
	}
}

// TestActivationFailureRemovesLateGrant overlaps two activations of one
// request where the first PUT fails: that activation fails the request and
// releases its lease, whose revoke finds nothing yet. The second PUT lands
// after it. The slower activation must remove what it made, because
// nothing in the store would end it.
func TestActivationFailureRemovesLateGrant(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: time.Date(2025, 3, 4, 9, 0, 0, 0, time.UTC)}
	arm := &gatedARM{mapARM: newMapARM(), second: make(chan struct{}), release: make(chan struct{}), failFirst: true}
	st := openSQLite(t, clock.Now)
	a := serviceOn(t, st, arm, clock.Now, "replica-a")
	b := serviceOn(t, st, arm, clock.Now, "replica-b")
	r := createApproved(t, a, st, "late")
	activateOverlapping(arm, r, a, b)

	got, err := st.GetRequest(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != store.RequestGrantFailed {
		t.Errorf("state: got %s; want grant_failed", got.State)
	}
	if n := len(arm.assignments); n != 0 {
		t.Errorf("assignments left in ARM: got %d; want 0 (creates %v, deletes %v)", n, arm.creates, arm.deletes)
	}
}

// TestSweeperResumesStalledApproval leaves a request approved but never
// granted, as when the approving replica dies between the two steps. A
// sweep leaves it alone while a live activation could still be running,
// then grants it, with the window counted from the approval.
func TestSweeperResumesStalledApproval(t *testing.T) {
	ctx := context.Background()
	start := time.Date(2025, 3, 4, 9, 0, 0, 0, time.UTC)
	clock := &fakeClock{now: start}
	arm := newMapARM()
	st := openSQLite(t, clock.Now)
	svc := serviceOn(t, st, arm, clock.Now, "replica-a")
	r, err := svc.Create(ctx, pipeline, contributorFor(0, "stalled"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := st.TransitionRequest(ctx, r.ID, []store.RequestState{store.RequestPending}, store.RequestApproved, store.RequestUpdate{}); err != nil {
		t.Fatalf("approve: %v", err)
	}

	clock.Advance(time.Minute)
	svc.SweepOnce(ctx)
	if got, _ := st.GetRequest(ctx, r.ID); got.State != store.RequestApproved {
		t.Fatalf("state a minute after approval: got %s; want approved (a live activation may still run)", got.State)
	}
	clock.Advance(activateTimeout)
	svc.SweepOnce(ctx)
	got, err := st.GetRequest(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != store.RequestActive {
		t.Fatalf("state after the activation timeout: got %s (%s); want active", got.State, got.Error)
	}
	if want := start.Add(10 * time.Minute); !got.ExpiresAt.Equal(want) {
		t.Errorf("expires at: got %s; want %s, ten minutes from the approval", got.ExpiresAt, want)
	}
	if n := len(arm.assignments); n != 1 {
		t.Errorf("assignments in ARM: got %d; want 1", n)
	}
}

// dropOnce fails the first transition of a request to one state, as a
// replica that dies or loses its database right before it would.
type dropOnce struct {
	store.Store
	to      store.RequestState
	dropped bool
}

func (d *dropOnce) TransitionRequest(ctx context.Context, id string, from []store.RequestState, to store.RequestState, u store.RequestUpdate) (store.Request, error) {
	if to == d.to && !d.dropped {
		d.dropped = true
		return store.Request{}, errors.New("injected: connection lost")
	}
	return d.Store.TransitionRequest(ctx, id, from, to, u)
}

// TestUndecidedRequestIsFinished stores auto-approved and pre-flight
// denied requests whose creator failed before acting on the outcome. The
// pipeline's retry with the same idempotency key finishes one; a sweep
// finishes the other once its creator can no longer be acting on it.
func TestUndecidedRequestIsFinished(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: time.Date(2025, 3, 4, 9, 0, 0, 0, time.UTC)}
	arm := newMapARM()
	st := &dropOnce{Store: openSQLite(t, clock.Now), to: store.RequestApproved}
	svc := serviceOn(t, st, arm, clock.Now, "replica-a")

	if _, err := svc.Create(ctx, pipeline, readerFor(0, "retry")); err == nil {
		t.Fatal("Create with the approval dropped: got no error")
	}
	r, err := svc.Create(ctx, pipeline, readerFor(0, "retry"))
	if err != nil || r.State != store.RequestActive {
		t.Fatalf("retried Create: got %s, %v; want active", r.State, err)
	}

	// No rule matches Reader on the whole subscription, so the policy
	// denies it.
	st.to, st.dropped = store.RequestDenied, false
	in := readerFor(2, "denied")
	in.Scopes = []string{rg[:strings.Index(rg, "/resourceGroups/")]}
	if _, err := svc.Create(ctx, pipeline, in); err == nil {
		r, _ := st.GetRequest(ctx, requestID(pipeline.Subject, "denied"))
		t.Fatalf("Create with the denial dropped: got no error (%s, %+v)", r.State, r.Decision)
	}
	if r, err := svc.Create(ctx, pipeline, in); err != nil || r.State != store.RequestDenied {
		t.Fatalf("retried denied Create: got %s, %v; want denied", r.State, err)
	}

	st.to, st.dropped = store.RequestApproved, false
	if _, err := svc.Create(ctx, pipeline, readerFor(1, "swept")); err == nil {
		t.Fatal("second Create with the approval dropped: got no error")
	}
	svc.SweepOnce(ctx)
	stuck, err := st.GetRequest(ctx, requestID(pipeline.Subject, "swept"))
	if err != nil {
		t.Fatal(err)
	}
	if stuck.State != store.RequestPending {
		t.Fatalf("state right after the failed Create: got %s; want pending (Create may still act)", stuck.State)
	}
	clock.Advance(activateTimeout)
	svc.SweepOnce(ctx)
	got, err := st.GetRequest(ctx, stuck.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != store.RequestActive {
		t.Errorf("state after a sweep: got %s (%s); want active", got.State, got.Error)
	}
}

// TestSweeperFinishesStrandedRequest ends an active request's lease and
// revokes its grant the way the sweeper does, then stops, as a replica
// killed right before finishRequest would. A later sweep must move the
// request to revoked.
func TestSweeperFinishesStrandedRequest(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: time.Date(2025, 3, 4, 9, 0, 0, 0, time.UTC)}
	arm := newMapARM()
	st := openSQLite(t, clock.Now)
	svc := serviceOn(t, st, arm, clock.Now, "replica-a")
	r, err := svc.Create(ctx, pipeline, readerFor(0, "stranded"))
	if err != nil || r.State != store.RequestActive {
		t.Fatalf("Create: got %s, %v; want active", r.State, err)
	}
	leases, err := st.ListLeases(ctx, store.LeaseFilter{RequestID: r.ID})
	if err != nil || len(leases) != 1 {
		t.Fatalf("leases: got %d, %v; want 1", len(leases), err)
	}

	clock.Advance(11 * time.Minute)
	svc.release(ctx, leases[0]) // ends the lease and revokes the grant, no finishRequest
	if got, _ := st.GetRequest(ctx, r.ID); got.State != store.RequestActive {
		t.Fatalf("state after the release alone: got %s; want active (stranded)", got.State)
	}
	if n := len(arm.assignments); n != 0 {
		t.Fatalf("assignments after the release: got %d; want 0", n)
	}
	svc.SweepOnce(ctx)
	got, err := st.GetRequest(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != store.RequestRevoked {
		t.Errorf("state after a sweep: got %s; want revoked", got.State)
	}
}
