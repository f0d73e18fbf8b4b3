package emulator

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// fixtureRoot holds real request and response examples (azure-rest-api-specs
// examples, Entra docs). It sits in shared/ beside the repository root, in
// CI too.
const fixtureRoot = "../../../shared/fixtures"

// Ids used by the ARM fixtures, seeded so their requests succeed.
const (
	fixtureSubscription = "a925f2f7-5c63-4b7b-8799-25a5f97bc3b2"
	fixturePrincipal    = "ce2ce14e-85d7-4629-bdbc-454d0519d987"
	fixtureAssignment   = "b0f43c54-e787-4862-89b1-a653fa9cf747"
	fixtureOwnerOID     = "6d8f4e2a-1b3c-4d5e-8f9a-0b1c2d3e4f50"
	// The fixtures' role 0b5fe924-... is not a built-in role the emulator
	// embeds, so requests use Reader in its place; shapes do not change.
	fixtureRole = "0b5fe924-9a61-425c-96af-cfe6e287ca2d"
)

// fixtureExample is an azure-rest-api-specs example file.
type fixtureExample struct {
	Parameters map[string]json.RawMessage `json:"parameters"`
	Responses  map[string]struct {
		Body json.RawMessage `json:"body"`
	} `json:"responses"`
}

// skipWithoutFixtures skips a test whose fixture is absent, because a clone
// of the repository alone has no shared/ beside it. CI sets
// ELEVATE_REQUIRE_FIXTURES=1, which turns the skip into a failure.
func skipWithoutFixtures(t *testing.T, rel string) {
	t.Helper()
	if os.Getenv("ELEVATE_REQUIRE_FIXTURES") != "" {
		t.Fatalf("fixture %s not found under %s", rel, fixtureRoot)
	}
	t.Skipf("fixture %s not found: the shared fixtures are not checked out beside the repository", rel)
}

func loadExample(t *testing.T, rel string) fixtureExample {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fixtureRoot, rel))
	if os.IsNotExist(err) {
		skipWithoutFixtures(t, rel)
	}
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	var ex fixtureExample
	if err := json.Unmarshal(data, &ex); err != nil {
		t.Fatalf("parse fixture %s: %v", rel, err)
	}
	return ex
}

func (ex fixtureExample) param(t *testing.T, name string) string {
	t.Helper()
	var s string
	if err := json.Unmarshal(ex.Parameters[name], &s); err != nil {
		t.Fatalf("fixture parameter %q: %v", name, err)
	}
	return s
}

// fixtureSeed is the demo seed plus the fixtures' subscription, principal
// and assignment, and an Owner who makes the requests.
func fixtureSeed() Seed {
	seed := DefaultSeed()
	seed.Subscriptions = append(seed.Subscriptions, Subscription{ID: fixtureSubscription, DisplayName: "fixture subscription"})
	seed.Principals = append(seed.Principals,
		Principal{ObjectID: fixturePrincipal, DisplayName: "fixture user", Type: PrincipalUser},
		Principal{ObjectID: fixtureOwnerOID, DisplayName: "owner@contoso.example", Type: PrincipalUser})
	seed.RoleAssignments = append(seed.RoleAssignments,
		SeedAssignment{Name: "0a9b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d", Scope: "/subscriptions/" + fixtureSubscription,
			RoleName: "Owner", PrincipalID: fixtureOwnerOID},
		SeedAssignment{Name: "1a9b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d", Scope: "/subscriptions/" + demoSubscription,
			RoleName: "Key Vault Administrator", PrincipalID: fixtureOwnerOID},
		SeedAssignment{Name: fixtureAssignment, Scope: "/subscriptions/" + fixtureSubscription,
			RoleName: "Reader", PrincipalID: fixturePrincipal, PrincipalType: PrincipalUser})
	return seed
}

// allowedExtras are fields the emulator returns beyond a fixture, with the
// reason: real ARM returns them and armauthorization/v2 models them
// (RoleAssignmentProperties), but the spec examples leave them out.
var allowedExtras = map[string]bool{
	"properties.condition":                          true,
	"properties.conditionVersion":                   true,
	"properties.createdOn":                          true,
	"properties.updatedOn":                          true,
	"properties.createdBy":                          true,
	"properties.updatedBy":                          true,
	"properties.delegatedManagedIdentityResourceId": true,
	"properties.description":                        true,
	// Entra returns ext_expires_in next to expires_in; MSAL reads both.
	"ext_expires_in": true,
	// Key Vault returns recoverableDays with recoveryLevel, on list items
	// too; azsecrets models both in SecretAttributes.
	"attributes.recoverableDays": true,
	"attributes.recoveryLevel":   true,
	// The UpdateSecret step sets these on the secret the later steps read.
	"contentType": true,
	"tags":        true,
}

