package storetest

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/store"
)

// pathTo lists the transitions from pending to each non-terminal state.
var pathTo = map[store.RequestState][]store.RequestState{
	store.RequestPending:      nil,
	store.RequestApproved:     {store.RequestApproved},
	store.RequestActive:       {store.RequestApproved, store.RequestActive},
	store.RequestRevoking:     {store.RequestApproved, store.RequestActive, store.RequestRevoking},
	store.RequestRevokeFailed: {store.RequestApproved, store.RequestActive, store.RequestRevoking, store.RequestRevokeFailed},
}

func testRequestTransitions(t *testing.T, e *env) {
	edges := []struct{ from, to store.RequestState }{
		{store.RequestPending, store.RequestApproved},
		{store.RequestPending, store.RequestDenied},
		{store.RequestPending, store.RequestExpired},
		{store.RequestPending, store.RequestCancelled},
		{store.RequestApproved, store.RequestActive},
		{store.RequestApproved, store.RequestGrantFailed},
		{store.RequestActive, store.RequestRevoking},
		{store.RequestRevoking, store.RequestRevoked},
		{store.RequestRevoking, store.RequestRevokeFailed},
		{store.RequestRevokeFailed, store.RequestRevoked},
		{store.RequestRevokeFailed, store.RequestRevoking},
	}
	for _, edge := range edges {
		t.Run(string(edge.from)+" to "+string(edge.to), func(t *testing.T) {
			r := e.create(sampleRequest(string(edge.from) + string(edge.to)))
			r = e.moveTo(r.ID, pathTo[edge.from]...)
			before := r.Version

			got, err := e.store.TransitionRequest(e.ctx, r.ID, []store.RequestState{edge.from}, edge.to, store.RequestUpdate{})
			if err != nil {
				t.Fatalf("transition: %v", err)
			}
			if got.State != edge.to {
				t.Errorf("state: got %s; want %s", got.State, edge.to)
			}
			if got.Version != before+1 {
				t.Errorf("version: got %d; want %d", got.Version, before+1)
			}
			if gotEnded := !got.EndedAt.IsZero(); gotEnded != edge.to.Terminal() {
				t.Errorf("ended_at set: got %v; want %v", gotEnded, edge.to.Terminal())
			}

			// The same transition again finds the request in edge.to.
			_, err = e.store.TransitionRequest(e.ctx, r.ID, []store.RequestState{edge.from}, edge.to, store.RequestUpdate{})
			wantErr(t, "repeated transition", err, store.ErrConflict)
			stored, err := e.store.GetRequest(e.ctx, r.ID)
			if err != nil {
				t.Fatalf("get request: %v", err)
			}
			if stored.State != edge.to || stored.Version != got.Version {
				t.Errorf("after conflict: got %s v%d; want %s v%d", stored.State, stored.Version, edge.to, got.Version)
			}
		})
	}

	_, err := e.store.TransitionRequest(e.ctx, "00000000-0000-0000-0000-000000000000",
		[]store.RequestState{store.RequestPending}, store.RequestApproved, store.RequestUpdate{})
	wantErr(t, "transition of missing request", err, store.ErrNotFound)

	r := e.create(sampleRequest("several from"))
	got, err := e.store.TransitionRequest(e.ctx, r.ID,
		[]store.RequestState{store.RequestApproved, store.RequestPending}, store.RequestGrantFailed, store.RequestUpdate{})
	wantErr(t, "pending to grant_failed", err, store.ErrInvalid)
	got, err = e.store.TransitionRequest(e.ctx, r.ID,
		[]store.RequestState{store.RequestRevoking, store.RequestRevokeFailed}, store.RequestRevoked, store.RequestUpdate{})
	wantErr(t, "pending matched against revoking or revoke_failed", err, store.ErrConflict)
	if got.ID != "" {
		t.Errorf("request returned with a conflict: got %q; want empty", got.ID)
	}
}

