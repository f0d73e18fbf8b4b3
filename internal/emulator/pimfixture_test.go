package emulator

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Ids used by the PIM fixtures, seeded so their requests succeed.
const (
	fixturePIMSubscription    = "dfa2a084-766f-4003-8ae1-c4aeb893a99f"
	fixturePIMPrincipal       = "a3bb8764-cb92-4276-9d2a-ca1e895e55ea"
	fixturePIMEligibility     = "b1477448-2cc6-4ceb-93b4-54a202a89413"
	fixturePIMRequest         = "fea7a502-9a96-4806-a26f-eee560e52045"
	fixturePolicySubscription = "129ff972-28f8-46b8-a726-e497be039368"
	fixtureGraphAdmin         = "3fbd929d-8c56-4462-851e-0eb9a7b3a2a5"
	fixtureGraphUser          = "071cc716-8147-4397-a5ba-b2105951cc0b"
	fixtureGraphMailAdmin     = "aaaaaaaa-bbbb-cccc-1111-222222222222"
	// The fixtures' role c8d4ff99-... is named Contributor but is not the
	// built-in Contributor GUID, so requests use Contributor in its place.
	fixturePIMRole = "c8d4ff99-41c3-41a8-9f60-21dfdad59608"
)

// pimExtras are fields the emulator returns that the fixture responses
// leave out. linkedRoleEligibilityScheduleId is a property of the
// armauthorization v2 model, and returning it shows which eligibility an
// activation used.
var pimExtras = []string{"properties.linkedRoleEligibilityScheduleId"}

// comparePIMShape checks field names and JSON types like compareShape,
// but a null on either side matches any type, because the fixtures hold
// null where the emulator has a value (targetRoleAssignmentScheduleInstanceId)
// and the other way round. Arrays compare each element with the fixture's
// element of the same index, or its first.
func comparePIMShape(path string, want, got any) []string {
	if want == nil || got == nil {
		return nil
	}
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
			diffs = append(diffs, comparePIMShape(join(path, k), wv, gv)...)
		}
		for k := range g {
			if _, ok := w[k]; !ok && !slices.Contains(pimExtras, stripIndex(join(path, k))) && k != "@odata.context" {
				diffs = append(diffs, fmt.Sprintf("%s: extra field", join(path, k)))
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok {
			return []string{fmt.Sprintf("%s: got %s; want array", path, jsonType(got))}
		}
		for i, gv := range g {
			if len(w) > 0 {
				diffs = append(diffs, comparePIMShape(fmt.Sprintf("%s[%d]", path, i), w[min(i, len(w)-1)], gv)...)
			}
		}
	default:
		if jsonType(want) != jsonType(got) {
			diffs = append(diffs, fmt.Sprintf("%s: got %s; want %s", path, jsonType(got), jsonType(want)))
		}
	}
	return diffs
}

func checkPIMShape(t *testing.T, status, wantStatus int, body string, want any) {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("status: got %d; want %d; body %s", status, wantStatus, body)
	}
	var got any
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("response body %q: %v", body, err)
	}
	for _, d := range comparePIMShape("", want, got) {
		t.Error(d)
	}
}

// fixturePIMSeed adds the fixtures' subscriptions, principal, eligibility
// and a policy that lets their request through.
func fixturePIMSeed(approval bool) Seed {
	seed := DefaultSeed()
	seed.Subscriptions = append(seed.Subscriptions,
		Subscription{ID: fixturePIMSubscription, DisplayName: "Pay-As-You-Go"},
		Subscription{ID: fixturePolicySubscription, DisplayName: "Pay-As-You-Go"})
	seed.Principals = append(seed.Principals,
		Principal{ObjectID: fixturePIMPrincipal, DisplayName: "user@my-tenant.com", Type: PrincipalUser},
		Principal{ObjectID: fixtureGraphAdmin, DisplayName: "admin@contoso.example", Type: PrincipalUser, GraphAppRoles: []string{"RoleManagement.ReadWrite.Directory"}},
		Principal{ObjectID: fixtureGraphUser, DisplayName: "it@contoso.example", Type: PrincipalUser, GraphAppRoles: []string{"RoleManagement.ReadWrite.Directory"}},
		Principal{ObjectID: fixtureGraphMailAdmin, DisplayName: "mail@contoso.example", Type: PrincipalUser})
	subScope := "/subscriptions/" + fixturePIMSubscription
	seed.RoleAssignments = append(seed.RoleAssignments, SeedAssignment{Name: "5f5f5f5f-1111-4222-8333-444455556666",
		Scope: "/subscriptions/" + fixturePolicySubscription, RoleName: "Reader", PrincipalID: fixturePIMPrincipal})
	seed.Eligibilities = []SeedEligibility{
		{Name: fixturePIMEligibility, PrincipalID: fixturePIMPrincipal, Scope: subScope, RoleName: "Contributor"},
		{PrincipalID: fixtureGraphUser, DirectoryScopeID: "/", RoleDefinitionID: "8424c6f0-a189-499e-bbd0-26c1753c96d4"},
	}
	seed.RolePolicies = []SeedRolePolicy{{Scope: subScope, RoleName: "Contributor", MaximumDuration: "PT8H", RequireApproval: approval}}
	return seed
}

