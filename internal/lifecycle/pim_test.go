package lifecycle_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/azure"
	"github.com/elevate-dev/elevate/internal/emulator"
	"github.com/elevate-dev/elevate/internal/lifecycle"
)

func TestPIMBackendsGrantActRevoke(t *testing.T) {
	tests := []struct {
		name     string
		backend  string
		role     string
		scope    string
		duration time.Duration
		active   func(pe *pimEnv, t *testing.T) bool
		deferred string // detail of the revoke_deferred record, "" for none
	}{
		{"activate retries deactivation", lifecycle.BackendPIMActivate, roleReader, vaultScope, 10 * time.Minute,
			func(pe *pimEnv, t *testing.T) bool { return pe.armActive(t, vaultScope, pipelineOID, roleReader) }, "retrying once"},
		{"activate left to expire", lifecycle.BackendPIMActivate, roleReader, vaultScope, 5 * time.Minute,
			func(pe *pimEnv, t *testing.T) bool { return pe.armActive(t, vaultScope, pipelineOID, roleReader) }, "leaves it to expire"},
		{"assign removes early", lifecycle.BackendPIMAssign, roleReader, storageScope, 10 * time.Minute,
			func(pe *pimEnv, t *testing.T) bool { return pe.armActive(t, storageScope, pipelineOID, roleReader) }, ""},
		{"entra self activation", lifecycle.BackendEntraRole, entraGlobalReader, tenantRoot, 10 * time.Minute,
			func(pe *pimEnv, t *testing.T) bool { return pe.entraActive(t, pipelineOID, entraGlobalReader) }, "retrying once"},
		{"entra admin assignment", lifecycle.BackendEntraRole, entraAppAdmin, tenantRoot, 10 * time.Minute,
			func(pe *pimEnv, t *testing.T) bool { return pe.entraActive(t, pipelineOID, entraAppAdmin) }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pe := startPIMEnv(t)
			r := pe.newPIMRun(t, pe.pimConfig(0))
			p := pair(t, tc.role, tc.scope)
			req := pe.pimRequest(t, tc.duration, p)
			routed(t, r, req, tc.backend)
			activeDuring := false
			action := funcAction{name: "check", run: func(context.Context) (lifecycle.ActionResult, error) {
				activeDuring = tc.active(pe, t)
				return lifecycle.ActionResult{}, nil
			}}
			res, err := r.engine.Run(context.Background(), req, r.roles(t, req.Pairs), action, nil)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if !activeDuring {
				t.Errorf("active during the action: got false; want true")
			}
			if tc.active(pe, t) {
				t.Errorf("active after Run: got true; want false")
			}
			g := res.Grants[0]
			if g.Backend != tc.backend {
				t.Errorf("grant backend: got %q; want %q", g.Backend, tc.backend)
			}
			if !g.Created || !g.Verified || g.PreExisting {
				t.Errorf("grant: created %v verified %v pre-existing %v; want true true false", g.Created, g.Verified, g.PreExisting)
			}
			if g.EndsAt.IsZero() {
				t.Errorf("EndsAt: got zero; want the platform's end time")
			}
			records := r.records(t)
			chosen := recordsOf(records, "backend")
			if len(chosen) != 1 || chosen[0].Pairs[0].Backend != tc.backend || !strings.HasPrefix(chosen[0].Detail, tc.backend+": ") {
				t.Errorf("backend records: got %+v; want one naming %s", chosen, tc.backend)
			}
			deferred := recordsOf(records, "revoke_deferred")
			switch {
			case tc.deferred == "" && len(deferred) != 0:
				t.Errorf("revoke_deferred records: got %d; want none", len(deferred))
			case tc.deferred != "" && (len(deferred) != 1 || !strings.Contains(deferred[0].Detail, tc.deferred)):
				t.Errorf("revoke_deferred records: got %+v; want one containing %q", deferred, tc.deferred)
			}
		})
	}
}

