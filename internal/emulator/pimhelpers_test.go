package emulator

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// Ids of the PIM test tenant, on top of the demo seed.
const (
	pimRunnerOID = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c01"
	pimRunnerApp = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c02"
	pimOtherOID  = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c03"
	pimOtherApp  = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c04"
	pimGroupOID  = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c05"
	pimUserOID   = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c06"

	entraGlobalReader = "f2ef992c-3afb-46b9-b7cf-a126ee74c451"
	entraAppAdmin     = "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3"
	entraPrivRoleAdm  = "e8611ab8-c189-46e8-94e1-60213ab1f814"
)

// Eligibility names of the PIM test seed.
const (
	eligContributorRG = "0e000000-0000-4000-8000-000000000001" // default policy
	eligReaderVault   = "0e000000-0000-4000-8000-000000000002" // approval required
	eligOfficerRG     = "0e000000-0000-4000-8000-000000000003" // PT1H, justification, ticket
	eligKVReaderRG    = "0e000000-0000-4000-8000-000000000004" // MFA required
	eligGroupRG       = "0e000000-0000-4000-8000-000000000005" // group principal
	eligGlobalReader  = "0e000000-0000-4000-8000-000000000006" // Entra, default policy
	eligAppAdmin      = "0e000000-0000-4000-8000-000000000007" // Entra, PT2H, approval
	eligUserReaderRG  = "0e000000-0000-4000-8000-000000000008" // a user, default policy
)

// pimBase is the emulated time the PIM tests start at.
var pimBase = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// pimSeed is the demo tenant plus a runner that holds only eligibilities,
// another service principal, a user and a group, with one policy per case.
func pimSeed() Seed {
	seed := DefaultSeed()
	seed.Principals = append(seed.Principals,
		Principal{ObjectID: pimRunnerOID, AppID: pimRunnerApp, DisplayName: "ci-runner", Type: PrincipalServicePrincipal,
			ClientSecret: "runner-secret", GraphAppRoles: []string{"RoleManagement.ReadWrite.Directory", "Directory.Read.All"}},
		Principal{ObjectID: pimOtherOID, AppID: pimOtherApp, DisplayName: "other-app", Type: PrincipalServicePrincipal, ClientSecret: "other-secret"},
		Principal{ObjectID: pimGroupOID, DisplayName: "pim-group", Type: PrincipalGroup},
		Principal{ObjectID: pimUserOID, DisplayName: "dev@contoso.example", Type: PrincipalUser},
	)
	seed.Eligibilities = []SeedEligibility{
		{Name: eligContributorRG, PrincipalID: pimRunnerOID, Scope: demoRG, RoleName: "Contributor"},
		{Name: eligReaderVault, PrincipalID: pimRunnerOID, Scope: demoVault, RoleName: "Reader"},
		{Name: eligOfficerRG, PrincipalID: pimRunnerOID, Scope: demoRG, RoleDefinitionID: RoleKeyVaultSecretsOfficer},
		{Name: eligKVReaderRG, PrincipalID: pimRunnerOID, Scope: demoRG, RoleName: "Key Vault Reader"},
		{Name: eligGroupRG, PrincipalID: pimGroupOID, Scope: demoRG, RoleName: "Contributor"},
		{Name: eligGlobalReader, PrincipalID: pimRunnerOID, DirectoryScopeID: "/", RoleDefinitionID: entraGlobalReader},
		{Name: eligAppAdmin, PrincipalID: pimRunnerOID, DirectoryScopeID: "/", RoleName: "Application Administrator"},
		{Name: eligUserReaderRG, PrincipalID: pimUserOID, Scope: demoRG, RoleName: "Reader"},
	}
	seed.RolePolicies = []SeedRolePolicy{
		{Scope: demoVault, RoleName: "Reader", MaximumDuration: "PT4H", RequireApproval: true, Approvers: []string{demoApproverOID}},
		{Scope: demoRG, RoleDefinitionID: RoleKeyVaultSecretsOfficer, MaximumDuration: "PT1H", RequireJustification: true, RequireTicket: true},
		{Scope: demoRG, RoleName: "Key Vault Reader", RequireMFA: true},
		{DirectoryScopeID: "/", RoleDefinitionID: entraAppAdmin, MaximumDuration: "PT2H", RequireJustification: true, RequireApproval: true},
	}
	return seed
}