func testInvalidEdges(t *testing.T, e *env) {
	r := e.create(sampleRequest("invalid edges"))
	for _, from := range store.RequestStates {
		for _, to := range store.RequestStates {
			if from.CanTransition(to) {
				continue
			}
			_, err := e.store.TransitionRequest(e.ctx, r.ID, []store.RequestState{from}, to, store.RequestUpdate{})
			wantErr(t, string(from)+" to "+string(to), err, store.ErrInvalid)
		}
	}
	_, err := e.store.TransitionRequest(e.ctx, r.ID, nil, store.RequestApproved, store.RequestUpdate{})
	wantErr(t, "empty from list", err, store.ErrInvalid)
	for _, s := range []store.RequestState{store.RequestDenied, store.RequestExpired,
		store.RequestCancelled, store.RequestRevoked, store.RequestGrantFailed} {
		if !s.Terminal() {
			t.Errorf("%s terminal: got false; want true", s)
		}
	}
	if store.RequestRevokeFailed.Terminal() {
		t.Errorf("revoke_failed terminal: got true; want false")
	}
}

func testRequestUpdate(t *testing.T, e *env) {
	r := e.create(sampleRequest("update"))
	deadline := e.clock.Now().Add(time.Hour)
	decision := store.Decision{Outcome: store.OutcomeAutoApprove, RuleID: "auto", MaxDuration: time.Hour, BreakGlass: true}
	got, err := e.store.TransitionRequest(e.ctx, r.ID, []store.RequestState{store.RequestPending},
		store.RequestApproved, store.RequestUpdate{Decision: &decision, ApprovalDeadline: deadline})
	if err != nil {
		t.Fatalf("approve: %v", err)
	}
	if !reflect.DeepEqual(got.Decision, decision) {
		t.Errorf("decision: got %+v; want %+v", got.Decision, decision)
	}
	if want := deadline.Truncate(time.Microsecond); !got.ApprovalDeadline.Equal(want) {
		t.Errorf("approval deadline: got %s; want %s", got.ApprovalDeadline, want)
	}

	e.clock.Advance(time.Minute)
	granted := e.clock.Now()
	expires := granted.Add(30 * time.Minute)
	got, err = e.store.TransitionRequest(e.ctx, r.ID, []store.RequestState{store.RequestApproved},
		store.RequestActive, store.RequestUpdate{GrantedAt: granted, ExpiresAt: expires})
	if err != nil {
		t.Fatalf("activate: %v", err)
	}
	if !got.GrantedAt.Equal(granted.Truncate(time.Microsecond)) || !got.ExpiresAt.Equal(expires.Truncate(time.Microsecond)) {
		t.Errorf("granted, expires: got %s, %s; want %s, %s", got.GrantedAt, got.ExpiresAt, granted, expires)
	}
	if !reflect.DeepEqual(got.Decision, decision) {
		t.Errorf("decision after update without one: got %+v; want %+v", got.Decision, decision)
	}
	if !got.UpdatedAt.Equal(granted.Truncate(time.Microsecond)) {
		t.Errorf("updated_at: got %s; want %s", got.UpdatedAt, granted)
	}

	e.moveTo(r.ID, store.RequestRevoking)
	failure := "delete role assignment: 500"
	got, err = e.store.TransitionRequest(e.ctx, r.ID, []store.RequestState{store.RequestRevoking},
		store.RequestRevokeFailed, store.RequestUpdate{Error: &failure})
	if err != nil {
		t.Fatalf("revoke failed: %v", err)
	}
	if got.Error != failure {
		t.Errorf("error: got %q; want %q", got.Error, failure)
	}
	if !got.EndedAt.IsZero() {
		t.Errorf("ended_at of revoke_failed: got %s; want unset", got.EndedAt)
	}
	got, err = e.store.TransitionRequest(e.ctx, r.ID, []store.RequestState{store.RequestRevokeFailed},
		store.RequestRevoked, store.RequestUpdate{})
	if err != nil {
		t.Fatalf("revoked: %v", err)
	}
	if got.Error != failure {
		t.Errorf("error kept without update: got %q; want %q", got.Error, failure)
	}
	if got.EndedAt.IsZero() {
		t.Errorf("ended_at of revoked: got unset; want now")
	}
}