func TestAutoBackendBothWays(t *testing.T) {
	pe := startPIMEnv(t)
	r := pe.newPIMRun(t, pe.pimConfig(0))
	eligible := pair(t, roleReader, vaultScope)
	plain := pair(t, roleSecretsOfficer, vaultScope)
	req := pe.pimRequest(t, 10*time.Minute, eligible, plain)
	choices := routed(t, r, req, lifecycle.BackendAuto)
	if choices[0].Backend != lifecycle.BackendPIMActivate || !strings.Contains(choices[0].Reason, "eligible schedule") {
		t.Errorf("eligible pair: got %+v; want pim-activate for an eligible schedule", choices[0])
	}
	if choices[1].Backend != lifecycle.BackendRBAC || !strings.Contains(choices[1].Reason, "no eligible") {
		t.Errorf("plain pair: got %+v; want rbac for no eligibility", choices[1])
	}
	res, err := r.engine.Run(context.Background(), req, r.roles(t, req.Pairs), noopAction, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	for i, want := range []string{lifecycle.BackendPIMActivate, lifecycle.BackendRBAC} {
		if got := res.Grants[i].Backend; got != want {
			t.Errorf("grant %d backend: got %q; want %q", i, got, want)
		}
		if !res.Grants[i].Verified {
			t.Errorf("grant %d verified: got false; want true", i)
		}
	}
	if left := pe.temporaryAssignments(req.ID); len(left) != 0 {
		t.Errorf("temporary assignments left: got %d; want 0", len(left))
	}

	// Another principal cannot self-activate, so auto picks rbac for it.
	other := req
	other.Principal = access.Principal{ID: otherSPOID, Type: access.PrincipalServicePrincipal}
	choices, err = r.engine.ChooseBackends(context.Background(), other, lifecycle.BackendAuto)
	if err != nil {
		t.Fatalf("ChooseBackends: %v", err)
	}
	if choices[0].Backend != lifecycle.BackendRBAC {
		t.Errorf("other principal: got %q; want rbac", choices[0].Backend)
	}
}

func TestAuditRecordsNameEachPairBackend(t *testing.T) {
	pe := startPIMEnv(t)
	r := pe.newPIMRun(t, pe.pimConfig(0))
	req := pe.pimRequest(t, 10*time.Minute, pair(t, roleReader, vaultScope), pair(t, roleSecretsOfficer, vaultScope))
	routed(t, r, req, lifecycle.BackendAuto)
	if _, err := r.engine.Run(context.Background(), req, r.roles(t, req.Pairs), noopAction, nil); err != nil {
		t.Fatalf("Run: %v", err)
	}
	records := r.records(t)
	want := []string{lifecycle.BackendPIMActivate, lifecycle.BackendRBAC}
	for _, event := range []string{"request", "grant", "revoke"} {
		found := recordsOf(records, event)
		if len(found) != 1 {
			t.Errorf("%s records: got %d; want 1", event, len(found))
			continue
		}
		if len(found[0].Pairs) != len(want) {
			t.Errorf("%s record pairs: got %d; want %d", event, len(found[0].Pairs), len(want))
			continue
		}
		for i, p := range found[0].Pairs {
			if p.Backend != want[i] {
				t.Errorf("%s record pair %d backend: got %q; want %q", event, i+1, p.Backend, want[i])
			}
		}
	}

	// Each pair's backend record gives auto's reason.
	reasons := map[string]string{}
	for _, rec := range recordsOf(records, "backend") {
		reasons[rec.Pairs[0].RoleID] = rec.Detail
	}
	if got := reasons[roleReader]; !strings.HasPrefix(got, "pim-activate: auto: eligible schedule ") {
		t.Errorf("eligible pair's backend record: got %q; want pim-activate with the eligible schedule", got)
	}
	if got := reasons[roleSecretsOfficer]; !strings.HasPrefix(got, "rbac: auto: no eligible PIM schedule") {
		t.Errorf("plain pair's backend record: got %q; want rbac for no eligibility", got)
	}
}

func TestPIMPreflightRules(t *testing.T) {
	pe := startPIMEnv(t)
	tests := []struct {
		name          string
		backend       string
		role, scope   string
		duration      time.Duration
		justification string
		ticket        string
		principal     access.Principal
		approvalWait  time.Duration
		check         string // the check expected
		failed        bool   // true: it must refuse; false: a warning or pass
		contains      []string
	}{
		{"duration over maximum", lifecycle.BackendPIMActivate, roleKVUser, demoGroup, 2 * time.Hour, "x", "CHG-1", access.Principal{},
			0, "PIM policy ExpirationRule", true, []string{"2h", "1h", "Expiration_EndUser_Assignment"}},
		{"duration under five minutes", lifecycle.BackendPIMActivate, roleReader, vaultScope, 4 * time.Minute, "x", "", access.Principal{},
			0, "PIM policy ExpirationRule", true, []string{"4m", "5m"}},
		{"missing justification", lifecycle.BackendPIMActivate, roleKVUser, demoGroup, 30 * time.Minute, "", "CHG-1", access.Principal{},
			0, "PIM policy JustificationRule", true, []string{"justification"}},
		{"missing ticket", lifecycle.BackendPIMActivate, roleKVUser, demoGroup, 30 * time.Minute, "x", "", access.Principal{},
			0, "PIM policy TicketingRule", true, []string{"ticket", "--ticket"}},
		{"mfa for workload identity", lifecycle.BackendPIMActivate, roleKVReader, demoGroup, 30 * time.Minute, "x", "", access.Principal{},
			0, "PIM policy MfaRule", true, []string{"workload identity"}},
		{"approval without wait", lifecycle.BackendPIMActivate, roleSecretsOfficer, storageScope, 30 * time.Minute, "x", "", access.Principal{},
			0, lifecycle.CheckPIMApproval, true, []string{"Approval_EndUser_Assignment", "--pim-approval-wait"}},
		{"approval with wait", lifecycle.BackendPIMActivate, roleSecretsOfficer, storageScope, 30 * time.Minute, "x", "", access.Principal{},
			time.Hour, lifecycle.CheckPIMApproval, false, []string{"waits up to 1h"}},
		{"not eligible", lifecycle.BackendPIMActivate, roleSecretsOfficer, vaultScope, 30 * time.Minute, "x", "", access.Principal{},
			0, lifecycle.CheckPIMEligibility, true, []string{"no eligible assignment"}},
		{"group cannot activate", lifecycle.BackendPIMActivate, roleContrib, demoGroup, 30 * time.Minute, "x", "",
			access.Principal{ID: pimGroupOID, Type: access.PrincipalGroup}, 0, lifecycle.CheckPIMPrincipal, true, []string{"is a group"}},
		{"another principal cannot activate", lifecycle.BackendPIMActivate, roleReader, vaultScope, 30 * time.Minute, "x", "",
			access.Principal{ID: otherSPOID, Type: access.PrincipalServicePrincipal}, 0, lifecycle.CheckPIMPrincipal, true, []string{"not the caller"}},
		{"assign over admin maximum", lifecycle.BackendPIMAssign, roleReader, storageScope, 200 * 24 * time.Hour, "x", "", access.Principal{},
			0, "PIM policy ExpirationRule", true, []string{"4800h", "4320h", "Expiration_Admin_Assignment"}},
		{"assign within policy", lifecycle.BackendPIMAssign, roleReader, storageScope, 30 * time.Minute, "x", "", access.Principal{},
			0, lifecycle.CheckPIMPolicy, false, []string{"AdminAssign of 30m fits"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := pe.pimConfig(tc.approvalWait)
			r := pe.newPIMRun(t, cfg)
			req := pe.pimRequest(t, tc.duration, pair(t, tc.role, tc.scope))
			req.Justification, req.Metadata.Ticket = tc.justification, tc.ticket
			if tc.principal.ID != "" {
				req.Principal = tc.principal
			}
			choices, err := r.engine.ChooseBackends(context.Background(), req, tc.backend)
			if err != nil {
				t.Fatalf("ChooseBackends: %v", err)
			}
			checks := r.engine.PreflightBackends(context.Background(), req, choices, cfg)
			var found *lifecycle.Check
			for i := range checks {
				if checks[i].Name == tc.check {
					found = &checks[i]
				}
			}
			if found == nil {
				t.Fatalf("checks %+v; want one named %q", checks, tc.check)
			}
			refused := !found.OK && !found.Warning
			if refused != tc.failed {
				t.Errorf("%s refused: got %v; want %v (%s)", tc.check, refused, tc.failed, found.Detail)
			}
			if failed := len(lifecycle.Failed(checks)) > 0; failed != tc.failed {
				t.Errorf("request refused: got %v; want %v (%+v)", failed, tc.failed, lifecycle.Failed(checks))
			}
			for _, s := range tc.contains {
				if !strings.Contains(found.Detail, s) {
					t.Errorf("detail %q; want it to contain %q", found.Detail, s)
				}
			}
		})
	}
}

func TestPendingApprovalCanceledAtDeadline(t *testing.T) {
	pe := startPIMEnv(t)
	r := pe.newPIMRun(t, pe.pimConfig(200*time.Millisecond))
	req := pe.pimRequest(t, 30*time.Minute, pair(t, roleSecretsOfficer, storageScope))
	routed(t, r, req, lifecycle.BackendPIMActivate)
	res, err := r.engine.Run(context.Background(), req, r.roles(t, req.Pairs), noopAction, nil)
	if !errors.Is(err, lifecycle.ErrApprovalTimeout) {
		t.Fatalf("Run: got %v; want ErrApprovalTimeout", err)
	}
	name := res.Grants[0].AssignmentName
	got, gerr := pe.pim.GetRequest(context.Background(), storageScope, name)
	if gerr != nil || got.Status != "Canceled" {
		t.Errorf("request status: got %q (%v); want Canceled", got.Status, gerr)
	}
	polls := pe.rec.matching("GET", `(?i)roleAssignmentScheduleRequests/`+name+`$`)
	if len(polls) < 2 {
		t.Errorf("status polls: got %d; want at least 2", len(polls))
	}

	// A late approval grants nothing.
	if _, aerr := pe.srv.ApprovePIMRequest(name); aerr == nil {
		t.Errorf("late approval: got no error; want one")
	}
	if pe.armActive(t, storageScope, pipelineOID, roleSecretsOfficer) {
		t.Errorf("active after a late approval: got true; want false")
	}
	if res.Grants[0].Created {
		t.Errorf("grant created: got true; want false")
	}
}

func TestPendingApprovalGrantedInTime(t *testing.T) {
	pe := startPIMEnv(t)
	r := pe.newPIMRun(t, pe.pimConfig(time.Hour))
	req := pe.pimRequest(t, 30*time.Minute, pair(t, roleSecretsOfficer, storageScope))
	routed(t, r, req, lifecycle.BackendPIMActivate)
	name := lifecycle.PlanGrants(req, nil)[0].AssignmentName
	approved := make(chan error, 1)
	go func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			_, err := pe.srv.ApprovePIMRequest(name)
			if err == nil || time.Now().After(deadline) {
				approved <- err
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	res, err := r.engine.Run(context.Background(), req, r.roles(t, req.Pairs), noopAction, nil)
	if aerr := <-approved; aerr != nil {
		t.Fatalf("approve: %v", aerr)
	}
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !res.Grants[0].Created || !res.Grants[0].Verified {
		t.Errorf("grant: created %v verified %v; want both", res.Grants[0].Created, res.Grants[0].Verified)
	}
}

func TestAdoptActiveAssignment(t *testing.T) {
	tests := []struct {
		name     string
		existing time.Duration
		adopted  bool
	}{
		{"long enough adopted", 2 * time.Hour, true},
		{"too short rejected", 6 * time.Minute, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pe := startPIMEnv(t)
			r := pe.newPIMRun(t, pe.pimConfig(0))
			req := pe.pimRequest(t, 30*time.Minute, pair(t, roleReader, vaultScope))
			activateByHand(t, pe, vaultScope, roleReader, tc.existing)
			routed(t, r, req, lifecycle.BackendPIMActivate)
			res, err := r.engine.Run(context.Background(), req, r.roles(t, req.Pairs), noopAction, nil)
			g := res.Grants[0]
			if tc.adopted {
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				if !g.PreExisting || g.Created || g.EndsAt.IsZero() {
					t.Errorf("grant: pre-existing %v created %v ends %v; want true false set", g.PreExisting, g.Created, g.EndsAt)
				}
				if len(recordsOf(r.records(t), "adopt")) != 1 {
					t.Errorf("adopt records: want 1")
				}
			} else {
				if err == nil || !strings.Contains(err.Error(), "already active") {
					t.Fatalf("Run: got %v; want an error saying the role is already active", err)
				}
			}
			// Elevate never ends an assignment it did not make.
			if !pe.armActive(t, vaultScope, pipelineOID, roleReader) {
				t.Errorf("existing activation after Run: got inactive; want active")
			}
		})
	}
}

// activateByHand activates the pipeline's eligibility outside Elevate.
func activateByHand(t *testing.T, pe *pimEnv, scope, role string, d time.Duration) {
	t.Helper()
	ctx := context.Background()
	roleID := "/subscriptions/" + demoSubscription + "/providers/Microsoft.Authorization/roleDefinitions/" + role
	elig, err := pe.pim.FindEligibility(ctx, scope, pipelineOID, roleID)
	if err != nil {
		t.Fatalf("FindEligibility: %v", err)
	}
	_, err = pe.pim.Request(ctx, scope, "0a000000-0000-4000-8000-000000000001", azureSelfActivate(roleID, elig.ID, d, pe.clock.Now()))
	if err != nil {
		t.Fatalf("activate by hand: %v", err)
	}
}

func TestPlanningCatchesUndeclaredGroup(t *testing.T) {
	pe := startPIMEnv(t)
	cfg := pe.pimConfig(0)
	cfg.Planning = true
	r := pe.newPIMRun(t, cfg)
	req := pe.pimRequest(t, 30*time.Minute, pair(t, roleContrib, demoGroup))
	// The group's id with the type a caller gets when it leaves out
	// --principal-type: only the eligibility records that it is a group.
	req.Principal = access.Principal{ID: pimGroupOID, Type: access.PrincipalServicePrincipal}

	choices, err := r.engine.ChooseBackends(context.Background(), req, lifecycle.BackendAuto)
	if err != nil {
		t.Fatalf("ChooseBackends(auto): %v", err)
	}
	if choices[0].Backend != lifecycle.BackendRBAC {
		t.Errorf("auto for a group: got %+v; want rbac", choices[0])
	}

	checks := r.engine.PreflightBackends(context.Background(), req, []lifecycle.Choice{{Backend: lifecycle.BackendPIMActivate}}, cfg)
	failed := lifecycle.Failed(checks)
	if len(failed) == 0 {
		t.Fatalf("pim-activate checks %+v; want a failure for a group", checks)
	}
	found := false
	for _, c := range failed {
		found = found || strings.Contains(c.Detail, "group")
	}
	if !found {
		t.Errorf("failed checks %+v; want one that names the group", failed)
	}
}

func TestSelfActivationRefusedForOthers(t *testing.T) {
	tests := []struct {
		name      string
		principal access.Principal
		backend   string
		role      string
		scope     string
		contains  string
	}{
		{"another service principal", access.Principal{ID: otherSPOID, Type: access.PrincipalServicePrincipal},
			lifecycle.BackendPIMActivate, roleReader, vaultScope, "not the caller"},
		{"a group", access.Principal{ID: pimGroupOID, Type: access.PrincipalGroup},
			lifecycle.BackendPIMActivate, roleContrib, demoGroup, "is a group"},
		{"entra for a group", access.Principal{ID: pimGroupOID, Type: access.PrincipalGroup},
			lifecycle.BackendEntraRole, entraGlobalReader, tenantRoot, "is a group"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pe := startPIMEnv(t)
			cfg := pe.pimConfig(0)
			if tc.backend == lifecycle.BackendEntraRole {
				cfg.EntraMode = lifecycle.EntraSelfActivate
			}
			r := pe.newPIMRun(t, cfg)
			req := pe.pimRequest(t, 30*time.Minute, pair(t, tc.role, tc.scope))
			req.Principal = tc.principal
			routed(t, r, req, tc.backend)
			_, err := r.engine.Run(context.Background(), req, r.roles(t, req.Pairs), noopAction, nil)
			if !errors.Is(err, lifecycle.ErrGrant) || !strings.Contains(err.Error(), tc.contains) {
				t.Fatalf("Run: got %v; want ErrGrant containing %q", err, tc.contains)
			}
			if n := len(pe.rec.matching("PUT", `roleAssignmentScheduleRequests/`)) + len(pe.rec.matching("POST", `roleAssignmentScheduleRequests$`)); n != 0 {
				t.Errorf("schedule requests sent: got %d; want 0", n)
			}
		})
	}
}