// readFixtureJSON reads a fixture file, skipping the test when absent.
func readFixtureJSON(t *testing.T, rel string) any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fixtureRoot, rel))
	if os.IsNotExist(err) {
		skipWithoutFixtures(t, rel)
	}
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("parse fixture %s: %v", rel, err)
	}
	return v
}

// fixtureRequestBody returns the fixture's PUT body with the built-in
// Contributor in place of its role.
func fixtureRequestBody(t *testing.T, ex fixtureExample) string {
	t.Helper()
	raw := strings.ReplaceAll(string(ex.Parameters["parameters"]), fixturePIMRole, RoleContributor)
	return raw
}

// armScope turns the fixtures' "providers/Microsoft.Subscription/
// subscriptions/ID" into the "/subscriptions/ID" form the SDK sends.
func armScope(fixtureScope string) string {
	return "/" + strings.TrimPrefix(fixtureScope, "providers/Microsoft.Subscription/")
}

func TestFixturePIMScheduleRequests(t *testing.T) {
	for _, version := range []string{"2020-10-01", "2024-09-01-preview"} {
		t.Run(version, func(t *testing.T) {
			put := loadExample(t, "azure/authorization/"+version+"/PutRoleAssignmentScheduleRequest.json")
			clock := &fakeClock{t: time.Date(2020, 9, 9, 21, 35, 27, 910_000_000, time.UTC)}
			s := startServer(t, Config{Seed: fixturePIMSeed(false), Now: clock.Now})
			token := tokenFor(t, s, fixturePIMPrincipal)
			scope := armScope(put.param(t, "scope"))
			url := s.URL() + scope + "/providers/Microsoft.Authorization/roleAssignmentScheduleRequests/" + fixturePIMRequest + "?api-version=" + version

			status, _, body := doRaw(t, s, http.MethodPut, url, token, fixtureRequestBody(t, put))
			var want any
			_ = json.Unmarshal(put.Responses["201"].Body, &want)
			checkPIMShape(t, status, http.StatusCreated, body, want)
			if got := jsonField(body, "properties.status"); got != "Provisioned" {
				t.Errorf("status: got %q; want Provisioned", got)
			}

			get := loadExample(t, "azure/authorization/2020-10-01/GetRoleAssignmentScheduleRequestByName.json")
			status, _, body = doRaw(t, s, http.MethodGet, url, token, "")
			_ = json.Unmarshal(get.Responses["200"].Body, &want)
			checkPIMShape(t, status, http.StatusOK, body, want)
		})
	}
}

func TestFixturePIMCancel(t *testing.T) {
	put := loadExample(t, "azure/authorization/2020-10-01/PutRoleAssignmentScheduleRequest.json")
	cancel := loadExample(t, "azure/authorization/2020-10-01/CancelRoleAssignmentScheduleRequestByName.json")
	clock := &fakeClock{t: time.Date(2020, 9, 9, 21, 35, 27, 910_000_000, time.UTC)}
	s := startServer(t, Config{Seed: fixturePIMSeed(true), Now: clock.Now})
	token := tokenFor(t, s, fixturePIMPrincipal)
	base := s.URL() + armScope(cancel.param(t, "scope")) + "/providers/Microsoft.Authorization/roleAssignmentScheduleRequests/" + cancel.param(t, "roleAssignmentScheduleRequestName")
	status, _, body := doRaw(t, s, http.MethodPut, base+"?api-version=2020-10-01", token, fixtureRequestBody(t, put))
	if status != http.StatusCreated || jsonField(body, "properties.status") != "PendingApproval" {
		t.Fatalf("PUT: got %d %s; want 201 PendingApproval", status, body)
	}
	status, _, body = doRaw(t, s, http.MethodPost, base+"/cancel?api-version=2020-10-01", token, "")
	checkShape(t, status, http.StatusOK, body, cancel.Responses["200"].Body)
}

func TestFixturePIMEligibilities(t *testing.T) {
	for _, file := range []string{"GetRoleEligibilitySchedulesByScope.json", "GetRoleEligibilityScheduleInstancesByScope.json"} {
		t.Run(file, func(t *testing.T) {
			ex := loadExample(t, "azure/authorization/2020-10-01/"+file)
			s := startServer(t, Config{Seed: fixturePIMSeed(false)})
			typ := "roleEligibilitySchedules"
			if strings.Contains(file, "Instances") {
				typ = "roleEligibilityScheduleInstances"
			}
			url := s.URL() + armScope(ex.param(t, "scope")) + "/providers/Microsoft.Authorization/" + typ +
				"?api-version=2020-10-01&$filter=" + strings.ReplaceAll(ex.param(t, "$filter"), "'", "%27")
			status, _, body := doRaw(t, s, http.MethodGet, url, tokenFor(t, s, fixturePIMPrincipal), "")
			var want any
			_ = json.Unmarshal(ex.Responses["200"].Body, &want)
			checkPIMShape(t, status, http.StatusOK, body, want)
			if n := strings.Count(body, `"memberType"`); n != 1 {
				t.Errorf("entries: got %d; want 1", n)
			}
		})
	}
}