func testCreateValidation(t *testing.T, e *env) {
	tests := []struct {
		name   string
		change func(r *store.Request)
	}{
		{"missing requester", func(r *store.Request) { r.Requester = "" }},
		{"missing principal", func(r *store.Request) { r.Principal.ID = "" }},
		{"no pairs", func(r *store.Request) { r.Pairs = nil }},
		{"pair without scope", func(r *store.Request) { r.Pairs = []store.Pair{{RoleID: readerRole}} }},
		{"missing hash", func(r *store.Request) { r.Hash = "" }},
		{"zero duration", func(r *store.Request) { r.Duration = 0 }},
		{"id not a uuid", func(r *store.Request) { r.ID = "req-1" }},
		{"initial state approved", func(r *store.Request) { r.State = store.RequestApproved }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := sampleRequest(tc.name)
			tc.change(&r)
			_, _, err := e.store.CreateRequest(e.ctx, r)
			wantErr(t, "create", err, store.ErrInvalid)
		})
	}

	r := e.create(sampleRequest("round trip"))
	got, err := e.store.GetRequest(e.ctx, r.ID)
	if err != nil {
		t.Fatalf("get request: %v", err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Errorf("round trip:\ngot  %+v\nwant %+v", got, r)
	}
	if got.State != store.RequestPending || got.Version != 1 {
		t.Errorf("new request: got %s v%d; want pending v1", got.State, got.Version)
	}
	_, _, err = e.store.CreateRequest(e.ctx, r)
	wantErr(t, "create with a used id", err, store.ErrDuplicate)
	_, err = e.store.GetRequest(e.ctx, "not-a-request")
	wantErr(t, "get missing", err, store.ErrNotFound)
}

func testIdempotentCreate(t *testing.T, e *env) {
	r := sampleRequest("idempotent")
	r.IdempotencyKey = "run-42-attempt-1"
	first := e.create(r)

	again, created, err := e.store.CreateRequest(e.ctx, r)
	if err != nil {
		t.Fatalf("create again: %v", err)
	}
	if created || again.ID != first.ID {
		t.Errorf("create again: got created=%v id %q; want created=false id %q", created, again.ID, first.ID)
	}

	other := r
	other.Hash = hashOf("something else")
	_, _, err = e.store.CreateRequest(e.ctx, other)
	wantErr(t, "same key, other content", err, store.ErrConflict)

	otherRequester := r
	otherRequester.Requester = "repo:org/other:environment:prod"
	third := e.create(otherRequester)
	if third.ID == first.ID {
		t.Errorf("other requester, same key: got id %q; want a new request", third.ID)
	}

	noKey := sampleRequest("no key")
	a, b := e.create(noKey), e.create(noKey)
	if a.ID == b.ID {
		t.Errorf("two creates without key: got one id %q; want two requests", a.ID)
	}
}

func testConcurrentCreate(t *testing.T, e *env) {
	const workers = 8
	r := sampleRequest("concurrent create")
	r.IdempotencyKey = "race"
	stores := e.stores(workers)
	var createdCount atomic.Int32
	ids := make([]string, workers)
	runParallel(workers, func(i int) {
		got, created, err := stores[i].CreateRequest(e.ctx, r)
		if err != nil {
			t.Errorf("worker %d: %v", i, err)
			return
		}
		if created {
			createdCount.Add(1)
		}
		ids[i] = got.ID
	})
	if n := createdCount.Load(); n != 1 {
		t.Errorf("requests created: got %d; want 1", n)
	}
	for i, id := range ids {
		if id != ids[0] {
			t.Errorf("worker %d got id %q; want %q", i, id, ids[0])
		}
	}
}

