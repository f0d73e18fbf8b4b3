package broker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/emulator"
	elevatepolicy "github.com/elevate-dev/elevate/internal/policy"
	"github.com/elevate-dev/elevate/internal/store"
)

// reviewStep is one reviewer action, or a clock move and sweep, in an
// approval scenario.
type reviewStep struct {
	reviewer Identity
	verdict  string
	// staleHash sends a hash other than the request's, as a reviewer who
	// was shown an older version would.
	staleHash bool
	// advance moves the clock first; sweep runs SweepOnce after it.
	advance time.Duration
	sweep   bool
	wantErr error
}

var (
	second   = Identity{Subject: secondApprover}
	security = Identity{Subject: securityApprover}
	outsider = Identity{Subject: "user:mallory@contoso.example"}
)

func approve(who Identity) reviewStep {
	return reviewStep{reviewer: who, verdict: store.VerdictApprove}
}
func deny(who Identity) reviewStep { return reviewStep{reviewer: who, verdict: store.VerdictDeny} }
func failing(s reviewStep, err error) reviewStep {
	s.wantErr = err
	return s
}

// TestApprovalScenarios drives the approval state machine through the
// Service with a fake clock and an in-memory ARM, and checks the end state
// against policy.Evaluate of the stored approvals.
func TestApprovalScenarios(t *testing.T) {
	cases := []struct {
		name  string
		role  string
		steps []reviewStep
		want  store.RequestState
	}{
		{"one approval activates", "Contributor", []reviewStep{approve(approver)}, store.RequestActive},
		{"deny first then approve", "Contributor", []reviewStep{
			deny(approver), failing(approve(second), store.ErrConflict)}, store.RequestDenied},
		{"approve then deny denies", "Key Vault Secrets Officer", []reviewStep{
			approve(approver), deny(second)}, store.RequestDenied},
		{"two approvals activate", "Key Vault Secrets Officer", []reviewStep{
			approve(approver), approve(second)}, store.RequestActive},
		{"duplicate approval counts once", "Key Vault Secrets Officer", []reviewStep{
			approve(approver), failing(approve(approver), store.ErrDuplicate)}, store.RequestPending},
		{"self approval rejected", "Contributor", []reviewStep{
			failing(approve(Identity{Subject: pipeline.Subject}), ErrForbidden),
			failing(approve(Identity{Subject: "github:octocat"}), ErrForbidden),
			failing(approve(Identity{Subject: "principal:" + targetPrincipal(0)}), ErrForbidden)}, store.RequestPending},
		{"outsider and pipeline rejected", "Contributor", []reviewStep{
			failing(approve(outsider), ErrForbidden),
			failing(approve(Identity{Subject: "repo:other/repo:ref:refs/heads/main", Pipeline: true}), ErrForbidden)},
			store.RequestPending},
		{"stale hash rejected", "Contributor", []reviewStep{
			failing(reviewStep{reviewer: approver, verdict: store.VerdictApprove, staleHash: true}, store.ErrConflict)},
			store.RequestPending},
		{"approval before deadline counts", "Contributor", []reviewStep{
			{advance: 59 * time.Minute, sweep: true}, approve(approver)}, store.RequestActive},
		{"deadline expires request", "Contributor", []reviewStep{
			{advance: time.Hour, sweep: true}, failing(approve(approver), store.ErrConflict)}, store.RequestExpired},
		{"each group needs both", "Key Vault Administrator", []reviewStep{
			approve(approver), approve(second)}, store.RequestPending},
		{"each group approved", "Key Vault Administrator", []reviewStep{
			approve(approver), approve(security)}, store.RequestActive},
		{"deny from other group denies", "Key Vault Administrator", []reviewStep{
			approve(approver), deny(security)}, store.RequestDenied},
		{"invalid verdict rejected", "Contributor", []reviewStep{
			failing(reviewStep{reviewer: approver, verdict: "maybe"}, ErrInvalid)}, store.RequestPending},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			clock := &fakeClock{now: time.Date(2025, 3, 4, 9, 0, 0, 0, time.UTC)}
			arm := newMapARM()
			st := openSQLite(t, clock.Now)
			svc := serviceOn(t, st, arm, clock.Now, "replica-a")
			in := contributorFor(0, "")
			in.Roles = []string{tc.role}
			if strings.HasPrefix(tc.role, "Key Vault") {
				in.Scopes = []string{vaultID}
			}
			r, err := svc.Create(ctx, pipeline, in)
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			if r.State != store.RequestPending {
				t.Fatalf("state after Create: got %s; want pending", r.State)
			}
			for i, step := range tc.steps {
				clock.Advance(step.advance)
				if step.sweep {
					svc.SweepOnce(ctx)
				}
				if step.verdict == "" {
					continue
				}
				hash := r.Hash
				if step.staleHash {
					hash = strings.Repeat("0", 64)
				}
				_, err := svc.Review(ctx, step.reviewer, r.ID, step.verdict, hash, "")
				if !errors.Is(err, step.wantErr) {
					t.Errorf("step %d (%s %s): got error %v; want %v", i, step.reviewer.Subject, step.verdict, err, step.wantErr)
				}
			}
			got, err := st.GetRequest(ctx, r.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.State != tc.want {
				t.Errorf("state: got %s; want %s", got.State, tc.want)
			}
			wantLive := 0
			if tc.want == store.RequestActive {
				wantLive = 1
			}
			if n := arm.live(); n != wantLive {
				t.Errorf("role assignments: got %d; want %d", n, wantLive)
			}
			checkEvaluateAgrees(t, svc, got)
		})
	}
}