func TestAssignEndsWithoutElevate(t *testing.T) {
	pe := startPIMEnv(t)
	r := pe.newPIMRun(t, pe.pimConfig(0))
	req := pe.pimRequest(t, 10*time.Minute, pair(t, roleReader, storageScope))
	routed(t, r, req, lifecycle.BackendPIMAssign)
	grants := lifecycle.PlanGrants(req, r.roles(t, req.Pairs))
	if err := r.engine.GrantAll(context.Background(), req, grants); err != nil {
		t.Fatalf("GrantAll: %v", err)
	}
	// Elevate "crashes" here: no Remove ever runs.
	g := grants[0]
	if want := pe.clock.Now().Add(10 * time.Minute); !g.EndsAt.Equal(want) {
		t.Errorf("EndsAt: got %s; want %s", g.EndsAt, want)
	}
	if !pe.armActive(t, storageScope, pipelineOID, roleReader) {
		t.Fatalf("active after grant: got false; want true")
	}
	pe.clock.Advance(g.EndsAt.Sub(pe.clock.Now()) - time.Second)
	if !pe.armActive(t, storageScope, pipelineOID, roleReader) {
		t.Errorf("active a second before the deadline: got false; want true")
	}
	pe.clock.Advance(2 * time.Second)
	if pe.armActive(t, storageScope, pipelineOID, roleReader) {
		t.Errorf("active after the deadline: got true; want false")
	}
	for _, a := range pe.srv.RoleAssignments() {
		if strings.EqualFold(a.PrincipalID, pipelineOID) && strings.EqualFold(a.Scope, storageScope) {
			t.Errorf("role assignment %s still live after the deadline", a.Name)
		}
	}
	exists, err := r.engine.Backend(lifecycle.BackendPIMAssign).Exists(context.Background(), g)
	if err != nil || exists {
		t.Errorf("Exists after the deadline: got %v, %v; want false, nil", exists, err)
	}
}

