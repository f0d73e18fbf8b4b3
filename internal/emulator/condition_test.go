package emulator

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/authorization/armauthorization/v2"
)

// Condition fragments of the demo delegation, which allows Key Vault
// Secrets Officer and Reader for the demo pipeline only.
const (
	attrRequestRole      = "@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId]"
	attrRequestPrincipal = "@Request[Microsoft.Authorization/roleAssignments:PrincipalId]"
	attrResourceRole     = "@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId]"
	attrResourcePrinc    = "@Resource[Microsoft.Authorization/roleAssignments:PrincipalId]"
	notWrite             = "!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})"
	notDelete            = "!(ActionMatches{'Microsoft.Authorization/roleAssignments/delete'})"
	allowedRoles         = "{" + RoleKeyVaultSecretsOfficer + ", " + RoleReader + "}"
)

// demoDelegation is the condition on the demo seed's standing assignment.
var demoDelegation = "((" + notWrite + ") OR (" + attrRequestRole + " ForAnyOfAnyValues:GuidEquals " + allowedRoles +
	" AND " + attrRequestPrincipal + " ForAnyOfAnyValues:GuidEquals {" + demoPipelineOID + "})) AND ((" +
	notDelete + ") OR (" + attrResourceRole + " ForAnyOfAnyValues:GuidEquals " + allowedRoles +
	" AND " + attrResourcePrinc + " ForAnyOfAnyValues:GuidEquals {" + demoPipelineOID + "}))"

// unconditionedDemoSeed returns the demo seed with the condition removed
// from the standing delegation, for tests of other assignment rules that
// need the pipeline to grant any role to any principal.
func unconditionedDemoSeed() Seed {
	seed := DefaultSeed()
	for i := range seed.RoleAssignments {
		seed.RoleAssignments[i].Condition = ""
		seed.RoleAssignments[i].ConditionVersion = ""
	}
	return seed
}

// TestDemoSeedDelegationCondition checks that the demo seed carries the
// delegation these tests evaluate.
func TestDemoSeedDelegationCondition(t *testing.T) {
	var standing *SeedAssignment
	seed := DefaultSeed()
	for i, a := range seed.RoleAssignments {
		if a.Name == demoStandingName {
			standing = &seed.RoleAssignments[i]
		}
	}
	if standing == nil {
		t.Fatalf("demo seed has no assignment %s", demoStandingName)
	}
	if standing.Condition != demoDelegation {
		t.Errorf("condition: got %q; want %q", standing.Condition, demoDelegation)
	}
	if standing.ConditionVersion != "2.0" {
		t.Errorf("conditionVersion: got %q; want %q", standing.ConditionVersion, "2.0")
	}
}

// TestSDKConditionedDelegation drives the demo delegation through the
// official client: the pipeline may grant itself the listed roles and
// remove them, and nothing else.
func TestSDKConditionedDelegation(t *testing.T) {
	// An Owner assignment of someone else in the same resource group.
	ownerName := "6d5c4b3a-2918-4776-a5b4-c3d2e1f0a9b8"
	seed := DefaultSeed()
	seed.RoleAssignments = append(seed.RoleAssignments, SeedAssignment{
		Name: ownerName, Scope: demoRG, RoleName: "Owner", PrincipalID: demoApproverOID})
	s := startServer(t, Config{Seed: seed})
	ctx := context.Background()
	client, err := armauthorization.NewRoleAssignmentsClient(demoSubscription, pipelineCredential(t, s), armOptions(s))
	if err != nil {
		t.Fatalf("NewRoleAssignmentsClient: %v", err)
	}
	params := func(role, principal, ptype string) armauthorization.RoleAssignmentCreateParameters {
		return armauthorization.RoleAssignmentCreateParameters{Properties: &armauthorization.RoleAssignmentProperties{
			PrincipalID:      to.Ptr(principal),
			RoleDefinitionID: to.Ptr("/subscriptions/" + demoSubscription + roleDefinitionsProviderPrefix + role),
			PrincipalType:    to.Ptr(armauthorization.PrincipalType(ptype)),
		}}
	}

	officer := "0a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d"
	if _, err := client.Create(ctx, demoRG, officer, params(RoleKeyVaultSecretsOfficer, demoPipelineOID, "ServicePrincipal"), nil); err != nil {
		t.Fatalf("grant self Secrets Officer: got %v; want success", err)
	}

	denied := []struct {
		name       string
		assignment string
		role       string
		member     string
		ptype      string
	}{
		{"self Owner", "1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d50", RoleOwner, demoPipelineOID, "ServicePrincipal"},
		{"self Contributor", "1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d51", RoleContributor, demoPipelineOID, "ServicePrincipal"},
		{"other Secrets Officer", "1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d52", RoleKeyVaultSecretsOfficer, demoApproverOID, "User"},
	}
	for _, tc := range denied {
		t.Run(tc.name, func(t *testing.T) {
			_, err := client.Create(ctx, demoRG, tc.assignment, params(tc.role, tc.member, tc.ptype), nil)
			checkConditionDenied(t, err)
		})
	}

	_, err = client.Delete(ctx, demoRG, ownerName, nil)
	t.Run("delete other Owner", func(t *testing.T) { checkConditionDenied(t, err) })

	if _, err := client.Delete(ctx, demoRG, officer, nil); err != nil {
		t.Errorf("delete own Secrets Officer: got %v; want success", err)
	}
}

