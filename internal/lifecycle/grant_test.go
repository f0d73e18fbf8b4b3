package lifecycle_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/azure"
	"github.com/elevate-dev/elevate/internal/emulator"
	"github.com/elevate-dev/elevate/internal/lifecycle"
)

func TestGrantUsesDeterministicNames(t *testing.T) {
	te := startEnv(t, emulator.Config{})
	r := te.newRun(t, fastOptions())
	pairs := []access.Pair{pair(t, roleSecretsOfficer, vaultScope), pair(t, roleReader, storageScope)}
	req := te.request(t, pairs...)
	roles := r.roles(t, pairs)

	var seen []emulator.RoleAssignment
	snapshot := funcAction{name: "snapshot", run: func(context.Context) (lifecycle.ActionResult, error) {
		seen = te.temporaryAssignments(req.ID)
		return lifecycle.ActionResult{}, nil
	}}
	res, err := r.engine.Run(context.Background(), req, roles, snapshot, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}

	// The names are a function of the request alone, so a second plan (a
	// retry, or a crash recovery) finds the same assignments.
	again := lifecycle.PlanGrants(req, roles)
	if len(seen) != len(pairs) {
		t.Fatalf("assignments during the action: got %d; want %d", len(seen), len(pairs))
	}
	for i, g := range res.Grants {
		want := access.AssignmentName(req.ID, req.Principal.ID, pairs[i].RoleID, pairs[i].Scope)
		if g.AssignmentName != want {
			t.Errorf("grant %d name: got %q; want %q", i, g.AssignmentName, want)
		}
		if again[i].AssignmentName != want {
			t.Errorf("grant %d name on a second plan: got %q; want %q", i, again[i].AssignmentName, want)
		}
		if !strings.HasSuffix(g.AssignmentID, "/roleAssignments/"+want) {
			t.Errorf("grant %d id: got %q; want it to end in the name %q", i, g.AssignmentID, want)
		}
	}
	for _, a := range seen {
		if a.PrincipalType != access.PrincipalServicePrincipal {
			t.Errorf("assignment %s principalType: got %q; want %q", a.Name, a.PrincipalType, access.PrincipalServicePrincipal)
		}
	}
}

func TestGrantSendsPrincipalType(t *testing.T) {
	te := startEnv(t, emulator.Config{})
	r := te.newRun(t, fastOptions())
	pairs := []access.Pair{pair(t, roleReader, storageScope)}
	req := te.request(t, pairs...)
	if _, err := r.engine.Run(context.Background(), req, r.roles(t, pairs), noopAction, nil); err != nil {
		t.Fatalf("Run: %v", err)
	}
	puts := te.rec.matching(http.MethodPut, `roleAssignments/`)
	if len(puts) != 1 {
		t.Fatalf("role assignment PUTs: got %d; want 1", len(puts))
	}
	var body struct {
		Properties struct {
			PrincipalType string `json:"principalType"`
			PrincipalID   string `json:"principalId"`
		} `json:"properties"`
	}
	if err := json.Unmarshal([]byte(puts[0].Body), &body); err != nil {
		t.Fatalf("decode PUT body %q: %v", puts[0].Body, err)
	}
	if body.Properties.PrincipalType != access.PrincipalServicePrincipal {
		t.Errorf("principalType in PUT body: got %q; want %q", body.Properties.PrincipalType, access.PrincipalServicePrincipal)
	}
	if body.Properties.PrincipalID != te.caller.ObjectID {
		t.Errorf("principalId in PUT body: got %q; want %q", body.Properties.PrincipalID, te.caller.ObjectID)
	}
}

func TestGrantWaitsForPrincipalReplication(t *testing.T) {
	tests := []struct {
		name        string
		replication time.Duration
		wait        time.Duration
		wantErr     bool
	}{
		{name: "replicated within wait", replication: 150 * time.Millisecond, wait: 10 * time.Second},
		{name: "never replicated in time", replication: time.Hour, wait: 100 * time.Millisecond, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			te := startEnv(t, emulator.Config{Seed: seedWithOpenDelegation(), ReplicationDelay: tt.replication})
			fresh := emulator.Principal{ObjectID: uuid.NewString(), AppID: uuid.NewString(),
				DisplayName: "new-deployer", Type: emulator.PrincipalServicePrincipal}
			if err := te.srv.AddPrincipal(fresh); err != nil {
				t.Fatalf("AddPrincipal: %v", err)
			}
			opts := fastOptions()
			opts.PrincipalWait = tt.wait
			r := te.newRun(t, opts)
			pairs := []access.Pair{pair(t, roleReader, storageScope)}
			req := te.request(t, pairs...)
			req.Principal = access.Principal{ID: fresh.ObjectID, Type: access.PrincipalServicePrincipal}

			res, err := r.engine.Run(context.Background(), req, r.roles(t, pairs), noopAction, nil)
			notFound := 0
			for _, ex := range te.rec.matching(http.MethodPut, `roleAssignments/`) {
				if ex.Status == http.StatusBadRequest {
					notFound++
				}
			}
			if notFound == 0 {
				t.Errorf("PrincipalNotFound answers: got 0; want at least 1 (replication delay not exercised)")
			}
			if left := te.temporaryAssignments(req.ID); len(left) != 0 {
				t.Errorf("assignments left: got %d; want 0", len(left))
			}
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				if !res.Grants[0].Verified {
					t.Errorf("grant verified as removed: got false; want true")
				}
				return
			}
			if !errors.Is(err, lifecycle.ErrGrant) {
				t.Fatalf("Run error: got %v; want it to wrap ErrGrant", err)
			}
			if !errors.Is(err, azure.ErrPrincipalNotFound) {
				t.Errorf("Run error: got %v; want it to wrap azure.ErrPrincipalNotFound", err)
			}
			for _, hint := range []string{fresh.ObjectID, "object id", "client) id", "--principal-id"} {
				if !strings.Contains(err.Error(), hint) {
					t.Errorf("error %q: want it to mention %q", err, hint)
				}
			}
		})
	}
}