// findCheck returns the check with the name, or fails the test.
func findCheck(t *testing.T, checks []lifecycle.Check, name string) lifecycle.Check {
	t.Helper()
	for _, c := range checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("checks %+v; want one named %q", checks, name)
	return lifecycle.Check{}
}

func TestPreflightSignInRules(t *testing.T) {
	pe := startPIMEnv(t)
	tests := []struct {
		name      string
		principal access.Principal
		refused   bool
		contains  []string
	}{
		{"service principal refused", access.Principal{ID: pipelineOID, Type: access.PrincipalServicePrincipal}, true,
			[]string{"rule AuthenticationContext_EndUser_Assignment requires authentication context claim c1",
				"principal " + pipelineOID + " is a ServicePrincipal and cannot present it", "--backend pim-assign or rbac"}},
		{"user warned", access.Principal{ID: approverOID, Type: access.PrincipalUser}, false,
			[]string{"claim c1", "principal " + approverOID + " is a User, whose sign-in must include it"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Planning skips the caller rule, so the user's own apply
			// would be the one to activate.
			cfg := pe.pimConfig(0)
			cfg.Planning = true
			r := pe.newPIMRun(t, cfg)
			req := pe.pimRequest(t, 30*time.Minute, pair(t, roleKVUser, vaultScope))
			req.Principal = tc.principal
			checks := r.engine.PreflightBackends(context.Background(), req, []lifecycle.Choice{{Backend: lifecycle.BackendPIMActivate}}, cfg)
			c := findCheck(t, checks, "PIM policy "+azure.AuthenticationContextRule)
			if refused := !c.OK && !c.Warning; refused != tc.refused {
				t.Errorf("refused: got %v; want %v (%s)", refused, tc.refused, c.Detail)
			}
			if failed := len(lifecycle.Failed(checks)) > 0; failed != tc.refused {
				t.Errorf("request refused: got %v; want %v (%+v)", failed, tc.refused, lifecycle.Failed(checks))
			}
			for _, s := range tc.contains {
				if !strings.Contains(c.Detail, s) {
					t.Errorf("detail %q; want it to contain %q", c.Detail, s)
				}
			}
		})
	}
}