// checkEvaluateAgrees recomputes the approval state of r from its stored
// approvals with the pure policy function and compares it with the state
// the Service reached.
func checkEvaluateAgrees(t *testing.T, svc *Service, r store.Request) {
	t.Helper()
	if r.State == store.RequestExpired {
		return // expiry is the clock's doing, not the approvals'
	}
	approvals, err := svc.cfg.Store.ListApprovals(context.Background(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	list := make([]elevatepolicy.Approval, len(approvals))
	for i, a := range approvals {
		list[i] = elevatepolicy.Approval{Approver: a.Approver, Groups: a.Groups, Verdict: a.Verdict, RequestHash: a.RequestHash}
	}
	state, reason := svc.cfg.Policy.Evaluate(fromStoreDecision(r.Decision), svc.requesterIdentities(r), r.Hash, list)
	want := map[store.RequestState]string{
		store.RequestPending: elevatepolicy.StatePending, store.RequestDenied: elevatepolicy.StateDenied,
		store.RequestActive: elevatepolicy.StateApproved,
	}[r.State]
	if state != want {
		t.Errorf("policy.Evaluate of the stored approvals: got %s (%s); want %s", state, reason, want)
	}
}

// TestOverlappingLeasesAcrossReplicas runs two Services, each with its own
// connection pool on one PostgreSQL schema, against the emulator. Two
// requests for the same pair share one role assignment, which is deleted
// once, after the second lease ends, whichever replica sweeps.
func TestOverlappingLeasesAcrossReplicas(t *testing.T) {
	dsn := postgresSchema(t)
	ctx := context.Background()
	srv := startHAEmulator(t, 1, 0)
	clock := &fakeClock{now: time.Now().UTC()}
	wire := &wireCounter{base: srv.Transport()}
	client := &http.Client{Transport: wire, Timeout: 30 * time.Second}
	replicas := []*Service{
		serviceOn(t, openPostgres(t, dsn, clock.Now), emulatorARM(t, srv, client), clock.Now, "replica-a"),
		serviceOn(t, openPostgres(t, dsn, clock.Now), emulatorARM(t, srv, client), clock.Now, "replica-b"),
	}
	sweepAll := func() {
		var wg sync.WaitGroup
		for _, svc := range replicas {
			wg.Go(func() { svc.SweepOnce(ctx) })
		}
		wg.Wait()
	}

	first, err := replicas[0].Create(ctx, pipeline, readerFor(0, "first"))
	if err != nil {
		t.Fatalf("Create on replica a: %v", err)
	}
	clock.Advance(5 * time.Minute)
	second, err := replicas[1].Create(ctx, pipeline, readerFor(0, "second"))
	if err != nil {
		t.Fatalf("Create on replica b: %v", err)
	}
	for _, r := range []store.Request{first, second} {
		if r.State != store.RequestActive {
			t.Fatalf("request %s: got %s; want active", r.ID, r.State)
		}
	}
	if n := liveTemporary(srv); n != 1 {
		t.Fatalf("assignments with two leases: got %d; want 1", n)
	}

	// The first lease ends; the second still holds the grant.
	clock.Advance(6 * time.Minute)
	sweepAll()
	if n := liveTemporary(srv); n != 1 {
		t.Errorf("assignments after the first lease ended: got %d; want 1", n)
	}
	if n := len(wire.deletes()); n != 0 {
		t.Errorf("assignments deleted while a lease remains: got %d; want 0", n)
	}
	// The last lease ends.
	clock.Advance(5 * time.Minute)
	sweepAll()
	sweepAll() // a second round must find nothing more to do
	if n := liveTemporary(srv); n != 0 {
		t.Errorf("assignments after the last lease ended: got %d; want 0", n)
	}
	deletes := wire.deletes()
	if len(deletes) != 1 {
		t.Errorf("assignments deleted: got %d; want 1", len(deletes))
	}
	for path, statuses := range deletes {
		if len(statuses) != 1 || statuses[0] != http.StatusOK {
			t.Errorf("DELETE %s: got statuses %v; want one 200", path, statuses)
		}
	}
	findings, _ := historyFindings(assignmentHistory(t, srv))
	for _, f := range findings {
		t.Errorf("emulator history: %s", f)
	}
	for _, r := range []store.Request{first, second} {
		got, err := replicas[0].cfg.Store.GetRequest(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != store.RequestRevoked {
			t.Errorf("request %s: got %s; want revoked", r.ID, got.State)
		}
	}
	if _, err := store.VerifyStoredAudit(ctx, replicas[1].cfg.Store); err != nil {
		t.Errorf("audit chain: %v", err)
	}
}

// TestReplicasShareExpiredLeases lets three replicas on one PostgreSQL
// schema sweep several hundred expired leases at once. Each grant must be
// deleted exactly once, and every replica must have claimed some leases
// (FOR UPDATE SKIP LOCKED hands each row to one of them).
func TestReplicasShareExpiredLeases(t *testing.T) {
	dsn := postgresSchema(t)
	ctx := context.Background()
	n := 450
	if longEvidence() {
		n = 3000
	}
	clock := &fakeClock{now: time.Now().UTC()}
	arm := newMapARM()
	var replicas []*Service
	for i := range 3 {
		replicas = append(replicas, serviceOn(t, openPostgres(t, dsn, clock.Now), arm, clock.Now, fmt.Sprintf("replica-%d", i)))
	}
	var ids []string
	for i := range n {
		r, err := replicas[i%3].Create(ctx, pipeline, readerFor(i, fmt.Sprintf("k%d", i)))
		if err != nil {
			t.Fatalf("Create %d: %v", i, err)
		}
		ids = append(ids, r.ID)
	}
	if got := arm.live(); got != n {
		t.Fatalf("assignments: got %d; want %d", got, n)
	}

	// Each DELETE takes a millisecond, so a replica is still busy with
	// its batch when the others claim theirs.
	arm.latency = time.Millisecond
	clock.Advance(11 * time.Minute)
	var wg sync.WaitGroup
	for _, svc := range replicas {
		wg.Go(func() {
			for svc.SweepOnce(ctx) > 0 {
			}
		})
	}
	wg.Wait()

	if got := arm.live(); got != 0 {
		t.Errorf("assignments left: got %d; want 0", got)
	}
	creates, deletes := arm.counts()
	for id, c := range creates {
		if c != 1 || deletes[id] != 1 {
			t.Errorf("assignment %s: got %d creates and %d deletes; want 1 and 1", id, c, deletes[id])
		}
	}
	claimed := map[string]int{}
	for _, id := range ids {
		leases, err := replicas[0].cfg.Store.ListLeases(ctx, store.LeaseFilter{RequestID: id})
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range leases {
			claimed[l.ClaimOwner]++
		}
		r, err := replicas[0].cfg.Store.GetRequest(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if r.State != store.RequestRevoked {
			t.Errorf("request %s: got %s; want revoked", id, r.State)
		}
	}
	for _, svc := range replicas {
		if claimed[svc.cfg.ReplicaID] == 0 {
			t.Errorf("leases claimed by %s: got 0; want some (claims %v)", svc.cfg.ReplicaID, claimed)
		}
	}
	t.Logf("leases claimed per replica: %v", claimed)
}

// liveTemporary counts the live role assignments the broker made.
func liveTemporary(srv *emulator.Server) int {
	n := 0
	for _, a := range srv.RoleAssignments() {
		if strings.HasPrefix(a.Description, "elevate request") {
			n++
		}
	}
	return n
}

// TestStoredApprovalSettledBySweep stores an approval the way Review does
// and stops before Review acts on it, as a replica that dies there would.
// The next sweep must approve and grant the request.
func TestStoredApprovalSettledBySweep(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: time.Date(2025, 3, 4, 9, 0, 0, 0, time.UTC)}
	arm := newMapARM()
	st := openSQLite(t, clock.Now)
	svc := serviceOn(t, st, arm, clock.Now, "replica-a")
	r, err := svc.Create(ctx, pipeline, contributorFor(0, ""))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := st.AddApproval(ctx, store.Approval{RequestID: r.ID, Approver: approver.Subject,
		Verdict: store.VerdictApprove, RequestHash: r.Hash}); err != nil {
		t.Fatalf("AddApproval: %v", err)
	}
	svc.SweepOnce(ctx)
	got, err := st.GetRequest(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != store.RequestActive {
		t.Errorf("state after sweep: got %s; want active", got.State)
	}
	if n := arm.live(); n != 1 {
		t.Errorf("role assignments: got %d; want 1", n)
	}
}
