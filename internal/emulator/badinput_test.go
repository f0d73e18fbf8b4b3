package emulator

import (
	"encoding/json"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for Config.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// errorCode returns error.code of an ARM or Key Vault error body, or error
// of an Entra one.
func errorCode(t *testing.T, body string) string {
	t.Helper()
	var arm struct {
		Error json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &arm); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	var code struct {
		Code string `json:"code"`
	}
	if json.Unmarshal(arm.Error, &code) == nil {
		return code.Code
	}
	var s string
	_ = json.Unmarshal(arm.Error, &s)
	return s
}

func TestARMRejectsBadRequests(t *testing.T) {
	clock := newFakeClock()
	s := startServer(t, Config{Now: clock.Now})
	admin := mustToken(t, s, demoPipelineOID, "https://management.azure.com")
	expired := mustToken(t, s, demoPipelineOID, "https://management.azure.com")
	vaultToken := mustToken(t, s, demoPipelineOID, s.VaultResource())
	assignment := demoRG + "/providers/Microsoft.Authorization/roleAssignments/"
	validBody := `{"properties":{"roleDefinitionId":"/providers/Microsoft.Authorization/roleDefinitions/` + RoleReader + `","principalId":"` + demoApproverOID + `"}}`

	tests := []struct {
		name, method, path, token, body string
		status                          int
		code                            string
	}{
		{"missing api-version", "GET", demoRG, admin, "", 400, "MissingApiVersionParameter"},
		{"missing bearer", "GET", demoRG + "?api-version=2021-04-01", "", "", 401, "AuthenticationFailed"},
		{"garbage bearer", "GET", demoRG + "?api-version=2021-04-01", "not-a-jwt", "", 401, "InvalidAuthenticationToken"},
		{"vault audience at ARM", "GET", demoRG + "?api-version=2021-04-01", vaultToken, "", 401, "InvalidAuthenticationTokenAudience"},
		{"unparsable resource id", "GET", "/subscriptions//x?api-version=2021-04-01", admin, "", 400, "InvalidResourceId"},
		{"unknown api-version", "GET", assignment + "?api-version=1999-01-01", admin, "", 400, "InvalidApiVersionParameter"},
		{"unknown authorization type", "GET", demoRG + "/providers/Microsoft.Authorization/widgets?api-version=2022-04-01", admin, "", 404, "InvalidResourceType"},
		{"unknown resource group", "GET", "/subscriptions/" + demoSubscription + "/resourceGroups/nope?api-version=2021-04-01", admin, "", 404, "ResourceGroupNotFound"},
		{"unknown subscription", "GET", "/subscriptions/00000000-0000-4000-8000-000000000000?api-version=2022-12-01", admin, "", 404, "SubscriptionNotFound"},
		{"unknown resource", "GET", demoRG + "/providers/Microsoft.KeyVault/vaults/nope?api-version=2023-07-01", admin, "", 404, "ResourceNotFound"},
		{"assignment name not a GUID", "PUT", assignment + "abc?api-version=2022-04-01", admin, validBody, 400, "InvalidRoleAssignmentId"},
		{"malformed JSON", "PUT", assignment + "6a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d?api-version=2022-04-01", admin, `{"properties":`, 400, "InvalidRequestContent"},
		{"missing properties", "PUT", assignment + "6a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d?api-version=2022-04-01", admin, `{}`, 400, "InvalidRequestContent"},
		{"bare role GUID", "PUT", assignment + "6a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d?api-version=2022-04-01", admin,
			`{"properties":{"roleDefinitionId":"` + RoleReader + `","principalId":"` + demoApproverOID + `"}}`, 400, "InvalidRoleDefinitionId"},
		{"principal type mismatch", "PUT", assignment + "6a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d?api-version=2022-04-01", admin,
			strings.Replace(validBody, `"}}`, `","principalType":"ServicePrincipal"}}`, 1), 400, "UnmatchedPrincipalType"},
		{"oversized body", "PUT", assignment + "6a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d?api-version=2022-04-01", admin,
			`{"properties":{"description":"` + strings.Repeat("x", maxBodyBytes) + `"}}`, 413, "RequestEntityTooLarge"},
		{"bad filter", "GET", demoRG + "/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01&$filter=" + url.QueryEscape("principalId ne 'x'"), admin, "", 400, "InvalidFilter"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, h, body := doRaw(t, s, tc.method, s.URL()+tc.path, tc.token, tc.body)
			if status != tc.status {
				t.Errorf("status: got %d; want %d; body %s", status, tc.status, body)
			}
			if got := errorCode(t, body); got != tc.code {
				t.Errorf("code: got %q; want %q", got, tc.code)
			}
			if status == 401 && !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer ") {
				t.Errorf("WWW-Authenticate: got %q; want a Bearer challenge", h.Get("WWW-Authenticate"))
			}
		})
	}

	clock.Advance(2 * time.Hour)
	status, _, body := doRaw(t, s, "GET", s.URL()+demoRG+"?api-version=2021-04-01", expired, "")
	if status != 401 || errorCode(t, body) != "ExpiredAuthenticationToken" {
		t.Errorf("expired token: got %d %s; want 401 ExpiredAuthenticationToken", status, body)
	}
}