func TestEntraPreflightRules(t *testing.T) {
	pe := startPIMEnv(t)
	tests := []struct {
		name     string
		role     string
		duration time.Duration
		ticket   string
		check    string
		refused  bool
		contains []string
	}{
		{"over maximum", entraUserAdmin, 2 * time.Hour, "CHG-1", "PIM policy ExpirationRule", true,
			[]string{"2h", "1h", "Expiration_EndUser_Assignment"}},
		{"under five minutes", entraGlobalReader, 4 * time.Minute, "", "PIM policy ExpirationRule", true, []string{"4m", "5m"}},
		{"missing ticket", entraUserAdmin, 30 * time.Minute, "", "PIM policy TicketingRule", true, []string{"ticket", "--ticket"}},
		{"authentication context", entraUserAdmin, 30 * time.Minute, "CHG-1", "PIM policy " + azure.AuthenticationContextRule, true,
			[]string{"AuthenticationContext_EndUser_Assignment", "claim c1", pipelineOID, "ServicePrincipal"}},
		{"approval without wait", entraUserAdmin, 30 * time.Minute, "CHG-1", lifecycle.CheckPIMApproval, true,
			[]string{"Approval_EndUser_Assignment", "--pim-approval-wait"}},
		{"assignment over admin maximum", entraGroupsAdmin, 3 * time.Hour, "", "PIM policy ExpirationRule", true,
			[]string{"3h", "2h", "Expiration_Admin_Assignment"}},
		{"activation within policy", entraGlobalReader, 30 * time.Minute, "", lifecycle.CheckPIMPolicy, false,
			[]string{"SelfActivate of 30m fits the policy (maximum 8h)"}},
		{"assignment within policy", entraGroupsAdmin, time.Hour, "", lifecycle.CheckPIMPolicy, false,
			[]string{"AdminAssign of 1h fits the policy (maximum 2h)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := pe.pimConfig(0)
			r := pe.newPIMRun(t, cfg)
			req := pe.pimRequest(t, tc.duration, pair(t, tc.role, tenantRoot))
			req.Metadata.Ticket = tc.ticket
			checks := r.engine.PreflightBackends(context.Background(), req, []lifecycle.Choice{{Backend: lifecycle.BackendEntraRole}}, cfg)
			c := findCheck(t, checks, tc.check)
			if refused := !c.OK && !c.Warning; refused != tc.refused {
				t.Errorf("%s refused: got %v; want %v (%s)", tc.check, refused, tc.refused, c.Detail)
			}
			if failed := len(lifecycle.Failed(checks)) > 0; failed != tc.refused {
				t.Errorf("request refused: got %v; want %v (%+v)", failed, tc.refused, lifecycle.Failed(checks))
			}
			for _, s := range tc.contains {
				if !strings.Contains(c.Detail, s) {
					t.Errorf("detail %q; want it to contain %q", c.Detail, s)
				}
			}
		})
	}
}

