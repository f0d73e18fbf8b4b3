// Package storetest is the conformance suite every store.Store backend
// passes. A backend's tests call Run with a Backend that makes empty
// databases and opens stores on them.
package storetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/store"
)

// Backend describes a store implementation under test.
type Backend struct {
	// NewDatabase returns the address (a file path or a DSN) of a new,
	// empty database and removes it when t ends.
	NewDatabase func(t testing.TB) string
	// Open opens a store on the database at addr.
	Open func(ctx context.Context, addr string, opts store.Options) (store.Store, error)
	// Replicas is true when several stores on one database model separate
	// broker replicas, as with PostgreSQL. The concurrency tests then give
	// each worker its own store.
	Replicas bool
}

// Clock is a fake clock for store.Options.Now, safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// Epoch is the start time of every test clock. Its nanoseconds check that
// the store truncates times to microseconds.
var Epoch = time.Date(2030, 1, 2, 3, 4, 5, 123456789, time.UTC)

// NewClock returns a clock at Epoch.
func NewClock() *Clock { return &Clock{now: Epoch} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// env is one test's store, clock and database.
type env struct {
	t       *testing.T
	ctx     context.Context
	backend Backend
	addr    string
	clock   *Clock
	store   store.Store
}

func newEnv(t *testing.T, b Backend) *env {
	t.Helper()
	e := &env{t: t, ctx: context.Background(), backend: b, addr: b.NewDatabase(t), clock: NewClock()}
	e.store = e.open()
	return e
}

// open opens another store on the env's database with the env's clock.
func (e *env) open() store.Store {
	e.t.Helper()
	s, err := e.backend.Open(e.ctx, e.addr, store.Options{Now: e.clock.Now})
	if err != nil {
		e.t.Fatalf("open store: %v", err)
	}
	e.t.Cleanup(func() { s.Close() })
	return s
}

// Run runs the conformance suite against b.
func Run(t *testing.T, b Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, e *env)
	}{
		{"request transitions and conflicts", testRequestTransitions},
		{"request edges outside machine rejected", testInvalidEdges},
		{"request update fields applied", testRequestUpdate},
		{"create request validates input", testCreateValidation},
		{"create request idempotent on key", testIdempotentCreate},
		{"concurrent idempotent create", testConcurrentCreate},
		{"list requests filters and pages", testListRequests},
		{"approvals unique and bound", testApprovals},
		{"overlapping leases share grant", testOverlappingLeases},
		{"acquire requires approved request", testAcquireRequiresApproval},
		{"pre-existing grant never revoked", testPreExistingGrant},
		{"release of intent grant revokes", testReleaseIntentGrant},
		{"mark grant transitions and conflicts", testMarkGrant},
		{"extend moves request and leases", testExtendRequest},
		{"extend after expiry rejected", testExtendAfterExpiry},
		{"concurrent transition has one winner", testConcurrentTransition},
		{"concurrent acquire creates one grant", testConcurrentAcquire},
		{"concurrent release revokes once", testConcurrentRelease},
		{"claim expired hands out once", testClaimExpiredOnce},
		{"claim expired respects expiry", testClaimExpiredWindow},
		{"claim retries due grants", testClaimRetries},
		{"grant listings for reconcile", testGrantListings},
		{"audit chain verifies", testAuditChain},
		{"outbox delivery cycle", testOutbox},
		{"transition writes its event atomically", testTransitionEvents},
		{"racing transitions write one event", testConcurrentTransitionEvents},
		{"enqueue once ignores duplicate id", testEnqueueOnce},
		{"reopen runs no migration twice", testReopen},
		{"times stored in utc", testTimesUTC},
		{"seeded leases behave as granted", testSeedActive},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newEnv(t, b)) })
	}
}

// hashOf returns a request hash for tests.
func hashOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

const (
	principalID = "11111111-2222-3333-4444-555555555555"
	readerRole  = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
	scopeA      = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-a"
	scopeB      = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-b"
)

// sampleRequest returns a valid new request named by label.
func sampleRequest(label string) store.Request {
	return store.Request{
		Requester:     "repo:org/app:environment:prod",
		Claims:        map[string]string{"repository": "org/app", "environment": "prod", "run_id": "42"},
		Principal:     store.Principal{ID: principalID, Type: "ServicePrincipal"},
		Pairs:         []store.Pair{{RoleID: readerRole, Scope: scopeA}},
		Justification: "rotate the database password " + label,
		Duration:      30 * time.Minute,
		Metadata:      map[string]string{"ticket": "OPS-1"},
		Hash:          hashOf(label),
		Backend:       "rbac",
		Decision:      store.Decision{Outcome: store.OutcomeNeedsApproval, RuleID: "prod", RequiredApprovals: 1},
	}
}

// create stores r and fails the test on error.
func (e *env) create(r store.Request) store.Request {
	e.t.Helper()
	got, created, err := e.store.CreateRequest(e.ctx, r)
	if err != nil {
		e.t.Fatalf("create request: %v", err)
	}
	if !created {
		e.t.Fatalf("create request %q: created = false; want true", got.ID)
	}
	return got
}

// moveTo drives request id from pending along path.
func (e *env) moveTo(id string, path ...store.RequestState) store.Request {
	e.t.Helper()
	r, err := e.store.GetRequest(e.ctx, id)
	if err != nil {
		e.t.Fatalf("get request: %v", err)
	}
	for _, next := range path {
		r, err = e.store.TransitionRequest(e.ctx, id, []store.RequestState{r.State}, next, store.RequestUpdate{})
		if err != nil {
			e.t.Fatalf("move request to %s: %v", next, err)
		}
	}
	return r
}

// approved creates a request and moves it to approved.
func (e *env) approved(label string) store.Request {
	e.t.Helper()
	r := e.create(sampleRequest(label))
	return e.moveTo(r.ID, store.RequestApproved)
}

// acquire acquires scope for request id with a lease of one hour.
func (e *env) acquire(s store.Store, requestID, scope string) (store.Acquisition, error) {
	return s.AcquireGrant(e.ctx, store.AcquireParams{
		RequestID:      requestID,
		PrincipalID:    principalID,
		PrincipalType:  "ServicePrincipal",
		RoleID:         readerRole,
		Scope:          scope,
		AssignmentName: "name-" + requestID,
		Backend:        "rbac",
		LeaseExpiresAt: e.clock.Now().Add(time.Hour),
	})
}

func (e *env) mustAcquire(requestID, scope string) store.Acquisition {
	e.t.Helper()
	a, err := e.acquire(e.store, requestID, scope)
	if err != nil {
		e.t.Fatalf("acquire %s for %s: %v", scope, requestID, err)
	}
	return a
}

// stores returns n stores for concurrent workers: separate ones when the
// backend models replicas, else the env's store n times.
func (e *env) stores(n int) []store.Store {
	out := make([]store.Store, n)
	for i := range out {
		out[i] = e.store
		if e.backend.Replicas {
			out[i] = e.open()
		}
	}
	return out
}

// wantErr fails when err does not wrap target.
func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: got error %v; want %v", what, err, target)
	}
}

// runParallel runs fn(i) for i in [0, n) at once and waits.
func runParallel(n int, fn func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			fn(i)
		}()
	}
	close(start)
	wg.Wait()
}

func label(prefix string, i int) string { return fmt.Sprintf("%s-%d", prefix, i) }