func mustToken(t *testing.T, s *Server, oid, audience string) string {
	t.Helper()
	tok, err := s.IssueToken(oid, audience, time.Hour)
	if err != nil {
		t.Fatalf("IssueToken: %v", err)
	}
	return tok
}

func TestTokenEndpointErrors(t *testing.T) {
	clock := newFakeClock()
	s := startServer(t, Config{Now: clock.Now})
	other := startServer(t, Config{})
	forged, err := other.MintGitHubToken(map[string]any{"iss": s.GitHubIssuer(), "sub": "repo:contoso/payments:environment:production"})
	if err != nil {
		t.Fatal(err)
	}
	stale, err := s.MintGitHubToken(map[string]any{"sub": "repo:contoso/payments:environment:production"})
	if err != nil {
		t.Fatal(err)
	}
	foreignIssuer, _ := s.MintGitHubToken(map[string]any{"iss": "https://token.actions.githubusercontent.com", "sub": "repo:contoso/payments:environment:production"})
	arm := "https://management.azure.com/.default"
	base := func(extra ...string) url.Values {
		v := url.Values{"grant_type": {"client_credentials"}, "client_id": {demoPipelineApp}, "scope": {arm + " openid profile offline_access"}}
		for i := 0; i+1 < len(extra); i += 2 {
			v.Set(extra[i], extra[i+1])
		}
		return v
	}
	assertion := func(tok string) url.Values {
		return base("client_assertion_type", assertionTypeJWTBearer, "client_assertion", tok)
	}
	clock.Advance(10 * time.Minute) // stale is now past its five-minute lifetime
	es256, err := s.MintGitHubToken(map[string]any{"sub": "repo:contoso/payments:environment:production", "alg": "ES256"})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		tenant string
		form   url.Values
		status int
		aadsts string
	}{
		{"unknown tenant", "00000000-0000-4000-8000-000000000000", base("client_secret", demoSecret), 400, "AADSTS90002"},
		{"unsupported grant", demoTenant, base("grant_type", "password", "client_secret", demoSecret), 400, "AADSTS70003"},
		{"missing client id", demoTenant, base("client_id", "", "client_secret", demoSecret), 400, "AADSTS900144"},
		{"unknown application", demoTenant, base("client_id", "00000000-0000-4000-8000-000000000001", "client_secret", demoSecret), 400, "AADSTS700016"},
		{"unknown resource", demoTenant, base("scope", "https://graph.example/.default", "client_secret", demoSecret), 400, "AADSTS500011"},
		{"wrong client secret", demoTenant, base("client_secret", "nope"), 401, "AADSTS7000215"},
		{"no credential", demoTenant, base(), 401, "AADSTS7000218"},
		{"malformed assertion", demoTenant, assertion("abc"), 400, "AADSTS50027"},
		{"expired assertion", demoTenant, assertion(stale), 401, "AADSTS700024"},
		{"assertion from other issuer", demoTenant, assertion(foreignIssuer), 401, "AADSTS700211"},
		{"assertion with forged signature", demoTenant, assertion(forged), 401, "AADSTS700027"},
		{"ES256 assertion accepted", demoTenant, assertion(es256), 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := s.Client().PostForm(s.URL()+"/"+tc.tenant+"/oauth2/v2.0/token", tc.form)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&body)
			if resp.StatusCode != tc.status {
				t.Errorf("status: got %d; want %d; body %v", resp.StatusCode, tc.status, body)
			}
			desc, _ := body["error_description"].(string)
			if tc.aadsts != "" && !strings.HasPrefix(desc, tc.aadsts+":") {
				t.Errorf("error_description: got %q; want prefix %s", desc, tc.aadsts)
			}
		})
	}
}