func TestFindEntraGrantsByMarker(t *testing.T) {
	pe := startPIMEnv(t)
	r := pe.newPIMRun(t, pe.pimConfig(0))
	ctx := context.Background()
	req := pe.pimRequest(t, 30*time.Minute, pair(t, entraGlobalReader, tenantRoot), pair(t, entraAppAdmin, tenantRoot))
	choices := routed(t, r, req, lifecycle.BackendEntraRole)

	// Global Reader is active through another Elevate request, whose
	// justification carries that request's id, not this one's.
	other, err := pe.graph.Request(ctx, azure.DirectoryScheduleRequest{Action: lifecycle.EntraSelfActivate, PrincipalID: pipelineOID,
		RoleDefinitionID: entraGlobalReader, DirectoryScopeID: "/", Start: pe.clock.Now(), Duration: time.Hour,
		Justification: "elevate request 0f8fad5b-d9cb-469f-a165-70867728950e: another job"})
	if err != nil {
		t.Fatalf("other request: %v", err)
	}
	grants := lifecycle.PlanGrants(req, r.roles(t, req.Pairs))
	for i := range grants {
		grants[i].Backend = choices[i].Backend
	}
	// This request's grant of Application Administrator, made by the
	// grant code, whose record is then lost.
	made := []lifecycle.Grant{grants[1]}
	if err := r.engine.GrantAll(ctx, req, made); err != nil {
		t.Fatalf("GrantAll: %v", err)
	}

	found, err := r.engine.FindEntraGrants(ctx, req, grants)
	if err != nil {
		t.Fatalf("FindEntraGrants: %v", err)
	}
	if found != 1 {
		t.Errorf("found: got %d; want 1", found)
	}
	if grants[0].AssignmentID != "" {
		t.Errorf("Global Reader grant: got %q; want none, as request %s belongs to another Elevate request", grants[0].AssignmentID, other.ID)
	}
	if grants[1].AssignmentID != made[0].AssignmentID || grants[1].AssignmentID == "" {
		t.Errorf("Application Administrator grant: got %q; want the request the grant made, %q", grants[1].AssignmentID, made[0].AssignmentID)
	}
	if !pe.entraActive(t, pipelineOID, entraGlobalReader) {
		t.Fatalf("Global Reader of the other request not active before revoke")
	}
	if err := r.engine.RevokePlanned(ctx, req, grants); err != nil {
		t.Fatalf("RevokePlanned: %v", err)
	}
	if pe.entraActive(t, pipelineOID, entraAppAdmin) {
		t.Errorf("Application Administrator still active after revoke")
	}
	if !pe.entraActive(t, pipelineOID, entraGlobalReader) {
		t.Errorf("Global Reader of the other request removed; want it left alone")
	}
}