func testListRequests(t *testing.T, e *env) {
	const otherRole = "b24988ac-6180-42a0-ab88-20f7382dd24c"
	var all []store.Request
	for i := range 5 {
		r := sampleRequest(label("list", i))
		if i%2 == 1 {
			r.Requester = "repo:org/other:ref:refs/heads/main"
			r.Principal.ID = "99999999-2222-3333-4444-555555555555"
			r.Pairs = []store.Pair{{RoleID: strings.ToUpper(otherRole), Scope: scopeB + "/providers/Microsoft.KeyVault/vaults/kv_1"}}
		}
		all = append(all, e.create(r))
		e.clock.Advance(time.Second)
	}
	e.moveTo(all[0].ID, store.RequestApproved)
	e.moveTo(all[1].ID, store.RequestDenied)

	ids := func(rs []store.Request) string {
		var out []string
		for _, r := range rs {
			for i, a := range all {
				if a.ID == r.ID {
					out = append(out, label("r", i))
				}
			}
		}
		return strings.Join(out, ",")
	}
	tests := []struct {
		name   string
		filter store.RequestFilter
		want   string
	}{
		{"everything newest first", store.RequestFilter{}, "r-4,r-3,r-2,r-1,r-0"},
		{"by state", store.RequestFilter{States: []store.RequestState{store.RequestApproved, store.RequestDenied}}, "r-1,r-0"},
		{"by requester", store.RequestFilter{Requester: "repo:org/other:ref:refs/heads/main"}, "r-3,r-1"},
		{"by principal", store.RequestFilter{PrincipalID: principalID}, "r-4,r-2,r-0"},
		{"by role any case", store.RequestFilter{RoleID: otherRole}, "r-3,r-1"},
		{"by scope prefix any case", store.RequestFilter{ScopePrefix: strings.ToUpper(scopeB)}, "r-3,r-1"},
		{"scope prefix underscore literal", store.RequestFilter{ScopePrefix: scopeB + "/providers/Microsoft.KeyVault/vaults/kv_"}, "r-3,r-1"},
		{"scope prefix wildcard literal", store.RequestFilter{ScopePrefix: scopeB + "/providers/Microsoft.KeyVault/vaults/kv%"}, ""},
		{"created range", store.RequestFilter{CreatedAfter: all[1].CreatedAt, CreatedBefore: all[3].CreatedAt}, "r-2,r-1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			page, err := e.store.ListRequests(e.ctx, tc.filter)
			if err != nil {
				t.Fatalf("list: %v", err)
			}
			if got := ids(page.Requests); got != tc.want {
				t.Errorf("got %q; want %q", got, tc.want)
			}
			if page.Next != "" {
				t.Errorf("next cursor of a full listing: got %q; want empty", page.Next)
			}
		})
	}

	t.Run("pages by cursor", func(t *testing.T) {
		var got []string
		filter := store.RequestFilter{Limit: 2}
		for range 5 {
			page, err := e.store.ListRequests(e.ctx, filter)
			if err != nil {
				t.Fatalf("list: %v", err)
			}
			got = append(got, ids(page.Requests))
			if page.Next == "" {
				break
			}
			filter.Cursor = page.Next
		}
		if want := "r-4,r-3|r-2,r-1|r-0"; strings.Join(got, "|") != want {
			t.Errorf("pages: got %q; want %q", strings.Join(got, "|"), want)
		}
	})

	_, err := e.store.ListRequests(e.ctx, store.RequestFilter{Cursor: "not a cursor"})
	wantErr(t, "bad cursor", err, store.ErrInvalid)
	_, err = e.store.ListRequests(e.ctx, store.RequestFilter{Limit: store.MaxListLimit + 1})
	wantErr(t, "limit over maximum", err, store.ErrInvalid)
}

