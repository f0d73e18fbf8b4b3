package emulator

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestPIMActivationGrantsAndExpires(t *testing.T) {
	s, clock := startPIM(t, time.Minute)
	runner := tokenFor(t, s, pimRunnerOID)
	if canReadRG(t, s, runner) {
		t.Fatalf("runner reads the resource group before activation; want 403")
	}

	name := "a0000000-0000-4000-8000-000000000001"
	status, _, body := doRaw(t, s, http.MethodPut, requestURL(s, demoRG, name, ""), runner,
		activateBody("SelfActivate", pimRunnerOID, RoleContributor, demoRG, eligContributorRG, "PT30M", "deploy"))
	if status != http.StatusCreated {
		t.Fatalf("PUT: got %d %s; want 201", status, body)
	}
	if got := jsonField(body, "properties.status"); got != "Provisioned" {
		t.Errorf("status: got %q; want Provisioned", got)
	}

	// The assignment takes effect after the propagation delay.
	if canReadRG(t, s, runner) {
		t.Errorf("access before the propagation delay; want none")
	}
	clock.Advance(time.Minute)
	if !canReadRG(t, s, runner) {
		t.Errorf("no access after the propagation delay; want access")
	}

	// It ends by itself at the schedule end, plus the propagation delay.
	clock.Advance(29 * time.Minute)
	for _, a := range s.RoleAssignments() {
		if a.PrincipalID == pimRunnerOID {
			t.Errorf("assignment %s still live at the schedule end", a.Name)
		}
	}
	if !canReadRG(t, s, runner) {
		t.Errorf("access gone within the propagation delay after the end; want it to last the delay")
	}
	clock.Advance(time.Minute)
	if canReadRG(t, s, runner) {
		t.Errorf("access after the end plus the delay; want none")
	}
	status, _, body = doRaw(t, s, http.MethodGet, s.URL()+demoRG+"/providers/Microsoft.Authorization/roleAssignmentScheduleInstances?api-version=2020-10-01&$filter=asTarget()", runner, "")
	if status != http.StatusOK || strings.Contains(body, pimRunnerOID) {
		t.Errorf("instances after expiry: got %d %s; want 200 without the runner", status, body)
	}
}

