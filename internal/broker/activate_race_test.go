package broker

import (
	"context"
	"errors"
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

// TestConcurrentActivationsAgree activates one approved request on two
// replicas at once, as a restarted replica's reconcile does while the
// approving replica is still granting. The slower one must neither end the
// leases the faster one made active nor leave the request active without a
// lease; at expiry the sweeper must revoke everything.
func TestConcurrentActivationsAgree(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: time.Date(2025, 3, 4, 9, 0, 0, 0, time.UTC)}
	arm := &gatedARM{mapARM: newMapARM(), second: make(chan struct{}), release: make(chan struct{})}
	st := openSQLite(t, clock.Now)
	a := serviceOn(t, st, arm, clock.Now, "replica-a")
	b := serviceOn(t, st, arm, clock.Now, "replica-b")

	r, err := a.Create(ctx, pipeline, contributorFor(0, "race"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	approved, err := st.TransitionRequest(ctx, r.ID, []store.RequestState{store.RequestPending}, store.RequestApproved, store.RequestUpdate{})
	if err != nil {
		t.Fatalf("approve: %v", err)
	}

	var wg sync.WaitGroup
	first := make(chan struct{}, 2)
	for _, svc := range []*Service{a, b} {
		wg.Go(func() {
			_, _ = svc.activate(ctx, approved)
			first <- struct{}{}
		})
	}
	<-first // one activation finished while the other waits in its PUT
	close(arm.release)
	wg.Wait()

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
// after it; the slower activation must remove what it made, or the role
// would stay in Azure with nothing in the store to end it.
func TestActivationFailureRemovesLateGrant(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: time.Date(2025, 3, 4, 9, 0, 0, 0, time.UTC)}
	arm := &gatedARM{mapARM: newMapARM(), second: make(chan struct{}), release: make(chan struct{}), failFirst: true}
	st := openSQLite(t, clock.Now)
	a := serviceOn(t, st, arm, clock.Now, "replica-a")
	b := serviceOn(t, st, arm, clock.Now, "replica-b")
	r, err := a.Create(ctx, pipeline, contributorFor(0, "late"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	approved, err := st.TransitionRequest(ctx, r.ID, []store.RequestState{store.RequestPending}, store.RequestApproved, store.RequestUpdate{})
	if err != nil {
		t.Fatalf("approve: %v", err)
	}
	var wg sync.WaitGroup
	first := make(chan struct{}, 2)
	for _, svc := range []*Service{a, b} {
		wg.Go(func() {
			_, _ = svc.activate(ctx, approved)
			first <- struct{}{}
		})
	}
	<-first
	close(arm.release)
	wg.Wait()

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
