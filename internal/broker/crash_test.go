package broker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/brokerclient"
	"github.com/elevate-dev/elevate/internal/crashpoint"
	"github.com/elevate-dev/elevate/internal/emulator"
	"github.com/elevate-dev/elevate/internal/store"
)

// TestBrokerCrashRecovery kills `elevate serve` (SQLite, crashpoints build,
// clock at 60x) at each broker crash point and at the lifecycle's
// grant.put_after, starts it again on the same database, and checks that
// the request ends revoked, nothing was granted twice, no role assignment
// remains and the audit chain verifies.
func TestBrokerCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("builds elevate and runs broker processes")
	}
	cases := []struct {
		point string
		// needsApproval requests Contributor, which an approver approves;
		// otherwise Reader, which policy grants at once.
		needsApproval bool
		// atExpiry marks points the sweeper reaches when the lease ends,
		// after a Create that succeeds.
		atExpiry bool
	}{
		{point: "broker.approval_recorded", needsApproval: true},
		{point: "broker.intent_committed"},
		{point: "grant.put_after"},
		{point: "broker.grant_created"},
		{point: "broker.lease_released", atExpiry: true},
		{point: "broker.revoke_verified", atExpiry: true},
	}
	for _, p := range crashpoint.BrokerPoints {
		found := false
		for _, c := range cases {
			found = found || c.point == p.Name
		}
		if !found {
			t.Errorf("broker crash point %s has no case", p.Name)
		}
	}
	crashBinary(t) // build once before the parallel cases
	for _, tc := range cases {
		t.Run(tc.point, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := startHAEmulator(t, 1, 0)
			db := filepath.Join(t.TempDir(), "elevate.db")
			b := newBrokerProc(t, srv, "solo", fmt.Sprintf("sqlite: %q", db), haPolicyFile(t), time.Now())
			b.start(crashpoint.EnvAt + "=" + tc.point)
			pc, err := b.pipelineClient(srv)
			if err != nil {
				t.Fatal(err)
			}
			in := brokerInput(readerFor(0, "crash-"+tc.point))
			if tc.needsApproval {
				in = brokerInput(contributorFor(0, "crash-"+tc.point))
			}

			// Run up to the crash.
			created, createErr := pc.Create(ctx, in)
			if tc.needsApproval {
				if createErr != nil {
					t.Fatalf("Create: %v", createErr)
				}
				ac, err := b.client(approverToken)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = ac.Approve(ctx, created.Request.ID, created.Request.Hash, "fine")
			}
			if !b.waitExit(30 * time.Second) {
				t.Fatalf("broker did not crash at %s (Create error %v); stderr:\n%s", tc.point, createErr, b.logs())
			}
			if !b.crashed(tc.point) {
				t.Fatalf("broker ended without the crash at %s; stderr:\n%s", tc.point, b.logs())
			}

			// Start again and retry as a pipeline would, with the same key.
			b.start()
			pc, err = b.pipelineClient(srv)
			if err != nil {
				t.Fatal(err)
			}
			again, err := pc.Create(ctx, in)
			if err != nil {
				t.Fatalf("Create after restart: %v", err)
			}
			if created.Request.ID != "" && again.Request.ID != created.Request.ID {
				t.Errorf("request id after restart: got %s; want %s", again.Request.ID, created.Request.ID)
			}
			waitStates(t, b, []string{again.Request.ID}, brokerclient.StateRevoked, 40*time.Second)
			checkEmulatorClean(t, srv)
			b.stop()
			st := openSQLite2(t, db)
			checkStoreEnd(t, st)
		})
	}
}