func TestPIMRequestRules(t *testing.T) {
	s, _ := startPIM(t, 0)
	runner := tokenFor(t, s, pimRunnerOID)
	other := tokenFor(t, s, pimOtherOID)
	group := tokenFor(t, s, pimGroupOID)
	admin := tokenFor(t, s, demoPipelineOID)
	tests := []struct {
		name     string
		token    string
		scope    string
		body     string
		status   int
		code     string
		contains string
	}{
		{"duration over maximum", runner, demoRG,
			activateBody("SelfActivate", pimRunnerOID, RoleKeyVaultSecretsOfficer, demoRG, eligOfficerRG, "PT2H", "x"),
			400, "RoleAssignmentRequestPolicyValidationFailed", `["ExpirationRule","TicketingRule"]`},
		{"duration under five minutes", runner, demoRG,
			activateBody("SelfActivate", pimRunnerOID, RoleContributor, demoRG, eligContributorRG, "PT4M", "x"),
			400, "ActiveDurationTooShort", "5 minutes"},
		{"missing justification", runner, demoRG,
			activateBody("SelfActivate", pimRunnerOID, RoleContributor, demoRG, eligContributorRG, "PT1H", ""),
			400, "RoleAssignmentRequestPolicyValidationFailed", `["JustificationRule"]`},
		{"missing ticket", runner, demoRG,
			activateBody("SelfActivate", pimRunnerOID, RoleKeyVaultSecretsOfficer, demoRG, eligOfficerRG, "PT1H", "x"),
			400, "RoleAssignmentRequestPolicyValidationFailed", `["TicketingRule"]`},
		{"mfa required", runner, demoRG,
			activateBody("SelfActivate", pimRunnerOID, RoleKeyVaultReader, demoRG, eligKVReaderRG, "PT1H", "x"),
			400, "RoleAssignmentRequestPolicyValidationFailed", `["MfaRule"]`},
		{"self activation never expiring", runner, demoRG,
			activateBody("SelfActivate", pimRunnerOID, RoleContributor, demoRG, eligContributorRG, "", "x"),
			400, "RoleAssignmentRequestPolicyValidationFailed", `["ExpirationRule"]`},
		{"no eligibility", runner, demoRG,
			activateBody("SelfActivate", pimRunnerOID, RoleOwner, demoRG, eligContributorRG, "PT1H", "x"),
			400, "RoleAssignmentRequestPolicyValidationFailed", `["EligibilityRule"]`},
		{"linked eligibility of another role", runner, demoRG,
			activateBody("SelfActivate", pimRunnerOID, RoleContributor, demoRG, eligOfficerRG, "PT1H", "x"),
			400, "RoleAssignmentRequestPolicyValidationFailed", `["EligibilityRule"]`},
		{"linked eligibility missing", runner, demoRG,
			activateBody("SelfActivate", pimRunnerOID, RoleContributor, demoRG, "", "PT1H", "x"),
			400, codeBadRequest, "linkedRoleEligibilityScheduleId"},
		{"self activation by someone else", other, demoRG,
			activateBody("SelfActivate", pimRunnerOID, RoleContributor, demoRG, eligContributorRG, "PT1H", "x"),
			400, codeBadRequest, "must come from the principal itself"},
		{"group principal", group, demoRG,
			activateBody("SelfActivate", pimGroupOID, RoleContributor, demoRG, eligGroupRG, "PT1H", "x"),
			400, codeBadRequest, "is a group"},
		{"unknown principal", admin, demoRG,
			activateBody("AdminAssign", "99999999-9999-4999-8999-999999999999", RoleReader, demoRG, "", "PT1H", "x"),
			400, "PrincipalNotFound", "does not exist"},
		{"admin assign without permission", runner, demoRG,
			activateBody("AdminAssign", pimOtherOID, RoleReader, demoRG, "", "PT1H", "x"),
			403, "AuthorizationFailed", "roleAssignments/write"},
		{"invalid duration", runner, demoRG,
			activateBody("SelfActivate", pimRunnerOID, RoleContributor, demoRG, eligContributorRG, "8 hours", "x"),
			400, codeBadRequest, "ISO 8601"},
		{"unknown request type", runner, demoRG,
			activateBody("SelfPromote", pimRunnerOID, RoleContributor, demoRG, eligContributorRG, "PT1H", "x"),
			400, "InvalidRequestContent", "requestType"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := fmt.Sprintf("b0000000-0000-4000-8000-%012d", i)
			status, _, body := doRaw(t, s, http.MethodPut, requestURL(s, tc.scope, name, ""), tc.token, tc.body)
			if status != tc.status {
				t.Errorf("status: got %d; want %d (body %s)", status, tc.status, body)
			}
			if got := errorCode(t, body); got != tc.code {
				t.Errorf("code: got %q; want %q", got, tc.code)
			}
			if !strings.Contains(body, strings.ReplaceAll(tc.contains, `"`, `\"`)) && !strings.Contains(body, tc.contains) {
				t.Errorf("body %s; want it to contain %s", body, tc.contains)
			}
		})
	}
	if got := len(s.RoleAssignments()); got != 1 {
		t.Errorf("live role assignments: got %d; want only the seeded one", got)
	}
}