// compareShape checks that got has the fixture's field names and JSON
// types, recursively; arrays compare each element with the fixture's first.
func compareShape(path string, want, got any) []string {
	var diffs []string
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: got %s; want object", path, jsonType(got))}
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				diffs = append(diffs, fmt.Sprintf("%s: missing field", join(path, k)))
				continue
			}
			diffs = append(diffs, compareShape(join(path, k), wv, gv)...)
		}
		for k := range g {
			if _, ok := w[k]; !ok && !allowedExtras[stripIndex(join(path, k))] {
				diffs = append(diffs, fmt.Sprintf("%s: extra field", join(path, k)))
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok {
			return []string{fmt.Sprintf("%s: got %s; want array", path, jsonType(got))}
		}
		if len(w) > 0 {
			for i, gv := range g {
				diffs = append(diffs, compareShape(fmt.Sprintf("%s[%d]", path, i), w[0], gv)...)
			}
		}
	default:
		if jsonType(want) != jsonType(got) {
			diffs = append(diffs, fmt.Sprintf("%s: got %s; want %s", path, jsonType(got), jsonType(want)))
		}
	}
	sort.Strings(diffs)
	return diffs
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// stripIndex turns value[0].properties.x into properties.x for the
// allowlist.
func stripIndex(p string) string {
	if i := strings.Index(p, "]."); i >= 0 {
		return p[i+2:]
	}
	return p
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "boolean"
	}
	return fmt.Sprintf("%T", v)
}

func checkShape(t *testing.T, status, wantStatus int, body string, wantBody json.RawMessage) {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("status: got %d; want %d; body %s", status, wantStatus, body)
	}
	if len(wantBody) == 0 {
		if strings.TrimSpace(body) != "" {
			t.Errorf("body: got %q; want none", body)
		}
		return
	}
	var want, got any
	if err := json.Unmarshal(wantBody, &want); err != nil {
		t.Fatalf("fixture body: %v", err)
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("response body %q: %v", body, err)
	}
	for _, d := range compareShape("", want, got) {
		t.Error(d)
	}
}

