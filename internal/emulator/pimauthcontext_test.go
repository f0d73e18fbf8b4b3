package emulator

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// tokenWithACRS signs an ARM or Graph token for a user whose sign-in met
// the authentication contexts acrs, as Entra writes them in the acrs claim.
func tokenWithACRS(t *testing.T, s *Server, oid, audience string, acrs ...string) string {
	t.Helper()
	now := s.now()
	claims := jwt.MapClaims{
		"aud": audience, "iss": s.entra.url, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(72 * time.Hour).Unix(),
		"oid": oid, "sub": oid, "tid": s.TenantID(), "ver": "1.0", "idtyp": "user", "acrs": acrs,
	}
	tok, err := s.entra.sign(claims, "RS256")
	if err != nil {
		t.Fatalf("sign token: %v", err)
	}
	return tok
}

// authContextSeed adds to the PIM seed an authentication context rule
// (claim c1) on the user's Reader eligibility and on Entra Global Reader.
func authContextSeed() Seed {
	seed := pimSeed()
	seed.RolePolicies = append(seed.RolePolicies,
		SeedRolePolicy{Scope: demoRG, RoleName: "Reader", RequireAuthenticationContext: "c1"},
		SeedRolePolicy{DirectoryScopeID: "/", RoleDefinitionID: entraGlobalReader, RequireAuthenticationContext: "c1", RequireTicket: true})
	return seed
}

func TestPIMAuthContextRule(t *testing.T) {
	clock := &fakeClock{t: pimBase}
	s := startServer(t, Config{Seed: authContextSeed(), Now: clock.Now})
	body := activateBody("SelfActivate", pimUserOID, RoleReader, demoRG, eligUserReaderRG, "PT1H", "x")
	tests := []struct {
		name   string
		token  string
		status int
		code   string
	}{
		{"token without acrs", tokenFor(t, s, pimUserOID), 400, "RoleAssignmentRequestAcrsValidationFailed"},
		{"token with another context", tokenWithACRS(t, s, pimUserOID, "https://management.azure.com", "c2"), 400,
			"RoleAssignmentRequestAcrsValidationFailed"},
		{"token with the context", tokenWithACRS(t, s, pimUserOID, "https://management.azure.com", "c2", "c1"), 201, ""},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := "1e000000-0000-4000-8000-00000000000" + string(rune('a'+i))
			status, _, got := doRaw(t, s, http.MethodPut, requestURL(s, demoRG, name, ""), tc.token, body)
			if status != tc.status {
				t.Fatalf("status: got %d; want %d (body %s)", status, tc.status, got)
			}
			if tc.code == "" {
				return
			}
			if code := jsonField(got, "error.code"); code != tc.code {
				t.Errorf("error code: got %q; want %q", code, tc.code)
			}
			challenge, err := url.QueryUnescape(strings.TrimPrefix(jsonField(got, "error.message"), "&claims="))
			if err != nil || !strings.Contains(challenge, `"acrs":{"essential":true,"value":"c1"}`) {
				t.Errorf("claims challenge %q (%v); want acrs value c1", challenge, err)
			}
		})
	}

	reader := tokenFor(t, s, demoPipelineOID)
	status, _, list := doRaw(t, s, http.MethodGet, s.URL()+demoRG+"/providers/Microsoft.Authorization/roleManagementPolicies?api-version=2020-10-01", reader, "")
	if status != http.StatusOK {
		t.Fatalf("list policies: got %d; want 200", status)
	}
	want := `"claimValue":"c1","id":"AuthenticationContext_EndUser_Assignment","isEnabled":true`
	if n := strings.Count(list, want); n != 2 { // rules and effectiveRules of the Reader policy
		t.Errorf("enabled authentication context rules: got %d; want 2 (%s)", n, want)
	}
}

func TestGraphPolicyAssignments(t *testing.T) {
	clock := &fakeClock{t: pimBase}
	s := startServer(t, Config{Seed: authContextSeed(), Now: clock.Now})
	runner := graphTokenFor(t, s, pimRunnerOID)
	base := s.URL() + "/v1.0/policies/roleManagementPolicyAssignments?"
	filter := func(f string) string { return "$filter=" + url.QueryEscape(f) }
	expand := "&$expand=" + url.QueryEscape("policy($expand=rules)")

	status, _, body := doRaw(t, s, http.MethodGet, base+filter("scopeId eq '/' and scopeType eq 'Directory' and roleDefinitionId eq '"+entraGlobalReader+"'")+expand, runner, "")
	if status != http.StatusOK {
		t.Fatalf("list: got %d %s; want 200", status, body)
	}
	for _, want := range []string{
		`"roleDefinitionId":"` + entraGlobalReader + `"`, `"scopeId":"/"`, `"scopeType":"Directory"`,
		`"@odata.type":"#microsoft.graph.unifiedRoleManagementPolicyAuthenticationContextRule"`,
		`"claimValue":"c1"`, `"isEnabled":true`, `"enabledRules":["Ticketing"]`,
		`"@odata.type":"#microsoft.graph.unifiedRoleManagementPolicyExpirationRule"`, `"operations":["all"]`,
		`roleManagementPolicyAssignments(policy(rules()))`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("policy assignment lacks %s", want)
		}
	}
	if strings.Contains(body, `"ruleType"`) || strings.Contains(body, `"targetObjects"`) {
		t.Errorf("policy assignment has ARM-only fields: %s", body)
	}
	if n := strings.Count(body, `"policyId"`); n != 1 {
		t.Errorf("assignments for one role: got %d; want 1", n)
	}

	status, _, body = doRaw(t, s, http.MethodGet, base+filter("scopeId eq '/' and scopeType eq 'DirectoryRole' and roleDefinitionId eq '"+entraAppAdmin+"'")+expand, runner, "")
	if status != http.StatusOK || !strings.Contains(body, `"claimValue":null`) || !strings.Contains(body, `"isApprovalRequired":true`) {
		t.Errorf("app admin policy: got %d %s; want the auth context rule off and approval on", status, body)
	}
	status, _, body = doRaw(t, s, http.MethodGet, base+filter("scopeId eq '/' and scopeType eq 'Directory'"), runner, "")
	if status != http.StatusOK || strings.Contains(body, `"rules"`) || strings.Count(body, `"policyId"`) != len(builtinDirectoryRoles) {
		t.Errorf("list without expand: got %d; want one assignment per Entra role without rules (%s)", status, body)
	}

	status, _, _ = doRaw(t, s, http.MethodGet, base+filter("roleDefinitionId eq '"+entraGlobalReader+"'"), runner, "")
	if status != http.StatusBadRequest {
		t.Errorf("filter without scope: got %d; want 400", status)
	}
	status, _, _ = doRaw(t, s, http.MethodGet, base+filter("scopeId eq '/' and scopeType eq 'Directory'"), graphTokenFor(t, s, pimOtherOID), "")
	if status != http.StatusForbidden {
		t.Errorf("caller without app role: got %d; want 403", status)
	}
}