func TestPIMApprovalThenCancel(t *testing.T) {
	s, _ := startPIM(t, 0)
	runner := tokenFor(t, s, pimRunnerOID)
	name := "c0000000-0000-4000-8000-000000000001"
	status, _, body := doRaw(t, s, http.MethodPut, requestURL(s, demoVault, name, ""), runner,
		activateBody("SelfActivate", pimRunnerOID, RoleReader, demoVault, eligReaderVault, "PT1H", "read"))
	if status != http.StatusCreated {
		t.Fatalf("PUT: got %d %s; want 201", status, body)
	}
	if got := jsonField(body, "properties.status"); got != "PendingApproval" {
		t.Errorf("status: got %q; want PendingApproval", got)
	}
	if jsonField(body, "properties.approvalId") == "" {
		t.Errorf("approvalId: got none; want an id")
	}
	if len(s.RoleAssignments()) != 1 {
		t.Errorf("a pending request created a role assignment")
	}

	// Someone unrelated may not cancel it; the requestor may, once.
	other := tokenFor(t, s, pimOtherOID)
	if status, _, body := doRaw(t, s, http.MethodPost, requestURL(s, demoVault, name, "/cancel"), other, ""); status != http.StatusForbidden {
		t.Errorf("cancel by other: got %d %s; want 403", status, body)
	}
	status, _, body = doRaw(t, s, http.MethodPost, requestURL(s, demoVault, name, "/cancel"), runner, "")
	if status != http.StatusOK || strings.TrimSpace(body) != "" {
		t.Fatalf("cancel: got %d %q; want 200 with no body", status, body)
	}
	_, _, body = doRaw(t, s, http.MethodGet, requestURL(s, demoVault, name, ""), runner, "")
	if got := jsonField(body, "properties.status"); got != "Canceled" {
		t.Errorf("status after cancel: got %q; want Canceled", got)
	}
	if status, _, _ := doRaw(t, s, http.MethodPost, requestURL(s, demoVault, name, "/cancel"), runner, ""); status != http.StatusBadRequest {
		t.Errorf("second cancel: got %d; want 400", status)
	}
	if _, err := s.ApprovePIMRequest(name); err == nil {
		t.Errorf("approving a canceled request: got no error; want one")
	}
}

func TestPIMApprovalEndpointProvisions(t *testing.T) {
	s, _ := startPIM(t, 0)
	runner := tokenFor(t, s, pimRunnerOID)
	name := "c0000000-0000-4000-8000-000000000002"
	if status, _, body := doRaw(t, s, http.MethodPut, requestURL(s, demoVault, name, ""), runner,
		activateBody("SelfActivate", pimRunnerOID, RoleReader, demoVault, eligReaderVault, "PT1H", "read")); status != http.StatusCreated {
		t.Fatalf("PUT: got %d %s; want 201", status, body)
	}
	if status, _, _ := doRaw(t, s, http.MethodPost, s.URL()+"/_emulator/pim/approve/"+name, "wrong", ""); status != http.StatusUnauthorized {
		t.Errorf("approve without admin token: got %d; want 401", status)
	}
	status, _, body := doRaw(t, s, http.MethodPost, s.URL()+"/_emulator/pim/approve/"+name, s.AdminToken(), "")
	if status != http.StatusOK || jsonField(body, "status") != "Provisioned" {
		t.Fatalf("approve: got %d %s; want 200 Provisioned", status, body)
	}
	found := false
	for _, a := range s.RoleAssignments() {
		found = found || (a.PrincipalID == pimRunnerOID && strings.EqualFold(a.Scope, demoVault))
	}
	if !found {
		t.Errorf("no role assignment at the vault after approval")
	}
	_, _, body = doRaw(t, s, http.MethodGet, requestURL(s, demoVault, name, ""), runner, "")
	if got := jsonField(body, "properties.status"); got != "Provisioned" {
		t.Errorf("status: got %q; want Provisioned", got)
	}
	if jsonField(body, "properties.targetRoleAssignmentScheduleId") == "" {
		t.Errorf("targetRoleAssignmentScheduleId: got none; want the schedule id")
	}
}