// startPIM starts an emulator with the PIM seed on an emulated clock.
func startPIM(t *testing.T, delay time.Duration) (*Server, *fakeClock) {
	t.Helper()
	clock := &fakeClock{t: pimBase}
	s := startServer(t, Config{Seed: pimSeed(), Now: clock.Now, PropagationDelay: delay})
	return s, clock
}

// tokenFor issues a long-lived ARM token, so moving the emulated clock by
// hours does not expire it.
func tokenFor(t *testing.T, s *Server, oid string) string {
	t.Helper()
	tok, err := s.IssueToken(oid, "https://management.azure.com", 72*time.Hour)
	if err != nil {
		t.Fatalf("IssueToken: %v", err)
	}
	return tok
}

// graphTokenFor issues a long-lived Graph token.
func graphTokenFor(t *testing.T, s *Server, oid string) string {
	t.Helper()
	tok, err := s.IssueToken(oid, "https://graph.microsoft.com", 72*time.Hour)
	if err != nil {
		t.Fatalf("IssueToken: %v", err)
	}
	return tok
}

// staticCredential is an azcore credential over IssueToken, for SDK
// clients on an emulated clock.
type staticCredential struct {
	s   *Server
	oid string
}

func (c staticCredential) GetToken(_ context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	aud := "https://management.azure.com"
	if len(opts.Scopes) == 1 {
		aud = strings.TrimSuffix(opts.Scopes[0], "/.default")
	}
	tok, err := c.s.IssueToken(c.oid, aud, 72*time.Hour)
	return azcore.AccessToken{Token: tok, ExpiresOn: time.Now().Add(time.Hour)}, err
}

// requestURL returns the URL of a schedule request at scope.
func requestURL(s *Server, scope, name, suffix string) string {
	return s.URL() + scope + "/providers/Microsoft.Authorization/roleAssignmentScheduleRequests/" + name + suffix + "?api-version=2020-10-01"
}

// activateBody returns a schedule request body.
func activateBody(requestType, principal, role, scope, linked, duration, justification string) string {
	props := map[string]any{
		"principalId":      principal,
		"roleDefinitionId": "/subscriptions/" + demoSubscription + "/providers/Microsoft.Authorization/roleDefinitions/" + role,
		"requestType":      requestType,
		"scheduleInfo":     map[string]any{"expiration": map[string]any{"type": "AfterDuration", "duration": duration}},
	}
	if duration == "" {
		props["scheduleInfo"] = map[string]any{"expiration": map[string]any{"type": "NoExpiration"}}
	}
	if linked != "" {
		props["linkedRoleEligibilityScheduleId"] = scope + "/providers/Microsoft.Authorization/roleEligibilitySchedules/" + linked
	}
	if justification != "" {
		props["justification"] = justification
	}
	b, _ := json.Marshal(map[string]any{"properties": props})
	return string(b)
}

// jsonField reads a dotted path from a JSON body, "" when absent.
func jsonField(body, path string) string {
	var v any
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		return ""
	}
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		v = m[k]
	}
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// canReadRG reports whether the principal's token reads the demo resource
// group, which Contributor and Reader allow.
func canReadRG(t *testing.T, s *Server, token string) bool {
	t.Helper()
	status, _, body := doRaw(t, s, http.MethodGet, s.URL()+demoRG+"?api-version=2021-04-01", token, "")
	switch status {
	case http.StatusOK:
		return true
	case http.StatusForbidden:
		return false
	}
	t.Fatalf("GET resource group: status %d, body %s", status, body)
	return false
}
