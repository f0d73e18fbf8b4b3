package broker

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/store"
)

// deleteGatedARM holds the first role assignment DELETE until release is
// closed, and closes entered when it arrives.
type deleteGatedARM struct {
	*mapARM
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func (g *deleteGatedARM) DeleteAssignment(ctx context.Context, scope, name string) (bool, error) {
	first := false
	g.once.Do(func() { first = true })
	if first {
		close(g.entered)
		<-g.release
	}
	return g.mapARM.DeleteAssignment(ctx, scope, name)
}

// pausedStore holds the first transition of a request to revoking until
// proceed is closed. It closes reached when that transition arrives and
// done when it has returned.
type pausedStore struct {
	store.Store
	once    sync.Once
	reached chan struct{}
	proceed chan struct{}
	done    chan struct{}
}

func (p *pausedStore) TransitionRequest(ctx context.Context, id string, from []store.RequestState, to store.RequestState, u store.RequestUpdate) (store.Request, error) {
	first := false
	if to == store.RequestRevoking {
		p.once.Do(func() { first = true })
	}
	if !first {
		return p.Store.TransitionRequest(ctx, id, from, to, u)
	}
	close(p.reached)
	<-p.proceed
	defer close(p.done)
	return p.Store.TransitionRequest(ctx, id, from, to, u)
}

func newPausedStore(st store.Store) *pausedStore {
	return &pausedStore{Store: st, reached: make(chan struct{}), proceed: make(chan struct{}), done: make(chan struct{})}
}

// TestRevokeRacingCancelFinishes ends one active request from two callers
// at once. The revoker removes the assignment and reads the request as
// active. The canceller saw the grant still revoking and moves the request
// on first, so the revoker's own transition conflicts. The request must
// still end revoked, by the callers or by a later sweep.
func TestRevokeRacingCancelFinishes(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: time.Date(2025, 3, 4, 9, 0, 0, 0, time.UTC)}
	arm := &deleteGatedARM{mapARM: newMapARM(), entered: make(chan struct{}), release: make(chan struct{})}
	st := openSQLite(t, clock.Now)
	revokerStore, cancellerStore := newPausedStore(st), newPausedStore(st)
	revoker := serviceOn(t, revokerStore, arm, clock.Now, "replica-a")
	canceller := serviceOn(t, cancellerStore, arm, clock.Now, "replica-b")

	r, err := revoker.Create(ctx, pipeline, readerFor(0, "revoke-race"))
	if err != nil || r.State != store.RequestActive {
		t.Fatalf("Create: got %s, %v; want active", r.State, err)
	}

	// The revoker releases the lease and waits inside the DELETE.
	var wg sync.WaitGroup
	var revokeErr, cancelErr error
	wg.Go(func() { _, revokeErr = revoker.Revoke(ctx, admin, r.ID) })
	<-arm.entered

	// The canceller finds the grant revoking and stops before its
	// transition to revoking.
	wg.Go(func() { _, cancelErr = canceller.Cancel(ctx, pipeline, r.ID) })
	<-cancellerStore.reached

	// The revoker's DELETE finishes, and it stops before its transition.
	close(arm.release)
	<-revokerStore.reached

	// The canceller moves the request on first, then the revoker.
	close(cancellerStore.proceed)
	<-cancellerStore.done
	close(revokerStore.proceed)
	wg.Wait()
	if cancelErr != nil {
		t.Errorf("cancel error = %v; want none", cancelErr)
	}

	// Whatever the callers returned, sweeps must finish the request.
	for range 3 {
		clock.Advance(time.Minute)
		revoker.SweepOnce(ctx)
	}
	got, err := st.GetRequest(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != store.RequestRevoked {
		t.Errorf("state after both calls and three sweeps = %s (%s); want revoked", got.State, got.Error)
	}
	if n := arm.live(); n != 0 {
		t.Errorf("assignments in ARM = %d; want 0", n)
	}
	// The revoker removed the assignment itself, so its caller must not
	// get a conflict.
	if revokeErr != nil {
		t.Errorf("revoke error = %v; want none", revokeErr)
	}
	if _, err := store.VerifyStoredAudit(ctx, st); err != nil {
		t.Errorf("audit chain: %v", err)
	}
}