func TestPIMExistsAndDeactivation(t *testing.T) {
	s, clock := startPIM(t, 0)
	runner := tokenFor(t, s, pimRunnerOID)
	activate := activateBody("SelfActivate", pimRunnerOID, RoleContributor, demoRG, eligContributorRG, "PT1H", "x")
	if status, _, body := doRaw(t, s, http.MethodPut, requestURL(s, demoRG, "d0000000-0000-4000-8000-000000000001", ""), runner, activate); status != http.StatusCreated {
		t.Fatalf("activate: got %d %s; want 201", status, body)
	}
	status, _, body := doRaw(t, s, http.MethodPut, requestURL(s, demoRG, "d0000000-0000-4000-8000-000000000002", ""), runner, activate)
	if status != http.StatusBadRequest || errorCode(t, body) != "RoleAssignmentExists" {
		t.Errorf("second activation: got %d %s; want 400 RoleAssignmentExists", status, body)
	}
	status, _, body = doRaw(t, s, http.MethodPut, requestURL(s, demoRG, "d0000000-0000-4000-8000-000000000001", ""), runner, activate)
	if status != http.StatusConflict {
		t.Errorf("same name again: got %d %s; want 409", status, body)
	}

	deactivate := activateBody("SelfDeactivate", pimRunnerOID, RoleContributor, demoRG, "", "", "")
	clock.Advance(4 * time.Minute)
	status, _, body = doRaw(t, s, http.MethodPut, requestURL(s, demoRG, "d0000000-0000-4000-8000-000000000003", ""), runner, deactivate)
	if status != http.StatusBadRequest || errorCode(t, body) != "ActiveDurationTooShort" {
		t.Errorf("early deactivation: got %d %s; want 400 ActiveDurationTooShort", status, body)
	}
	clock.Advance(2 * time.Minute)
	status, _, body = doRaw(t, s, http.MethodPut, requestURL(s, demoRG, "d0000000-0000-4000-8000-000000000004", ""), runner, deactivate)
	if status != http.StatusCreated || jsonField(body, "properties.status") != "Revoked" {
		t.Fatalf("deactivation: got %d %s; want 201 Revoked", status, body)
	}
	if canReadRG(t, s, runner) {
		t.Errorf("access after deactivation; want none")
	}
	status, _, body = doRaw(t, s, http.MethodPut, requestURL(s, demoRG, "d0000000-0000-4000-8000-000000000005", ""), runner, deactivate)
	if status != http.StatusBadRequest {
		t.Errorf("deactivating nothing: got %d %s; want 400", status, body)
	}
}

func TestPIMAdminAssignAndRemove(t *testing.T) {
	s, _ := startPIM(t, 0)
	admin := tokenFor(t, s, demoPipelineOID) // RBAC Administrator at the resource group
	assign := activateBody("AdminAssign", pimOtherOID, RoleReader, demoRG, "", "PT2H", "")
	status, _, body := doRaw(t, s, http.MethodPut, requestURL(s, demoRG, "e0000000-0000-4000-8000-000000000001", ""), admin, assign)
	if status != http.StatusCreated || jsonField(body, "properties.status") != "Provisioned" {
		t.Fatalf("AdminAssign: got %d %s; want 201 Provisioned", status, body)
	}
	if !canReadRG(t, s, tokenFor(t, s, pimOtherOID)) {
		t.Errorf("assignee cannot read the resource group; want access")
	}
	_, _, body = doRaw(t, s, http.MethodGet, s.URL()+demoRG+"/providers/Microsoft.Authorization/roleAssignmentSchedules?api-version=2020-10-01&$filter="+
		"principalId%20eq%20'"+pimOtherOID+"'", admin, "")
	if got := jsonField(body, "value"); !strings.Contains(body, `"assignmentType":"Assigned"`) {
		t.Errorf("schedules: got %s; want one Assigned schedule", got)
	}
	remove := activateBody("AdminRemove", pimOtherOID, RoleReader, demoRG, "", "", "")
	status, _, body = doRaw(t, s, http.MethodPut, requestURL(s, demoRG, "e0000000-0000-4000-8000-000000000002", ""), admin, remove)
	if status != http.StatusCreated || jsonField(body, "properties.status") != "Revoked" {
		t.Fatalf("AdminRemove: got %d %s; want 201 Revoked", status, body)
	}
	if canReadRG(t, s, tokenFor(t, s, pimOtherOID)) {
		t.Errorf("assignee still reads after AdminRemove; want 403")
	}
}