func TestVaultAuthorization(t *testing.T) {
	clock := newFakeClock()
	s := startServer(t, Config{Now: clock.Now, PropagationDelay: time.Minute, Seed: unconditionedDemoSeed()})
	vault := strings.TrimSuffix(s.VaultURL("kv-elevate-demo"), "/")
	get := vault + "/secrets/app-db-password?api-version=7.5"

	status, h, body := doRaw(t, s, "GET", get, "", "")
	wantChallenge := `Bearer authorization="` + s.URL() + "/" + demoTenant + `", resource="` + s.VaultResource() + `"`
	if status != 401 || h.Get("WWW-Authenticate") != wantChallenge {
		t.Errorf("no bearer: got %d %q; want 401 %q", status, h.Get("WWW-Authenticate"), wantChallenge)
	}
	if got := errorCode(t, body); got != "Unauthorized" {
		t.Errorf("no bearer code: got %q; want Unauthorized", got)
	}
	armToken := mustToken(t, s, demoPipelineOID, "https://management.azure.com")
	if status, _, _ := doRaw(t, s, "GET", get, armToken, ""); status != 401 {
		t.Errorf("ARM token at vault: got %d; want 401", status)
	}

	token := mustToken(t, s, demoPipelineOID, s.VaultResource())
	status, _, body = doRaw(t, s, "GET", get, token, "")
	if status != 403 || !strings.Contains(body, `"innererror":{"code":"ForbiddenByRbac"}`) {
		t.Errorf("no role: got %d %s; want 403 ForbiddenByRbac", status, body)
	}

	// Grant Secrets User at the vault: not effective until the delay passes.
	armAdmin := mustToken(t, s, demoPipelineOID, "https://management.azure.com")
	name := "7b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e"
	put := s.URL() + demoVault + "/providers/Microsoft.Authorization/roleAssignments/" + name + "?api-version=2022-04-01"
	body = `{"properties":{"roleDefinitionId":"/providers/Microsoft.Authorization/roleDefinitions/` + RoleKeyVaultSecretsUser + `","principalId":"` + demoPipelineOID + `","principalType":"ServicePrincipal"}}`
	if status, _, got := doRaw(t, s, "PUT", put, armAdmin, body); status != 201 {
		t.Fatalf("grant: got %d %s; want 201", status, got)
	}
	if status, _, _ := doRaw(t, s, "GET", get, token, ""); status != 403 {
		t.Errorf("before propagation: got %d; want 403", status)
	}
	clock.Advance(time.Minute)
	if status, _, got := doRaw(t, s, "GET", get, token, ""); status != 200 {
		t.Errorf("after propagation: got %d %s; want 200", status, got)
	}
	if status, _, _ := doRaw(t, s, "PUT", vault+"/secrets/x?api-version=7.5", token, `{"value":"v"}`); status != 403 {
		t.Errorf("setSecret as Secrets User: got %d; want 403", status)
	}

	// Revoke: access lingers for the delay, then ends.
	if status, _, got := doRaw(t, s, "DELETE", put, armAdmin, ""); status != 200 {
		t.Fatalf("revoke: got %d %s; want 200", status, got)
	}
	if status, _, _ := doRaw(t, s, "GET", get, token, ""); status != 200 {
		t.Errorf("right after revoke: got %d; want 200 until the delay passes", status)
	}
	clock.Advance(time.Minute)
	if status, _, _ := doRaw(t, s, "GET", get, token, ""); status != 403 {
		t.Errorf("after revoke propagation: got %d; want 403", status)
	}
}