func TestPIMRevokeFailureNamesFix(t *testing.T) {
	instances := emulator.FaultRule{Method: "GET", Path: "roleAssignmentScheduleInstances", Status: 500}
	tests := []struct {
		name        string
		backend     string
		role, scope string
		atGrant     bool // the fault starts before the grant, not during the action
		fix         string
	}{
		{"activate", lifecycle.BackendPIMActivate, roleReader, vaultScope, false, "Privileged Identity Management in the Azure portal"},
		{"activate unread at grant", lifecycle.BackendPIMActivate, roleReader, vaultScope, true, "Privileged Identity Management in the Azure portal"},
		{"assign", lifecycle.BackendPIMAssign, roleReader, storageScope, false, "Privileged Identity Management in the Azure portal"},
		{"entra", lifecycle.BackendEntraRole, entraGlobalReader, tenantRoot, false, "Microsoft Entra admin center"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pe := startPIMEnv(t)
			r := pe.newPIMRun(t, pe.pimConfig(0))
			req := pe.pimRequest(t, 10*time.Minute, pair(t, tc.role, tc.scope))
			routed(t, r, req, tc.backend)
			if tc.atGrant {
				pe.setFaults(t, instances)
			}
			action := funcAction{name: "break reads", run: func(context.Context) (lifecycle.ActionResult, error) {
				pe.setFaults(t, instances)
				return lifecycle.ActionResult{}, nil
			}}
			res, err := r.engine.Run(context.Background(), req, r.roles(t, req.Pairs), action, nil)
			pe.setFaults(t)

			var rerr *lifecycle.RevokeError
			if !errors.As(err, &rerr) {
				t.Fatalf("Run: got %v; want a RevokeError", err)
			}
			msg := rerr.Error()
			if strings.Contains(msg, "az role assignment delete") {
				t.Errorf("revoke error %q: want no az role assignment delete hint for %s", msg, tc.backend)
			}
			if !strings.Contains(msg, tc.fix) {
				t.Errorf("revoke error %q: want it to contain %q", msg, tc.fix)
			}
			end := pimBase.Add(10 * time.Minute).Format(time.RFC3339)
			if !strings.Contains(msg, "ends by itself at "+end) {
				t.Errorf("revoke error %q: want the end time %s", msg, end)
			}
			g := res.Grants[0]
			if !g.Created {
				t.Errorf("grant created: got false; want true, as PIM provisioned the request")
			}
			if !g.EndsAt.Equal(pimBase.Add(10 * time.Minute)) {
				t.Errorf("grant EndsAt: got %s; want %s", g.EndsAt, end)
			}
		})
	}
}