// seedWithOpenDelegation returns the demo seed without the conditions on
// the pipeline's standing assignments, so it may grant roles to other
// principals too.
func seedWithOpenDelegation() emulator.Seed {
	seed := emulator.DefaultSeed()
	for i := range seed.RoleAssignments {
		seed.RoleAssignments[i].Condition = ""
		seed.RoleAssignments[i].ConditionVersion = ""
	}
	return seed
}

// foreignAssignment is the pipeline's own standing Reader assignment on the
// storage account, made by someone else before the run.
const foreignAssignment = "4c1f0a2b-3d4e-4f5a-8b6c-7d8e9f0a1b2c"

func seedWithForeignReader() emulator.Seed {
	seed := emulator.DefaultSeed()
	seed.RoleAssignments = append(seed.RoleAssignments, emulator.SeedAssignment{
		Name:        foreignAssignment,
		Scope:       storageScope,
		RoleName:    "Reader",
		PrincipalID: seedPrincipalID(seed, pipelineName),
		Description: "standing access granted by the platform team",
	})
	return seed
}

func seedPrincipalID(seed emulator.Seed, name string) string {
	for _, p := range seed.Principals {
		if p.DisplayName == name {
			return p.ObjectID
		}
	}
	return ""
}

func TestGrantAdoptsExistingAssignment(t *testing.T) {
	te := startEnv(t, emulator.Config{Seed: seedWithForeignReader()})
	r := te.newRun(t, fastOptions())
	pairs := []access.Pair{pair(t, roleSecretsOfficer, vaultScope), pair(t, roleReader, storageScope)}
	req := te.request(t, pairs...)

	res, err := r.engine.Run(context.Background(), req, r.roles(t, pairs), noopAction, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}

	owned, adopted := res.Grants[0], res.Grants[1]
	if owned.PreExisting {
		t.Errorf("vault grant pre-existing: got true; want false")
	}
	if !owned.Verified {
		t.Errorf("vault grant removal verified: got false; want true")
	}
	if !adopted.PreExisting {
		t.Errorf("storage grant pre-existing: got false; want true")
	}
	if !strings.HasSuffix(adopted.AssignmentID, foreignAssignment) {
		t.Errorf("adopted assignment id: got %q; want the foreign %q", adopted.AssignmentID, foreignAssignment)
	}
	if adopted.Revoked {
		t.Errorf("adopted grant revoked: got true; want false")
	}
	if n := len(te.rec.matching(http.MethodDelete, foreignAssignment)); n != 0 {
		t.Errorf("DELETEs of the foreign assignment: got %d; want 0", n)
	}
	survives := false
	for _, a := range te.srv.RoleAssignments() {
		if a.Name == foreignAssignment {
			survives = true
		}
	}
	if !survives {
		t.Errorf("foreign assignment after the run: got gone; want it left in place")
	}

	// The audit log records the adoption on every record after the grant
	// that lists pairs.
	for _, rec := range r.records(t) {
		if rec.Event == "request" {
			continue // written before any Azure call
		}
		for _, p := range rec.Pairs {
			if p.Scope == storageScope && !p.PreExisting {
				t.Errorf("%s record, storage pair pre_existing: got false; want true", rec.Event)
			}
			if p.Scope == storageScope && !strings.HasSuffix(p.AssignmentID, foreignAssignment) {
				t.Errorf("%s record, storage pair assignment id: got %q; want the foreign one", rec.Event, p.AssignmentID)
			}
		}
	}
}