func TestPIMListsAndReadAccess(t *testing.T) {
	s, _ := startPIM(t, 0)
	runner := tokenFor(t, s, pimRunnerOID)
	other := tokenFor(t, s, pimOtherOID)
	base := s.URL() + demoRG + "/providers/Microsoft.Authorization/"
	tests := []struct {
		name, token, path string
		status            int
		contains, absent  string
	}{
		{"own eligibilities by assignedTo", runner, "roleEligibilitySchedules?$filter=assignedTo('" + pimRunnerOID + "')", 200, eligContributorRG, eligGroupRG},
		{"own eligibilities as target", runner, "roleEligibilitySchedules?$filter=asTarget()", 200, eligOfficerRG, eligUserReaderRG},
		{"eligibility below the scope listed", runner, "roleEligibilitySchedules?$filter=asTarget()", 200, eligReaderVault, ""},
		{"atScope hides lower scopes", runner, "roleEligibilitySchedules?$filter=asTarget()%20and%20atScope()", 200, eligContributorRG, eligReaderVault},
		{"own eligibility instances", runner, "roleEligibilityScheduleInstances?$filter=principalId%20eq%20'" + pimRunnerOID + "'", 200, "RoleEligibilityScheduleInstances", ""},
		{"others need read access", other, "roleEligibilitySchedules?$filter=assignedTo('" + pimRunnerOID + "')", 403, "AuthorizationFailed", ""},
		{"reader sees everyone", tokenFor(t, s, demoPipelineOID), "roleEligibilitySchedules", 200, eligGroupRG, ""},
		{"get by name", runner, "roleEligibilitySchedules/" + eligContributorRG, 200, eligContributorRG, ""},
		{"get unknown name", runner, "roleEligibilitySchedules/0e000000-0000-4000-8000-0000000000ff", 404, codeNotFound, ""},
		{"unsupported filter", runner, "roleEligibilitySchedules?$filter=status%20eq%20'x'", 400, "InvalidFilter", ""},
		{"policies need read access", runner, "roleManagementPolicies", 403, "AuthorizationFailed", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sep := "?"
			if strings.Contains(tc.path, "?") {
				sep = "&"
			}
			status, _, body := doRaw(t, s, http.MethodGet, base+tc.path+sep+"api-version=2020-10-01", tc.token, "")
			if status != tc.status {
				t.Fatalf("status: got %d; want %d (body %s)", status, tc.status, body)
			}
			if !strings.Contains(body, tc.contains) {
				t.Errorf("body %s; want it to contain %q", body, tc.contains)
			}
			if tc.absent != "" && strings.Contains(body, tc.absent) {
				t.Errorf("body contains %q; want it absent", tc.absent)
			}
		})
	}
}

func TestPIMPolicies(t *testing.T) {
	s, _ := startPIM(t, 0)
	reader := tokenFor(t, s, demoPipelineOID)
	base := s.URL() + demoRG + "/providers/Microsoft.Authorization/"
	officer := "/subscriptions/" + demoSubscription + "/providers/Microsoft.Authorization/roleDefinitions/" + RoleKeyVaultSecretsOfficer
	status, _, body := doRaw(t, s, http.MethodGet, base+"roleManagementPolicyAssignments?api-version=2020-10-01&$filter=roleDefinitionId%20eq%20'"+officer+"'", reader, "")
	if status != http.StatusOK {
		t.Fatalf("list assignments: got %d %s; want 200", status, body)
	}
	if n := strings.Count(body, `"policyId"`); n != 1 {
		t.Fatalf("policy assignments for one role: got %d; want 1 (%s)", n, body)
	}
	policyID := jsonField(strings.TrimSuffix(strings.TrimPrefix(body, `{"value":[`), "]}"), "properties.policyId")
	name := policyID[strings.LastIndex(policyID, "/")+1:]
	status, _, body = doRaw(t, s, http.MethodGet, base+"roleManagementPolicies/"+name+"?api-version=2020-10-01", reader, "")
	if status != http.StatusOK {
		t.Fatalf("get policy: got %d %s; want 200", status, body)
	}
	for _, want := range []string{`"id":"Expiration_EndUser_Assignment","isExpirationRequired":true,"maximumDuration":"PT1H"`,
		`"enabledRules":["Justification","Ticketing"]`, `"isApprovalRequired":false`} {
		if !strings.Contains(body, want) {
			t.Errorf("policy lacks %s", want)
		}
	}
	status, _, body = doRaw(t, s, http.MethodGet, base+"roleManagementPolicies?api-version=2020-10-01", reader, "")
	// Each policy names the rule twice, in rules and effectiveRules.
	if n := strings.Count(body, `"Expiration_EndUser_Assignment"`) / 2; status != http.StatusOK || n != len(BuiltinRoles()) {
		t.Errorf("list policies: got %d with %d policies; want 200 with one per built-in role", status, n)
	}
}