// TestConditionPropagationDelay checks that conditions are evaluated over
// the assignments in effect: an unconditioned delegation created a moment
// ago does not widen the conditioned one until the delay has passed.
func TestConditionPropagationDelay(t *testing.T) {
	clock := newFakeClock()
	s := startServer(t, Config{Now: clock.Now, PropagationDelay: time.Minute})
	token := mustToken(t, s, demoPipelineOID, "https://management.azure.com")

	s.st.mu.Lock()
	s.st.assignments = append(s.st.assignments, &RoleAssignment{
		Name:             "2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f",
		ID:               demoRG + "/providers/Microsoft.Authorization/roleAssignments/2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f",
		Scope:            demoRG,
		RoleDefinitionID: "/subscriptions/" + demoSubscription + roleDefinitionsProviderPrefix + RoleRBACAdministrator,
		PrincipalID:      demoPipelineOID,
		PrincipalType:    PrincipalServicePrincipal,
		CreatedOn:        clock.Now(),
		UpdatedOn:        clock.Now(),
	})
	s.st.mu.Unlock()

	body := `{"properties":{"roleDefinitionId":"` + roleDefinitionsProviderPrefix + RoleOwner + `","principalId":"` + demoPipelineOID + `"}}`
	put := s.URL() + demoRG + "/providers/Microsoft.Authorization/roleAssignments/3d4e5f6a-7b8c-4d9e-8f0a-1b2c3d4e5f6a?api-version=2022-04-01"
	status, _, got := doRaw(t, s, http.MethodPut, put, token, body)
	if status != http.StatusForbidden || !strings.Contains(got, "ABAC condition that is not fulfilled") {
		t.Errorf("before propagation: got %d %s; want 403 naming the ABAC condition", status, got)
	}
	clock.Advance(time.Minute)
	if status, _, got := doRaw(t, s, http.MethodPut, put, token, body); status != http.StatusCreated {
		t.Errorf("after propagation: got %d %s; want 201", status, got)
	}
}

// TestPutRejectsInvalidCondition checks ARM's 400 for a condition that does
// not parse and for a version other than 2.0.
func TestPutRejectsInvalidCondition(t *testing.T) {
	s := startServer(t, Config{Seed: unconditionedDemoSeed()})
	token := mustToken(t, s, demoPipelineOID, "https://management.azure.com")
	tests := []struct {
		name      string
		condition string
		version   string
		status    int
		code      string
	}{
		{"valid condition", demoDelegation, "2.0", 201, ""},
		{"version omitted", demoDelegation, "", 201, ""},
		{"version 1.0", demoDelegation, "1.0", 400, "InvalidRoleAssignmentCondition"},
		{"syntax error", "((" + notWrite + ") OR", "2.0", 400, "InvalidRoleAssignmentCondition"},
		{"storage attribute", "@Resource[Microsoft.Storage/storageAccounts/blobServices/containers:name] StringEquals 'x'", "2.0", 400, "InvalidRoleAssignmentCondition"},
	}
	names := []string{
		"4e5f6a7b-8c9d-4e0f-8a1b-2c3d4e5f6a70", "4e5f6a7b-8c9d-4e0f-8a1b-2c3d4e5f6a71",
		"4e5f6a7b-8c9d-4e0f-8a1b-2c3d4e5f6a72", "4e5f6a7b-8c9d-4e0f-8a1b-2c3d4e5f6a73",
		"4e5f6a7b-8c9d-4e0f-8a1b-2c3d4e5f6a74",
	}
	// Each valid case needs its own role, because a principal can hold a
	// role only once per scope.
	roles := []string{RoleReader, RoleKeyVaultReader, RoleReader, RoleReader, RoleReader}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			condition, err := json.Marshal(tc.condition)
			if err != nil {
				t.Fatal(err)
			}
			props := `"roleDefinitionId":"` + roleDefinitionsProviderPrefix + roles[i] + `","principalId":"` + demoApproverOID +
				`","condition":` + string(condition)
			if tc.version != "" {
				props += `,"conditionVersion":"` + tc.version + `"`
			}
			put := s.URL() + demoRG + "/providers/Microsoft.Authorization/roleAssignments/" + names[i] + "?api-version=2022-04-01"
			status, _, got := doRaw(t, s, http.MethodPut, put, token, `{"properties":{`+props+`}}`)
			if status != tc.status {
				t.Fatalf("status: got %d %s; want %d", status, got, tc.status)
			}
			if tc.code != "" && errorCode(t, got) != tc.code {
				t.Errorf("code: got %q; want %q", errorCode(t, got), tc.code)
			}
			if tc.code != "" && !strings.Contains(got, "The given role assignment condition is invalid.") {
				t.Errorf("message: got %s; want ARM's invalid condition message", got)
			}
		})
	}
}

// checkConditionDenied checks that err is ARM's 403 for an unfulfilled
// ABAC condition.
func checkConditionDenied(t *testing.T, err error) {
	t.Helper()
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("got error %v; want *azcore.ResponseError", err)
	}
	if re.StatusCode != http.StatusForbidden {
		t.Errorf("status: got %d; want 403", re.StatusCode)
	}
	if re.ErrorCode != "AuthorizationFailed" {
		t.Errorf("code: got %q; want AuthorizationFailed", re.ErrorCode)
	}
	if !strings.Contains(err.Error(), "has an authorization with ABAC condition that is not fulfilled") {
		t.Errorf("message: got %v; want the ABAC condition wording", err)
	}
}