func TestAssignmentRulesAndLimits(t *testing.T) {
	clock := newFakeClock()
	seed := unconditionedDemoSeed()
	seed.Locks = []Lock{{Scope: demoVault, Name: "keep", Level: LockCanNotDelete}}
	s := startServer(t, Config{Now: clock.Now, ReplicationDelay: time.Minute, AssignmentLimit: 3, Seed: unconditionedDemoSeed()})
	locked := startServer(t, Config{Seed: seed})
	newPrincipal := "8c9d0e1f-2a3b-4c4d-8e5f-6a7b8c9d0e1f"
	if err := s.AddPrincipal(Principal{ObjectID: newPrincipal, DisplayName: "fresh", Type: PrincipalUser}); err != nil {
		t.Fatal(err)
	}
	token := mustToken(t, s, demoPipelineOID, "https://management.azure.com")
	put := func(srv *Server, tok, scope, name, principal, role string) (int, string) {
		body := `{"properties":{"roleDefinitionId":"/providers/Microsoft.Authorization/roleDefinitions/` + role + `","principalId":"` + principal + `"}}`
		status, _, got := doRaw(t, srv, "PUT", srv.URL()+scope+"/providers/Microsoft.Authorization/roleAssignments/"+name+"?api-version=2022-04-01", tok, body)
		return status, got
	}

	status, body := put(s, token, demoRG, "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c01", newPrincipal, RoleReader)
	if status != 400 || errorCode(t, body) != "PrincipalNotFound" {
		t.Errorf("inside replication delay: got %d %s; want 400 PrincipalNotFound", status, body)
	}
	clock.Advance(time.Minute)
	if status, body := put(s, token, demoRG, "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c01", newPrincipal, RoleReader); status != 201 {
		t.Errorf("after replication delay: got %d %s; want 201", status, body)
	}
	// The seed holds one assignment, so the limit of 3 allows one more.
	if status, body := put(s, token, demoRG, "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c02", newPrincipal, RoleContributor); status != 201 {
		t.Errorf("third assignment: got %d %s; want 201", status, body)
	}
	status, body = put(s, token, demoRG, "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c03", demoApproverOID, RoleReader)
	if status != 400 || errorCode(t, body) != "RoleAssignmentLimitExceeded" {
		t.Errorf("over the limit: got %d %s; want 400 RoleAssignmentLimitExceeded", status, body)
	}

	// A CanNotDelete lock above the assignment blocks its delete only.
	lockedToken := mustToken(t, locked, demoPipelineOID, "https://management.azure.com")
	name := "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c04"
	if status, body := put(locked, lockedToken, demoVault, name, demoApproverOID, RoleReader); status != 201 {
		t.Fatalf("create under CanNotDelete: got %d %s; want 201", status, body)
	}
	status, _, body = doRaw(t, locked, "DELETE", locked.URL()+demoVault+"/providers/Microsoft.Authorization/roleAssignments/"+name+"?api-version=2022-04-01", lockedToken, "")
	if status != 409 || errorCode(t, body) != "ScopeLocked" {
		t.Errorf("delete under lock: got %d %s; want 409 ScopeLocked", status, body)
	}
}

func TestListAssignmentFilters(t *testing.T) {
	s := startServer(t, Config{Seed: unconditionedDemoSeed()})
	token := mustToken(t, s, demoPipelineOID, "https://management.azure.com")
	body := `{"properties":{"roleDefinitionId":"/providers/Microsoft.Authorization/roleDefinitions/` + RoleKeyVaultReader + `","principalId":"` + demoApproverOID + `"}}`
	below := "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f"
	if status, _, got := doRaw(t, s, "PUT", s.URL()+demoVault+"/providers/Microsoft.Authorization/roleAssignments/"+below+"?api-version=2022-04-01", token, body); status != 201 {
		t.Fatalf("create: got %d %s", status, got)
	}
	tests := []struct {
		name   string
		filter string
		want   []string
	}{
		{"no filter at and below", "", []string{demoStandingName, below}},
		{"atScope only at or above", "atScope()", []string{demoStandingName}},
		{"principal below scope", "principalId eq '" + demoApproverOID + "'", []string{below}},
		{"assignedTo and atScope", "atScope() and assignedTo('" + demoApproverOID + "')", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := s.URL() + demoRG + "/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01"
			if tc.filter != "" {
				u += "&$filter=" + url.QueryEscape(tc.filter)
			}
			status, _, got := doRaw(t, s, "GET", u, token, "")
			if status != 200 {
				t.Fatalf("list: got %d %s", status, got)
			}
			var list struct {
				Value []struct {
					Name string `json:"name"`
				} `json:"value"`
			}
			_ = json.Unmarshal([]byte(got), &list)
			var names []string
			for _, v := range list.Value {
				names = append(names, v.Name)
			}
			if strings.Join(names, ",") != strings.Join(tc.want, ",") {
				t.Errorf("names: got %v; want %v", names, tc.want)
			}
		})
	}
}