func TestFixturePIMPolicy(t *testing.T) {
	ex := loadExample(t, "azure/authorization/2020-10-01/GetRoleManagementPolicyByName.json")
	s := startServer(t, Config{Seed: fixturePIMSeed(false)})
	token := tokenFor(t, s, fixturePIMPrincipal)
	scope := armScope(ex.param(t, "scope"))
	base := s.URL() + scope + "/providers/Microsoft.Authorization/"
	status, _, body := doRaw(t, s, http.MethodGet, base+"roleManagementPolicyAssignments?api-version=2020-10-01&$filter=roleDefinitionId%20eq%20'"+
		scope+"/providers/Microsoft.Authorization/roleDefinitions/"+RoleContributor+"'", token, "")
	var list struct {
		Value []struct {
			Properties struct {
				PolicyID string `json:"policyId"`
			} `json:"properties"`
		} `json:"value"`
	}
	if err := json.Unmarshal([]byte(body), &list); status != http.StatusOK || err != nil || len(list.Value) != 1 {
		t.Fatalf("policy assignments: got %d %s; want one", status, body)
	}
	name := lastPathSegment(list.Value[0].Properties.PolicyID)
	status, _, body = doRaw(t, s, http.MethodGet, base+"roleManagementPolicies/"+name+"?api-version=2020-10-01", token, "")

	// Rules are polymorphic, so they compare by id; the rest by shape.
	var want, got map[string]any
	_ = json.Unmarshal(ex.Responses["200"].Body, &want)
	_ = json.Unmarshal([]byte(body), &got)
	if status != http.StatusOK || got == nil {
		t.Fatalf("get policy: got %d %s; want 200", status, body)
	}
	wantProps, gotProps := want["properties"].(map[string]any), got["properties"].(map[string]any)
	for _, key := range []string{"rules", "effectiveRules"} {
		wantRules, gotRules := wantProps[key].([]any), gotProps[key].([]any)
		delete(wantProps, key)
		delete(gotProps, key)
		byID := map[string]any{}
		for _, r := range gotRules {
			byID[r.(map[string]any)["id"].(string)] = r
		}
		for _, wr := range wantRules {
			id := wr.(map[string]any)["id"].(string)
			gr, ok := byID[id]
			if !ok {
				t.Errorf("%s: rule %s missing", key, id)
				continue
			}
			for _, d := range comparePIMShape(key+"."+id, wr, gr) {
				t.Error(d)
			}
		}
		if len(gotRules) != len(wantRules) {
			t.Errorf("%s: got %d rules; want %d", key, len(gotRules), len(wantRules))
		}
	}
	for _, d := range comparePIMShape("", want, got) {
		t.Error(d)
	}
}

func TestFixtureGraphScheduleRequests(t *testing.T) {
	tests := []struct {
		name, request, response, caller, status string
	}{
		{"adminAssign no expiration", "post-roleAssignmentScheduleRequests-adminAssign.request.json",
			"post-roleAssignmentScheduleRequests-adminAssign.response-201.json", fixtureGraphAdmin, "Provisioned"},
		{"adminAssign after duration", "post-roleAssignmentScheduleRequests-adminAssign-afterDuration.request.json",
			"post-roleAssignmentScheduleRequests-adminAssign-afterDuration.response.json", fixtureGraphAdmin, "Provisioned"},
		{"selfActivate future start", "post-roleAssignmentScheduleRequests-selfActivate.request.json",
			"post-roleAssignmentScheduleRequests-selfActivate.response-201.json", fixtureGraphUser, "Granted"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := readFixtureJSON(t, "graph/pim/"+tc.request)
			want := readFixtureJSON(t, "graph/pim/"+tc.response)
			clock := &fakeClock{t: time.Date(2022, 4, 13, 8, 52, 32, 0, time.UTC)}
			s := startServer(t, Config{Seed: fixturePIMSeed(false), Now: clock.Now})
			token := graphTokenFor(t, s, tc.caller)
			body, _ := json.Marshal(req)
			url := s.URL() + "/v1.0/roleManagement/directory/roleAssignmentScheduleRequests"
			status, _, got := doRaw(t, s, http.MethodPost, url, token, string(body))
			checkPIMShape(t, status, http.StatusCreated, got, want)
			if s := jsonField(got, "status"); s != tc.status {
				t.Errorf("status: got %q; want %q", s, tc.status)
			}

			// GET by id has the same shape as the fixture's GET response.
			get := readFixtureJSON(t, "graph/pim/get-roleAssignmentScheduleRequest.response-200.json")
			status, _, got = doRaw(t, s, http.MethodGet, url+"/"+jsonField(got, "id"), token, "")
			checkPIMShape(t, status, http.StatusOK, got, get)
		})
	}
}