func TestPIMSeedErrors(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Seed)
		want   string
	}{
		{"eligibility both scopes", func(s *Seed) {
			s.Eligibilities = []SeedEligibility{{PrincipalID: pimRunnerOID, Scope: demoRG, DirectoryScopeID: "/", RoleName: "Reader"}}
		}, "not both"},
		{"eligibility unknown principal", func(s *Seed) {
			s.Eligibilities = []SeedEligibility{{PrincipalID: "99999999-9999-4999-8999-999999999999", Scope: demoRG, RoleName: "Reader"}}
		}, "not in the seed"},
		{"eligibility unknown Entra role", func(s *Seed) {
			s.Eligibilities = []SeedEligibility{{PrincipalID: pimRunnerOID, DirectoryScopeID: "/", RoleName: "Chief Wizard"}}
		}, "Chief Wizard"},
		{"eligibility end before start", func(s *Seed) {
			s.Eligibilities = []SeedEligibility{{PrincipalID: pimRunnerOID, Scope: demoRG, RoleName: "Reader",
				Start: pimBase, End: pimBase.Add(-time.Hour)}}
		}, "not after start"},
		{"policy bad duration", func(s *Seed) {
			s.RolePolicies = []SeedRolePolicy{{Scope: demoRG, RoleName: "Reader", MaximumDuration: "8h"}}
		}, "maximumDuration"},
		{"policy maximum under five minutes", func(s *Seed) {
			s.RolePolicies = []SeedRolePolicy{{Scope: demoRG, RoleName: "Reader", MaximumDuration: "PT1M"}}
		}, "5 minute"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seed := pimSeed()
			tc.mutate(&seed)
			_, err := Start(t.Context(), Config{Seed: seed, StateDir: t.TempDir()})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Start error: got %v; want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestISODuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"PT8H", 8 * time.Hour, true},
		{"PT90M", 90 * time.Minute, true},
		{"P1DT2H", 26 * time.Hour, true},
		{"P2W", 14 * 24 * time.Hour, true},
		{"PT1.5S", 1500 * time.Millisecond, true},
		{"pt5m", 5 * time.Minute, true},
		{"P1Y", 0, false},
		{"P1M", 0, false},
		{"PT", 0, false},
		{"P", 0, false},
		{"8h", 0, false},
		{"PT1.5H", 0, false},
		{"PT99999999999999H", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseISODuration(tc.in)
			if (err == nil) != tc.ok {
				t.Fatalf("error: got %v; want ok %v", err, tc.ok)
			}
			if got != tc.want {
				t.Errorf("got %v; want %v", got, tc.want)
			}
		})
	}
	for _, d := range []time.Duration{time.Hour, 90 * time.Minute, 5*time.Minute + 30*time.Second} {
		back, err := parseISODuration(formatISODuration(d))
		if err != nil || back != d {
			t.Errorf("round trip of %v via %q: got %v, %v", d, formatISODuration(d), back, err)
		}
	}
}

func FuzzParseISODuration(f *testing.F) {
	for _, seed := range []string{"PT8H", "P1DT2H30M", "PT0.5S", "P", "PT", "P1Y", "PT1.H", "PT..S", "P9999999999999999999D"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		d, err := parseISODuration(in)
		if err == nil && d < 0 {
			t.Fatalf("parseISODuration(%q) = %v; want a non-negative duration", in, d)
		}
	})
}