func TestGrantRePutIsIdempotent(t *testing.T) {
	te := startEnv(t, emulator.Config{})
	r := te.newRun(t, fastOptions())
	ctx := context.Background()
	pairs := []access.Pair{pair(t, roleReader, storageScope)}
	req := te.request(t, pairs...)
	grants := lifecycle.PlanGrants(req, r.roles(t, pairs))

	// A second GrantAll is what a retry after a lost response does.
	for attempt := 1; attempt <= 2; attempt++ {
		if err := r.engine.GrantAll(ctx, req, grants); err != nil {
			t.Fatalf("GrantAll attempt %d: %v", attempt, err)
		}
		if grants[0].PreExisting {
			t.Errorf("attempt %d: own assignment adopted as pre-existing; want it owned", attempt)
		}
	}
	if got := te.temporaryAssignments(req.ID); len(got) != 1 {
		t.Errorf("assignments after two grants: got %d; want 1", len(got))
	}
	puts := te.rec.matching(http.MethodPut, `roleAssignments/`)
	if len(puts) != 2 || puts[0].Status != http.StatusCreated || puts[1].Status != http.StatusOK {
		t.Errorf("PUT statuses: got %v; want [201 200]", statuses(puts))
	}
	if err := r.engine.RevokeAll(ctx, req, grants); err != nil {
		t.Fatalf("RevokeAll: %v", err)
	}
	if got := te.temporaryAssignments(req.ID); len(got) != 0 {
		t.Errorf("assignments after revoke: got %d; want 0", len(got))
	}
}

func statuses(exs []exchange) []int {
	out := make([]int, len(exs))
	for i, ex := range exs {
		out[i] = ex.Status
	}
	return out
}

// seedWithStorageAccounts returns the demo seed with n more storage accounts
// in the demo resource group, where the pipeline may write assignments.
func seedWithStorageAccounts(n int) (emulator.Seed, []string) {
	seed := emulator.DefaultSeed()
	rg := &seed.Subscriptions[0].ResourceGroups[0]
	scopes := make([]string, n)
	for i := range n {
		name := fmt.Sprintf("stbench%03d", i)
		rg.Resources = append(rg.Resources, emulator.Resource{Type: "Microsoft.Storage/storageAccounts", Name: name})
		scopes[i] = demoGroup + "/providers/Microsoft.Storage/storageAccounts/" + name
	}
	return seed, scopes
}

func TestGrantConcurrencyIsBounded(t *testing.T) {
	const bound = 3
	seed, scopes := seedWithStorageAccounts(12)
	te := startEnv(t, emulator.Config{Seed: seed})
	te.setFaults(t, emulator.FaultRule{Method: http.MethodPut, Path: `roleAssignments`, Latency: 30 * time.Millisecond})
	opts := fastOptions()
	opts.Concurrency = bound
	r := te.newRun(t, opts)
	var pairs []access.Pair
	for _, s := range scopes {
		pairs = append(pairs, pair(t, roleReader, s))
	}
	req := te.request(t, pairs...)

	if _, err := r.engine.Run(context.Background(), req, r.roles(t, pairs), noopAction, nil); err != nil {
		t.Fatalf("Run: %v", err)
	}
	got := te.rec.maxPutsInFlight()
	if got > bound {
		t.Errorf("role assignment PUTs in flight at once: got %d; want at most %d", got, bound)
	}
	if got < 2 {
		t.Errorf("role assignment PUTs in flight at once: got %d; want at least 2 (grants ran one by one)", got)
	}
	if n := len(te.rec.matching(http.MethodPut, `roleAssignments/`)); n != len(pairs) {
		t.Errorf("role assignment PUTs: got %d; want %d", n, len(pairs))
	}
}

func TestGrantHonoursRetryAfter(t *testing.T) {
	te := startEnv(t, emulator.Config{})
	te.setFaults(t, emulator.FaultRule{Method: http.MethodPut, Path: `roleAssignments`,
		Status: http.StatusTooManyRequests, RetryAfter: 1, Times: 1})
	r := te.newRun(t, fastOptions())
	pairs := []access.Pair{pair(t, roleReader, storageScope)}
	req := te.request(t, pairs...)

	if _, err := r.engine.Run(context.Background(), req, r.roles(t, pairs), noopAction, nil); err != nil {
		t.Fatalf("Run: %v", err)
	}
	puts := te.rec.matching(http.MethodPut, `roleAssignments/`)
	if len(puts) != 2 {
		t.Fatalf("PUTs: got %d (statuses %v); want 2", len(puts), statuses(puts))
	}
	if puts[0].Status != http.StatusTooManyRequests || puts[1].Status != http.StatusCreated {
		t.Errorf("PUT statuses: got %v; want [429 201]", statuses(puts))
	}
	// A lower bound only: the retry must not come before Retry-After ends.
	if gap := puts[1].Sent.Sub(puts[0].Sent); gap < time.Second {
		t.Errorf("retry after 429 with Retry-After: 1 came %v later; want at least 1s", gap)
	}
}