func testApprovals(t *testing.T, e *env) {
	r := e.create(sampleRequest("approvals"))
	first := store.Approval{RequestID: r.ID, Approver: "alice", Groups: []string{"sre"},
		Verdict: store.VerdictApprove, Comment: "ok", RequestHash: r.Hash}
	if _, err := e.store.AddApproval(e.ctx, first); err != nil {
		t.Fatalf("add approval: %v", err)
	}
	e.clock.Advance(time.Second)
	_, err := e.store.AddApproval(e.ctx, first)
	wantErr(t, "second approval by alice", err, store.ErrDuplicate)

	stale := first
	stale.Approver, stale.RequestHash = "bob", hashOf("an older version")
	_, err = e.store.AddApproval(e.ctx, stale)
	wantErr(t, "approval bound to another hash", err, store.ErrConflict)

	second := first
	second.Approver, second.Verdict, second.Groups = "carol", store.VerdictDeny, nil
	if _, err := e.store.AddApproval(e.ctx, second); err != nil {
		t.Fatalf("add second approval: %v", err)
	}

	bad := first
	bad.Approver, bad.Verdict = "dave", "maybe"
	_, err = e.store.AddApproval(e.ctx, bad)
	wantErr(t, "invalid verdict", err, store.ErrInvalid)
	missing := first
	missing.RequestID = "00000000-0000-0000-0000-000000000000"
	_, err = e.store.AddApproval(e.ctx, missing)
	wantErr(t, "missing request", err, store.ErrNotFound)

	list, err := e.store.ListApprovals(e.ctx, r.ID)
	if err != nil {
		t.Fatalf("list approvals: %v", err)
	}
	var got []string
	for _, a := range list {
		got = append(got, a.Approver+":"+a.Verdict+":"+strings.Join(a.Groups, "+"))
	}
	if want := "alice:approve:sre,carol:deny:"; strings.Join(got, ",") != want {
		t.Errorf("approvals: got %q; want %q", strings.Join(got, ","), want)
	}

	e.moveTo(r.ID, store.RequestDenied)
	late := first
	late.Approver = "erin"
	_, err = e.store.AddApproval(e.ctx, late)
	wantErr(t, "approval after the request ended", err, store.ErrConflict)
}

func testConcurrentTransition(t *testing.T, e *env) {
	const workers = 12
	r := e.create(sampleRequest("race"))
	stores := e.stores(workers)
	var wins, conflicts atomic.Int32
	runParallel(workers, func(i int) {
		// Half approve and half deny: exactly one of all of them wins.
		to := store.RequestApproved
		if i%2 == 1 {
			to = store.RequestDenied
		}
		_, err := stores[i].TransitionRequest(e.ctx, r.ID, []store.RequestState{store.RequestPending}, to, store.RequestUpdate{})
		switch {
		case err == nil:
			wins.Add(1)
		case errors.Is(err, store.ErrConflict):
			conflicts.Add(1)
		default:
			t.Errorf("worker %d: %v", i, err)
		}
	})
	if wins.Load() != 1 || conflicts.Load() != workers-1 {
		t.Errorf("wins, conflicts: got %d, %d; want 1, %d", wins.Load(), conflicts.Load(), workers-1)
	}
	got, err := e.store.GetRequest(e.ctx, r.ID)
	if err != nil {
		t.Fatalf("get request: %v", err)
	}
	if got.Version != 2 {
		t.Errorf("version: got %d; want 2", got.Version)
	}
}

func testTimesUTC(t *testing.T, e *env) {
	r := sampleRequest("utc")
	r.ApprovalDeadline = time.Date(2030, 1, 2, 10, 0, 0, 999, time.FixedZone("CET", 3600))
	got := e.create(r)
	stored, err := e.store.GetRequest(e.ctx, got.ID)
	if err != nil {
		t.Fatalf("get request: %v", err)
	}
	for name, v := range map[string]time.Time{"created_at": stored.CreatedAt, "approval_deadline": stored.ApprovalDeadline} {
		if v.Location() != time.UTC {
			t.Errorf("%s location: got %s; want UTC", name, v.Location())
		}
	}
	if want := Epoch.Truncate(time.Microsecond); !stored.CreatedAt.Equal(want) {
		t.Errorf("created_at: got %s; want %s", stored.CreatedAt.Format(time.RFC3339Nano), want.Format(time.RFC3339Nano))
	}
	if want := time.Date(2030, 1, 2, 9, 0, 0, 0, time.UTC); !stored.ApprovalDeadline.Equal(want) {
		t.Errorf("approval_deadline: got %s; want %s", stored.ApprovalDeadline, want)
	}
	if _, err := json.Marshal(stored); err != nil {
		t.Errorf("encode stored request: %v", err)
	}
}
