package broker

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/elevate-dev/elevate/internal/azure"
	"github.com/elevate-dev/elevate/internal/emulator"
	"github.com/elevate-dev/elevate/internal/lifecycle"
	elevatepolicy "github.com/elevate-dev/elevate/internal/policy"
	"github.com/elevate-dev/elevate/internal/store"
)

// jumpClock is a fakeClock whose waits return at once and move it on, so
// PIM's minimum durations pass without real waiting. The emulator, the
// store, the engine and the broker share it.
type jumpClock struct{ fakeClock }

func (c *jumpClock) After(d time.Duration) <-chan time.Time {
	c.Advance(d)
	ch := make(chan time.Time, 1)
	ch <- c.Now()
	return ch
}

// earlyRemoveRefused refuses an AdminRemove within five minutes of the
// assignment's start, as PIM does a deactivation. The emulator applies the
// rule only to SelfDeactivate, and whether Azure applies it to AdminRemove
// is not documented, so the broker must handle both.
type earlyRemoveRefused struct {
	lifecycle.PIMClient
	now func() time.Time
}

func (c earlyRemoveRefused) Request(ctx context.Context, scope, name string, r azure.ScheduleRequest) (azure.ScheduleRequest, error) {
	if r.RequestType == azure.RequestAdminRemove {
		inst, err := c.ActiveInstance(ctx, scope, r.PrincipalID, r.RoleDefinitionID)
		if err == nil && c.now().Sub(inst.Start) < azure.MinimumActiveDuration {
			return azure.ScheduleRequest{}, fmt.Errorf("injected: remove within five minutes of %s: %w", inst.Start, azure.ErrDurationTooShort)
		}
	}
	return c.PIMClient.Request(ctx, scope, name, r)
}

type pimHarness struct {
	srv   *emulator.Server
	store store.Store
	svc   *Service
	pim   *azure.PIM
	clock *jumpClock
}