func TestFixtureRoleAssignments(t *testing.T) {
	s := startServer(t, Config{Seed: fixtureSeed()})
	token, err := s.IssueToken(fixtureOwnerOID, "https://management.azure.com", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	arm := func(scope, suffix, apiVersion string) string {
		return s.URL() + "/" + strings.TrimPrefix(scope, "/") + suffix + "?api-version=" + apiVersion
	}

	t.Run("create then re-put", func(t *testing.T) {
		ex := loadExample(t, "azure/authorization/2022-04-01/RoleAssignments_CreateForSubscription.json")
		var params struct {
			Properties map[string]string `json:"properties"`
		}
		if err := json.Unmarshal(ex.Parameters["parameters"], &params); err != nil {
			t.Fatal(err)
		}
		params.Properties["roleDefinitionId"] = strings.Replace(params.Properties["roleDefinitionId"], fixtureRole, RoleContributor, 1)
		body, _ := json.Marshal(params)
		u := arm(ex.param(t, "scope"), "/providers/Microsoft.Authorization/roleAssignments/"+ex.param(t, "roleAssignmentName"), ex.param(t, "api-version"))
		status, _, got := doRaw(t, s, "PUT", u, token, string(body))
		checkShape(t, status, 201, got, ex.Responses["201"].Body)
		status, _, got = doRaw(t, s, "PUT", u, token, string(body))
		checkShape(t, status, 200, got, ex.Responses["200"].Body)
	})

	t.Run("get by scope and name", func(t *testing.T) {
		ex := loadExample(t, "azure/authorization/2022-04-01/RoleAssignments_Get.json")
		u := arm(ex.param(t, "scope"), "/providers/Microsoft.Authorization/roleAssignments/"+ex.param(t, "roleAssignmentName"), ex.param(t, "api-version"))
		status, _, got := doRaw(t, s, "GET", u, token, "")
		checkShape(t, status, 200, got, ex.Responses["200"].Body)
	})

	t.Run("list for scope", func(t *testing.T) {
		ex := loadExample(t, "azure/authorization/2022-04-01/RoleAssignments_ListForScope.json")
		u := arm(ex.param(t, "scope"), "/providers/Microsoft.Authorization/roleAssignments", ex.param(t, "api-version"))
		status, _, got := doRaw(t, s, "GET", u, token, "")
		checkShape(t, status, 200, got, ex.Responses["200"].Body)
	})

	t.Run("delete then delete again", func(t *testing.T) {
		ex := loadExample(t, "azure/authorization/2022-04-01/RoleAssignments_Delete.json")
		u := arm(ex.param(t, "scope"), "/providers/Microsoft.Authorization/roleAssignments/"+ex.param(t, "roleAssignmentName"), ex.param(t, "api-version"))
		status, _, got := doRaw(t, s, "DELETE", u, token, "")
		checkShape(t, status, 200, got, ex.Responses["200"].Body)
		status, _, got = doRaw(t, s, "DELETE", u, token, "")
		checkShape(t, status, 204, got, nil)
	})
}

func TestFixtureRoleDefinitions(t *testing.T) {
	s := startServer(t, Config{Seed: fixtureSeed()})
	token, err := s.IssueToken(fixtureOwnerOID, "https://management.azure.com/", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	sub := "/subscriptions/" + fixtureSubscription

	t.Run("get by id", func(t *testing.T) {
		ex := loadExample(t, "azure/authorization/2022-04-01/GetRoleDefinitionById.json")
		u := s.URL() + sub + "/providers/Microsoft.Authorization/roleDefinitions/" + RoleReader + "?api-version=" + ex.param(t, "api-version")
		status, _, got := doRaw(t, s, "GET", u, token, "")
		checkShape(t, status, 200, got, ex.Responses["200"].Body)
	})

	t.Run("list at scope", func(t *testing.T) {
		ex := loadExample(t, "azure/authorization/2018-01-01-preview/GetRoleDefinitionAtScope.json")
		u := s.URL() + sub + "/providers/Microsoft.Authorization/roleDefinitions?api-version=" + ex.param(t, "api-version")
		status, _, got := doRaw(t, s, "GET", u, token, "")
		checkShape(t, status, 200, got, ex.Responses["200"].Body)
	})
}

func TestFixtureEntraToken(t *testing.T) {
	if _, err := os.Stat(filepath.Join(fixtureRoot, "entra")); err != nil {
		skipWithoutFixtures(t, "entra")
	}
	s := startServer(t, Config{})
	tokenURL := s.URL() + "/" + demoTenant + "/oauth2/v2.0/token"
	post := func(form url.Values) (int, string) {
		resp, err := s.Client().PostForm(tokenURL, form)
		if err != nil {
			t.Fatalf("POST token: %v", err)
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("read token response: %v", err)
		}
		return resp.StatusCode, string(data)
	}
	readFixture := func(rel string) json.RawMessage {
		data, err := os.ReadFile(filepath.Join(fixtureRoot, rel))
		if os.IsNotExist(err) {
			t.Skipf("fixture %s not found", rel)
		}
		if err != nil {
			t.Fatal(err)
		}
		return data
	}

	t.Run("client secret success", func(t *testing.T) {
		want := readFixture("entra/token-endpoint/token.response-200.json")
		status, got := post(url.Values{"grant_type": {"client_credentials"}, "client_id": {demoPipelineApp},
			"client_secret": {demoSecret}, "scope": {"https://management.azure.com/.default"}})
		checkShape(t, status, 200, got, want)
	})

	t.Run("invalid scope error", func(t *testing.T) {
		want := readFixture("entra/token-endpoint/token.error-400-invalid_scope.json")
		status, got := post(url.Values{"grant_type": {"client_credentials"}, "client_id": {demoPipelineApp},
			"client_secret": {demoSecret}, "scope": {"https://management.azure.com/user_impersonation"}})
		checkShape(t, status, 400, got, want)
		if !strings.Contains(got, `"invalid_scope"`) || !strings.Contains(got, "AADSTS70011") {
			t.Errorf("body: got %s; want invalid_scope with AADSTS70011", got)
		}
	})
}

func TestFixtureKeyVaultSecrets(t *testing.T) {
	s := startServer(t, Config{Seed: fixtureSeed()})
	token, err := s.IssueToken(fixtureOwnerOID, s.VaultResource(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	vault := strings.TrimSuffix(s.VaultURL("kv-elevate-demo"), "/")
	dir := "azure/keyvault/2026-04-01/"

	set := loadExample(t, dir+"SetSecret-example.json")
	name := set.param(t, "secret-name")
	apiVersion := "?api-version=" + set.param(t, "api-version")
	status, _, got := doRaw(t, s, "PUT", vault+"/secrets/"+name+apiVersion, token, string(set.Parameters["parameters"]))
	checkShape(t, status, 200, got, set.Responses["200"].Body)
	var created struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal([]byte(got), &created)
	version := created.ID[strings.LastIndex(created.ID, "/")+1:]
	// A second version makes the one-per-page versions list carry a
	// nextLink, as in the fixture.
	if status, _, got := doRaw(t, s, "PUT", vault+"/secrets/"+name+apiVersion, token, `{"value":"second"}`); status != 200 {
		t.Fatalf("second version: got %d %s; want 200", status, got)
	}

	tests := []struct {
		file, method, path, body string
	}{
		{"GetSecret-example.json", "GET", "/secrets/" + name + "/" + version, ""},
		{"GetSecretVersions-example.json", "GET", "/secrets/" + name + "/versions", ""},
		{"UpdateSecret-example.json", "PATCH", "/secrets/" + name + "/" + version, "parameters"},
		{"DeleteSecret-example.json", "DELETE", "/secrets/" + name, ""},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			ex := loadExample(t, dir+tc.file)
			var body string
			if tc.body != "" {
				body = string(ex.Parameters[tc.body])
			}
			query := apiVersion
			if raw, ok := ex.Parameters["maxresults"]; ok {
				query += "&maxresults=" + string(raw)
			}
			status, _, got := doRaw(t, s, tc.method, vault+tc.path+query, token, body)
			checkShape(t, status, 200, got, ex.Responses["200"].Body)
		})
	}
}