// TestThreeReplicasSurviveKill runs three `elevate serve` processes on one
// PostgreSQL schema, sends them a mix of auto-approved and reviewed
// requests, kills one with SIGKILL a third of the way through and starts it
// again at two thirds. At the end no grant was made twice, none remains,
// every recorded approval moved its request, every request ended, and each
// replica's sweeper ended some of the leases.
func TestThreeReplicasSurviveKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds elevate and runs broker processes")
	}
	t.Parallel() // it mostly waits for leases, like the crash cases
	dsn := postgresSchema(t)
	n := 30
	if longEvidence() {
		n = 150
	}
	ctx := context.Background()
	srv := startHAEmulator(t, n, 0)
	policyFile := haPolicyFile(t)
	epoch := time.Now()
	var procs []*brokerProc
	for i := range 3 {
		procs = append(procs, newBrokerProc(t, srv, fmt.Sprintf("replica-%d", i), fmt.Sprintf("postgres: %q", dsn), policyFile, epoch))
	}
	for _, b := range procs {
		b.start()
	}

	// Each call goes to one replica and, when that fails with no response or
	// a 5xx, to the next, as a client behind a load balancer would see it.
	call := func(i int, fn func(b *brokerProc) error) error {
		var err error
		for attempt := range 12 {
			b := procs[(i+attempt)%3]
			if err = fn(b); err == nil || !retryable(err) {
				return err
			}
			time.Sleep(50 * time.Millisecond)
		}
		return err
	}
	ids := make([]string, n)
	var done atomic.Int64
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Go(func() {
			for i := w; i < n; i += 3 {
				in := brokerInput(readerFor(i, fmt.Sprintf("mix-%d", i)))
				if i%2 == 1 {
					in = brokerInput(contributorFor(i, fmt.Sprintf("mix-%d", i)))
				}
				var r brokerclient.RequestDetail
				err := call(i, func(b *brokerProc) error {
					pc, err := b.pipelineClient(srv)
					if err == nil {
						r, err = pc.Create(ctx, in)
					}
					return err
				})
				if err != nil {
					t.Errorf("request %d: %v", i, err)
					continue
				}
				ids[i] = r.Request.ID
				if r.Request.State == brokerclient.StatePending {
					err = call(i+1, func(b *brokerProc) error {
						ac, err := b.client(approverToken)
						if err == nil {
							_, err = ac.Approve(ctx, r.Request.ID, r.Request.Hash, "ok")
						}
						return err
					})
					var apiErr *brokerclient.APIError
					if err != nil && !(errors.As(err, &apiErr) && apiErr.Status == http.StatusConflict) {
						t.Errorf("approve request %d: %v", i, err)
					}
				}
				done.Add(1)
			}
		})
	}
	// Kill replica 1 a third of the way through, start it at two thirds.
	for done.Load() < int64(n/3) {
		time.Sleep(5 * time.Millisecond)
	}
	procs[1].kill()
	for done.Load() < int64(2*n/3) {
		time.Sleep(5 * time.Millisecond)
	}
	procs[1].start()
	wg.Wait()

	waitStates(t, procs[0], ids, brokerclient.StateRevoked, 60*time.Second)
	checkEmulatorClean(t, srv)
	st := openPostgres(t, dsn, nil)
	checkStoreEnd(t, st)

	// Lost approvals: every approval recorded moved its request on.
	claimed := map[string]int{}
	for _, id := range ids {
		approvals, err := st.ListApprovals(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		r, err := st.GetRequest(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if len(approvals) > 0 && r.State == store.RequestPending {
			t.Errorf("request %s: got pending with %d approvals; want it decided", id, len(approvals))
		}
		leases, err := st.ListLeases(ctx, store.LeaseFilter{RequestID: id})
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range leases {
			claimed[l.ClaimOwner]++
		}
	}
	for _, b := range procs {
		if claimed[b.name] == 0 {
			t.Errorf("leases ended by %s's sweeper: got 0; want some (by replica: %v)", b.name, claimed)
		}
	}
	t.Logf("leases ended by replica: %v", claimed)
}

// retryable reports whether a call may succeed on another replica: no
// response at all, or a 5xx.
func retryable(err error) bool {
	var apiErr *brokerclient.APIError
	if errors.As(err, &apiErr) {
		return apiErr.Status >= 500
	}
	return true
}

// brokerInput converts a Service input to the client's.
func brokerInput(in CreateInput) brokerclient.CreateInput {
	return brokerclient.CreateInput{IdempotencyKey: in.IdempotencyKey, Roles: in.Roles, Scopes: in.Scopes,
		PrincipalID: in.PrincipalID, Duration: in.Duration, Justification: in.Justification}
}

// waitStates polls the broker until every request in ids is in state, and
// fails the test after timeout.
func waitStates(t *testing.T, b *brokerProc, ids []string, state string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, err := b.client(adminToken)
		if err != nil {
			t.Fatal(err)
		}
		var waiting []string
		for _, id := range ids {
			if id == "" {
				continue
			}
			r, err := c.Get(context.Background(), id)
			if err != nil || r.Request.State != state {
				got := "error " + fmt.Sprint(err)
				if err == nil {
					got = r.Request.State
				}
				waiting = append(waiting, id+" is "+got)
			}
		}
		if len(waiting) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("requests not %s after %s: %v\nbroker stderr:\n%s", state, timeout, waiting, b.logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkEmulatorClean fails the test when the emulator holds a temporary
// role assignment or its history shows a grant made twice.
func checkEmulatorClean(t *testing.T, srv *emulator.Server) {
	t.Helper()
	findings, live := historyFindings(assignmentHistory(t, srv))
	for _, f := range findings {
		t.Errorf("double grant: %s", f)
	}
	if live != 0 {
		t.Errorf("role assignments left after every lease ended: got %d; want 0", live)
	}
}

// checkStoreEnd fails the test when a request is neither terminal nor
// active with a live lease, or the audit chain does not verify.
func checkStoreEnd(t *testing.T, st store.Store) {
	t.Helper()
	ctx := context.Background()
	page, err := st.ListRequests(ctx, store.RequestFilter{Limit: store.MaxListLimit})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range page.Requests {
		if r.State.Terminal() {
			continue
		}
		leases, err := st.ListLeases(ctx, store.LeaseFilter{RequestID: r.ID})
		if err != nil {
			t.Fatal(err)
		}
		held := false
		for _, l := range leases {
			held = held || (l.State == store.LeaseActive && l.ExpiresAt.After(time.Now()))
		}
		if r.State != store.RequestActive || !held {
			t.Errorf("request %s: got %s without a live lease; want a terminal state", r.ID, r.State)
		}
	}
	if _, err := store.VerifyStoredAudit(ctx, st); err != nil {
		t.Errorf("audit chain: %v", err)
	}
}

// openSQLite2 opens the SQLite database a broker process left behind.
func openSQLite2(t *testing.T, path string) store.Store {
	t.Helper()
	st, err := store.OpenSQLite(context.Background(), path, store.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