// newPIMHarness starts the emulator and a broker that may grant through
// rbac and pim-assign, all on one jumpClock.
func newPIMHarness(t *testing.T) *pimHarness {
	t.Helper()
	ctx := context.Background()
	clock := &jumpClock{fakeClock{now: time.Now().UTC().Truncate(time.Second)}}
	srv, err := emulator.Start(ctx, emulator.Config{Logger: quietLogger(), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })

	env := azure.Environment{ARMEndpoint: srv.URL(), AuthorityHost: srv.URL() + "/", VaultSuffix: srv.VaultSuffix()}
	if err := env.CheckAndSetDefaults(); err != nil {
		t.Fatal(err)
	}
	retry := &policy.RetryOptions{MaxRetries: 2, RetryDelay: 5 * time.Millisecond}
	cred, err := azidentity.NewClientSecretCredential(srv.TenantID(), "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e02", "demo-pipeline-secret",
		&azidentity.ClientSecretCredentialOptions{ClientOptions: env.ClientOptions(srv.Client(), retry), DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	rbac, err := azure.NewRBAC(cred, env.ARMOptions(srv.Client(), retry))
	if err != nil {
		t.Fatal(err)
	}
	pim, err := azure.NewPIM(cred, env.ARMOptions(srv.Client(), retry))
	if err != nil {
		t.Fatal(err)
	}

	engine := lifecycle.New(lifecycle.Config{ARM: rbac, CallerID: pipelineOID, Clock: clock,
		Options: lifecycle.Options{BackoffBase: time.Millisecond, BackoffMax: 5 * time.Millisecond, DeferEarlyRemoval: true}})
	if err := engine.AddPIM(lifecycle.PIMConfig{PIM: earlyRemoveRefused{PIMClient: pim, now: clock.Now}}); err != nil {
		t.Fatal(err)
	}

	st, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "broker.db"), store.Options{Now: clock.Now, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	pol, err := elevatepolicy.Load("../../examples/broker/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(Config{Store: st, Policy: pol, Engine: engine, ReplicaID: "replica-a", Now: clock.Now,
		RetryBase: time.Second, RetryMax: 10 * time.Second, MaxRevokeAttempts: 3,
		Backends: []string{lifecycle.BackendRBAC, lifecycle.BackendPIMAssign}})
	if err != nil {
		t.Fatal(err)
	}
	return &pimHarness{srv: srv, store: st, svc: svc, pim: pim, clock: clock}
}

// liveInstance reports whether PIM shows an active assignment of the
// request's one pair.
func (h *pimHarness) liveInstance(t *testing.T, r store.Request) bool {
	t.Helper()
	p := r.Pairs[0]
	_, err := h.pim.ActiveInstance(context.Background(), p.Scope, r.Principal.ID,
		p.Scope+"/providers/Microsoft.Authorization/roleDefinitions/"+p.RoleID)
	if errors.Is(err, azure.ErrNotFound) {
		return false
	}
	if err != nil {
		t.Fatalf("read PIM instance: %v", err)
	}
	return true
}

// TestPIMAssignGrantEndsAtExpiry grants a request through pim-assign: PIM
// holds a time-bound assignment while the request is active, no role
// assignment by Elevate's own name exists, and the sweep at expiry leaves
// nothing behind.
func TestPIMAssignGrantEndsAtExpiry(t *testing.T) {
	h := newPIMHarness(t)
	ctx := context.Background()
	in := readerRequest("pim-1")
	in.Backend = lifecycle.BackendPIMAssign
	r, err := h.svc.Create(ctx, pipeline, in)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if r.State == store.RequestPending {
		if r, err = h.svc.Review(ctx, approver, r.ID, store.VerdictApprove, r.Hash, "read only"); err != nil {
			t.Fatalf("approve: %v", err)
		}
	}
	if r.State != store.RequestActive || r.Backend != lifecycle.BackendPIMAssign {
		t.Fatalf("request: got %s through %q (%s); want active through pim-assign", r.State, r.Backend, r.Error)
	}
	if !h.liveInstance(t, r) {
		t.Fatal("PIM assignment while active: got none; want one")
	}

	h.clock.Advance(11 * time.Minute)
	h.svc.SweepOnce(ctx)
	got, err := h.store.GetRequest(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != store.RequestRevoked {
		t.Errorf("state after expiry and a sweep: got %s (%s); want revoked", got.State, got.Error)
	}
	if h.liveInstance(t, r) {
		t.Error("PIM assignment after the sweep: still active; want none")
	}
}

// TestPIMAssignEarlyRevokeDeferred revokes a pim-assign grant a minute
// after it started, and PIM refuses the removal. The broker must schedule
// the retry rather than wait: the request stays revoking with the retry
// recorded. A sweep before the retry time does nothing, and the first sweep
// after it removes the assignment.
func TestPIMAssignEarlyRevokeDeferred(t *testing.T) {
	h := newPIMHarness(t)
	ctx := context.Background()
	in := readerRequest("pim-early")
	in.Backend = lifecycle.BackendPIMAssign
	in.Duration = "30m"
	r, err := h.svc.Create(ctx, pipeline, in)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if r.State == store.RequestPending {
		if r, err = h.svc.Review(ctx, approver, r.ID, store.VerdictApprove, r.Hash, "read only"); err != nil {
			t.Fatalf("approve: %v", err)
		}
	}
	if r.State != store.RequestActive {
		t.Fatalf("request: got %s (%s); want active", r.State, r.Error)
	}

	h.clock.Advance(time.Minute)
	before := h.clock.Now()
	got, err := h.svc.Revoke(ctx, admin, r.ID)
	if err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if !h.clock.Now().Equal(before) {
		t.Errorf("clock moved by %s during Revoke; want no wait", h.clock.Now().Sub(before))
	}
	if got.State != store.RequestRevoking {
		t.Fatalf("state after an early revoke: got %s (%s); want revoking", got.State, got.Error)
	}
	if !h.liveInstance(t, r) {
		t.Fatal("PIM assignment right after the early revoke: got none; want it still active")
	}
	events, err := h.store.AuditRange(ctx, 1, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var deferred bool
	for _, e := range events {
		deferred = deferred || (e.RequestID == r.ID && e.Event == "revoke_deferred")
	}
	if !deferred {
		t.Error("audit: no revoke_deferred event; want one with the retry time")
	}

	h.clock.Advance(time.Minute)
	h.svc.SweepOnce(ctx)
	if !h.liveInstance(t, r) {
		t.Fatal("PIM assignment before the retry time: got none; want it still active")
	}
	h.clock.Advance(4 * time.Minute)
	h.svc.SweepOnce(ctx)
	got, err = h.store.GetRequest(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != store.RequestRevoked {
		t.Errorf("state after the retry: got %s (%s); want revoked", got.State, got.Error)
	}
	if h.liveInstance(t, r) {
		t.Error("PIM assignment after the retry: still active; want none")
	}
}

// TestBackendNotEnabledRejected requests a backend the broker does not
// enable, and one it does not know.
func TestBackendNotEnabledRejected(t *testing.T) {
	h := newHarness(t)
	for _, name := range []string{lifecycle.BackendPIMAssign, "magic"} {
		in := readerRequest("b-" + name)
		in.Backend = name
		_, err := h.svc.Create(context.Background(), pipeline, in)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("backend %q: got %v; want ErrInvalid", name, err)
		}
	}
}

// TestIdempotencyKeyBindsBackend retries a request with its key but another
// backend: that is other content, refused, not the first request returned.
func TestIdempotencyKeyBindsBackend(t *testing.T) {
	h := newPIMHarness(t)
	ctx := context.Background()
	in := readerRequest("same-key")
	if _, err := h.svc.Create(ctx, pipeline, in); err != nil {
		t.Fatalf("Create: %v", err)
	}
	in.Backend = lifecycle.BackendPIMAssign
	if _, err := h.svc.Create(ctx, pipeline, in); !errors.Is(err, store.ErrConflict) {
		t.Errorf("same key with another backend: got %v; want ErrConflict", err)
	}
}
