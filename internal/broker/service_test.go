package broker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
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

const (
	subscription = "9d2c6e1f-4a3b-4c5d-8e7f-0a1b2c3d4e50"
	pipelineOID  = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a801"
)

var (
	rg       = "/subscriptions/" + subscription + "/resourceGroups/rg-elevate-demo"
	vaultID  = rg + "/providers/Microsoft.KeyVault/vaults/kv-elevate-demo"
	pipeline = Identity{Subject: "repo:contoso/payments:environment:production", Pipeline: true,
		Claims: map[string]string{"repository": "contoso/payments", "environment": "production", "ref": "refs/heads/main", "actor": "octocat"}}
	approver = Identity{Subject: "user:approver@contoso.example"}
	admin    = Identity{Subject: "user:root@contoso.example", Admin: true}
)

// fakeClock is a settable clock shared by the broker and its store.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type harness struct {
	srv   *emulator.Server
	store store.Store
	svc   *Service
	clock *fakeClock
}

// newHarness starts the emulator, a SQLite store and a broker whose ARM
// identity is the pipeline's own (the demo tenant's only granting identity).
func newHarness(t *testing.T) *harness {
	t.Helper()
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := emulator.Start(ctx, emulator.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	clock := &fakeClock{now: time.Now().UTC()}
	st, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "broker.db"), store.Options{Now: clock.Now, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &harness{srv: srv, store: st, svc: newService(t, srv, st, clock, "replica-a"), clock: clock}
}

func newService(t *testing.T, srv *emulator.Server, st store.Store, clock *fakeClock, replica string) *Service {
	t.Helper()
	env := azure.Environment{ARMEndpoint: srv.URL(), AuthorityHost: srv.URL() + "/", VaultSuffix: srv.VaultSuffix()}
	if err := env.CheckAndSetDefaults(); err != nil {
		t.Fatal(err)
	}
	opts := env.ClientOptions(srv.Client(), &policy.RetryOptions{MaxRetries: 2, RetryDelay: 5 * time.Millisecond})
	cred, err := azidentity.NewClientSecretCredential(srv.TenantID(), "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e02", "demo-pipeline-secret",
		&azidentity.ClientSecretCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	rbac, err := azure.NewRBAC(cred, env.ARMOptions(srv.Client(), &policy.RetryOptions{MaxRetries: 2, RetryDelay: 5 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	pol, err := elevatepolicy.Load("../../examples/broker/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	engine := lifecycle.New(lifecycle.Config{ARM: rbac, CallerID: pipelineOID,
		Options: lifecycle.Options{BackoffBase: time.Millisecond, BackoffMax: 5 * time.Millisecond}})
	svc, err := New(Config{Store: st, Policy: pol, Engine: engine, ReplicaID: replica, Now: clock.Now,
		RetryBase: time.Second, RetryMax: 10 * time.Second, MaxRevokeAttempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func (h *harness) liveAssignments() int {
	n := 0
	for _, a := range h.srv.RoleAssignments() {
		if strings.EqualFold(a.PrincipalID, pipelineOID) && strings.HasPrefix(a.Description, "elevate request") {
			n++
		}
	}
	return n
}

func vaultRequest(key string) CreateInput {
	return CreateInput{IdempotencyKey: key, Roles: []string{"Key Vault Secrets Officer"}, Scopes: []string{vaultID},
		PrincipalID: pipelineOID, Duration: "10m", Justification: "rotate the payments database password"}
}

func readerRequest(key string) CreateInput {
	return CreateInput{IdempotencyKey: key, Roles: []string{"Reader"}, Scopes: []string{rg},
		PrincipalID: pipelineOID, Duration: "10m", Justification: "inspect storage settings"}
}

func TestAutoApprovedRequestGrantedAndSwept(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	r, err := h.svc.Create(ctx, pipeline, vaultRequest("k1"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if r.State != store.RequestActive {
		t.Fatalf("state = %s; want active", r.State)
	}
	if r.Decision.RuleID != "pipeline-rotates-own-secret" {
		t.Errorf("rule id = %q; want pipeline-rotates-own-secret", r.Decision.RuleID)
	}
	if n := h.liveAssignments(); n != 1 {
		t.Fatalf("assignments = %d; want 1", n)
	}

	// Before expiry the sweeper leaves it alone.
	h.clock.Advance(9 * time.Minute)
	h.svc.SweepOnce(ctx)
	if n := h.liveAssignments(); n != 1 {
		t.Fatalf("assignments before expiry = %d; want 1", n)
	}
	h.clock.Advance(2 * time.Minute)
	h.svc.SweepOnce(ctx)
	if n := h.liveAssignments(); n != 0 {
		t.Errorf("assignments after expiry = %d; want 0", n)
	}
	got, err := h.store.GetRequest(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != store.RequestRevoked {
		t.Errorf("state after expiry = %s; want revoked", got.State)
	}
	if _, err := store.VerifyStoredAudit(ctx, h.store); err != nil {
		t.Errorf("audit chain: %v", err)
	}
}

func TestIdempotentCreateReturnsSameRequest(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	first, err := h.svc.Create(ctx, pipeline, vaultRequest("same-key"))
	if err != nil {
		t.Fatal(err)
	}
	second, err := h.svc.Create(ctx, pipeline, vaultRequest("same-key"))
	if err != nil {
		t.Fatalf("retried Create: %v", err)
	}
	if second.ID != first.ID {
		t.Errorf("retried Create id = %s; want %s", second.ID, first.ID)
	}
	if n := h.liveAssignments(); n != 1 {
		t.Errorf("assignments = %d; want 1", n)
	}
	changed := vaultRequest("same-key")
	changed.Duration = "12m"
	if _, err := h.svc.Create(ctx, pipeline, changed); !errors.Is(err, store.ErrConflict) {
		t.Errorf("Create reusing a key with another body error = %v; want ErrConflict", err)
	}
}

func TestApprovalFlow(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	r, err := h.svc.Create(ctx, pipeline, readerRequest("r1"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if r.State != store.RequestPending {
		t.Fatalf("state = %s; want pending", r.State)
	}
	cases := []struct {
		name     string
		reviewer Identity
		hash     string
		want     error
	}{
		{"requester cannot approve", Identity{Subject: pipeline.Subject}, r.Hash, ErrForbidden},
		{"actor cannot approve", Identity{Subject: "github:octocat"}, r.Hash, ErrForbidden},
		{"outsider cannot approve", Identity{Subject: "user:mallory@contoso.example"}, r.Hash, ErrForbidden},
		{"pipeline cannot approve", Identity{Subject: "repo:other/repo:ref:refs/heads/main", Pipeline: true}, r.Hash, ErrForbidden},
		{"stale hash rejected", approver, strings.Repeat("0", 64), store.ErrConflict},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := h.svc.Review(ctx, tc.reviewer, r.ID, store.VerdictApprove, tc.hash, ""); !errors.Is(err, tc.want) {
				t.Errorf("Review error = %v; want %v", err, tc.want)
			}
		})
	}
	if n := h.liveAssignments(); n != 0 {
		t.Fatalf("assignments before approval = %d; want 0", n)
	}
	got, err := h.svc.Review(ctx, approver, r.ID, store.VerdictApprove, r.Hash, "looks fine")
	if err != nil {
		t.Fatalf("approve: %v", err)
	}
	if got.State != store.RequestActive {
		t.Errorf("state after approval = %s; want active", got.State)
	}
	if n := h.liveAssignments(); n != 1 {
		t.Errorf("assignments after approval = %d; want 1", n)
	}
}

func TestPendingRequestExpires(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	r, err := h.svc.Create(ctx, pipeline, readerRequest("r2"))
	if err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(2 * time.Hour)
	h.svc.SweepOnce(ctx)
	got, err := h.store.GetRequest(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != store.RequestExpired {
		t.Fatalf("state = %s; want expired", got.State)
	}
	if _, err := h.svc.Review(ctx, approver, r.ID, store.VerdictApprove, r.Hash, ""); err == nil {
		t.Errorf("late approval succeeded; want an error")
	}
	if n := h.liveAssignments(); n != 0 {
		t.Errorf("assignments = %d; want 0", n)
	}
}

func TestOverlappingRequestsShareGrant(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	first, err := h.svc.Create(ctx, pipeline, vaultRequest("a"))
	if err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(5 * time.Minute)
	second, err := h.svc.Create(ctx, pipeline, vaultRequest("b"))
	if err != nil {
		t.Fatal(err)
	}
	if n := h.liveAssignments(); n != 1 {
		t.Fatalf("assignments with two leases = %d; want 1", n)
	}
	// The first lease ends; the second still holds the grant.
	h.clock.Advance(6 * time.Minute)
	h.svc.SweepOnce(ctx)
	if n := h.liveAssignments(); n != 1 {
		t.Fatalf("assignments after the first lease ended = %d; want 1", n)
	}
	if got, _ := h.store.GetRequest(ctx, first.ID); got.State != store.RequestRevoked {
		t.Errorf("first request = %s; want revoked", got.State)
	}
	h.clock.Advance(5 * time.Minute)
	h.svc.SweepOnce(ctx)
	if n := h.liveAssignments(); n != 0 {
		t.Errorf("assignments after the last lease ended = %d; want 0", n)
	}
	if got, _ := h.store.GetRequest(ctx, second.ID); got.State != store.RequestRevoked {
		t.Errorf("second request = %s; want revoked", got.State)
	}
}

func TestRevokeFailureRetried(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	r, err := h.svc.Create(ctx, pipeline, vaultRequest("f"))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.srv.SetFaults(emulator.FaultConfig{Rules: []emulator.FaultRule{{Method: "DELETE", Path: "roleAssignments", Status: 500}}}); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(11 * time.Minute)
	h.svc.SweepOnce(ctx)
	got, _ := h.store.GetRequest(ctx, r.ID)
	if got.State != store.RequestRevokeFailed {
		t.Fatalf("state with failing deletes = %s; want revoke_failed", got.State)
	}
	if n := h.liveAssignments(); n != 1 {
		t.Fatalf("assignments = %d; want 1 still present", n)
	}
	if err := h.srv.SetFaults(emulator.FaultConfig{}); err != nil {
		t.Fatal(err)
	}
	// The retry is not due yet, then it is.
	h.svc.SweepOnce(ctx)
	h.clock.Advance(time.Minute)
	h.svc.SweepOnce(ctx)
	if n := h.liveAssignments(); n != 0 {
		t.Errorf("assignments after retry = %d; want 0", n)
	}
	if got, _ := h.store.GetRequest(ctx, r.ID); got.State != store.RequestRevoked {
		t.Errorf("state after retry = %s; want revoked", got.State)
	}
}

func TestAdminRevokeEndsGrantEarly(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	r, err := h.svc.Create(ctx, pipeline, vaultRequest("x"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.Revoke(ctx, approver, r.ID); !errors.Is(err, ErrForbidden) {
		t.Errorf("non-admin revoke error = %v; want ErrForbidden", err)
	}
	got, err := h.svc.Revoke(ctx, admin, r.ID)
	if err != nil {
		t.Fatalf("admin revoke: %v", err)
	}
	if got.State != store.RequestRevoked {
		t.Errorf("state = %s; want revoked", got.State)
	}
	if n := h.liveAssignments(); n != 0 {
		t.Errorf("assignments = %d; want 0", n)
	}
}

func TestDeniedRequestGrantsNothing(t *testing.T) {
	h := newHarness(t)
	in := vaultRequest("d")
	in.Roles = []string{"Owner"}
	r, err := h.svc.Create(context.Background(), pipeline, in)
	if err != nil {
		t.Fatal(err)
	}
	if r.State != store.RequestDenied || r.Decision.RuleID != elevatepolicy.DefaultDenyRuleID {
		t.Errorf("state, rule = %s, %s; want denied, %s", r.State, r.Decision.RuleID, elevatepolicy.DefaultDenyRuleID)
	}
	if n := h.liveAssignments(); n != 0 {
		t.Errorf("assignments = %d; want 0", n)
	}
}
