package emulator

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// graphBody returns a Graph schedule request body.
func graphBody(action, principal, role, duration, justification string) string {
	body := map[string]any{
		"action": action, "principalId": principal, "roleDefinitionId": role, "directoryScopeId": "/",
		"scheduleInfo": map[string]any{"startDateTime": pimBase.Format(time.RFC3339),
			"expiration": map[string]any{"type": "afterDuration", "duration": duration}},
	}
	if duration == "" {
		body["scheduleInfo"] = map[string]any{"expiration": map[string]any{"type": "noExpiration"}}
	}
	if justification != "" {
		body["justification"] = justification
	}
	b, _ := json.Marshal(body)
	return string(b)
}

func TestGraphTokenFromTokenEndpoint(t *testing.T) {
	s := startServer(t, Config{Seed: pimSeed()})
	cred, err := azidentity.NewClientSecretCredential(demoTenant, pimRunnerApp, "runner-secret",
		&azidentity.ClientSecretCredentialOptions{ClientOptions: clientOptions(s), DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatalf("NewClientSecretCredential: %v", err)
	}
	for _, scope := range []string{s.GraphEndpoint() + "/.default", "https://graph.microsoft.com/.default"} {
		tok, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{scope}})
		if err != nil {
			t.Fatalf("GetToken(%s): %v", scope, err)
		}
		status, _, body := doRaw(t, s, http.MethodGet, s.URL()+"/v1.0/directoryObjects/"+pimRunnerOID, tok.Token, "")
		if status != http.StatusOK {
			t.Errorf("directoryObjects with a %s token: got %d %s; want 200", scope, status, body)
		}
	}
	arm := tokenFor(t, s, pimRunnerOID)
	status, _, body := doRaw(t, s, http.MethodGet, s.URL()+"/v1.0/directoryObjects/"+pimRunnerOID, arm, "")
	if status != http.StatusUnauthorized || errorCode(t, body) != "InvalidAuthenticationToken" {
		t.Errorf("ARM token at Graph: got %d %s; want 401 InvalidAuthenticationToken", status, body)
	}
}

func TestGraphDirectoryObjects(t *testing.T) {
	s, _ := startPIM(t, 0)
	runner := graphTokenFor(t, s, pimRunnerOID)
	tests := []struct {
		name, token, id string
		status          int
		odataType       string
	}{
		{"service principal", runner, pimRunnerOID, 200, "#microsoft.graph.servicePrincipal"},
		{"user", runner, pimUserOID, 200, "#microsoft.graph.user"},
		{"group", runner, pimGroupOID, 200, "#microsoft.graph.group"},
		{"unknown object", runner, "99999999-9999-4999-8999-999999999999", 404, ""},
		{"caller without app role", graphTokenFor(t, s, pimOtherOID), pimRunnerOID, 403, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, _, body := doRaw(t, s, http.MethodGet, s.URL()+"/v1.0/directoryObjects/"+tc.id, tc.token, "")
			if status != tc.status {
				t.Fatalf("status: got %d; want %d (%s)", status, tc.status, body)
			}
			var obj map[string]any
			_ = json.Unmarshal([]byte(body), &obj)
			if got, _ := obj["@odata.type"].(string); tc.odataType != "" && got != tc.odataType {
				t.Errorf("@odata.type: got %q; want %q", got, tc.odataType)
			}
			if tc.status == 403 && errorCode(t, body) != "Authorization_RequestDenied" {
				t.Errorf("code: got %q; want Authorization_RequestDenied", errorCode(t, body))
			}
			if tc.status >= 400 && jsonField(body, "error.innerError.request-id") == "" {
				t.Errorf("error without innerError.request-id: %s", body)
			}
		})
	}
}

func TestGraphRoleDefinitions(t *testing.T) {
	s, _ := startPIM(t, 0)
	runner := graphTokenFor(t, s, pimRunnerOID)
	for id, name := range map[string]string{entraGlobalReader: "Global Reader", entraAppAdmin: "Application Administrator", entraPrivRoleAdm: "Privileged Role Administrator"} {
		status, _, body := doRaw(t, s, http.MethodGet, s.URL()+"/v1.0/roleManagement/directory/roleDefinitions/"+id, runner, "")
		if status != http.StatusOK || jsonField(body, "displayName") != name {
			t.Errorf("role %s: got %d %s; want 200 %q", id, status, body, name)
		}
	}
	if status, _, _ := doRaw(t, s, http.MethodGet, s.URL()+"/v1.0/roleManagement/directory/roleDefinitions/"+RoleReader, runner, ""); status != http.StatusNotFound {
		t.Errorf("Azure role id at Graph: got %d; want 404", status)
	}
}

func TestGraphSelfActivateFlow(t *testing.T) {
	s, clock := startPIM(t, 0)
	runner := graphTokenFor(t, s, pimRunnerOID)
	base := s.URL() + "/v1.0/roleManagement/directory/"

	status, _, body := doRaw(t, s, http.MethodPost, base+"roleAssignmentScheduleRequests", runner,
		graphBody("selfActivate", pimRunnerOID, entraGlobalReader, "PT1H", "audit"))
	if status != http.StatusCreated {
		t.Fatalf("selfActivate: got %d %s; want 201", status, body)
	}
	for field, want := range map[string]string{"status": "Provisioned", "action": "selfActivate", "scheduleInfo.expiration.type": "afterDuration"} {
		if got := jsonField(body, field); got != want {
			t.Errorf("%s: got %q; want %q", field, got, want)
		}
	}
	id := jsonField(body, "id")
	if got := jsonField(body, "createdBy.application.id"); got != pimRunnerOID {
		t.Errorf("createdBy.application.id: got %q; want the runner", got)
	}

	filter := "?$filter=principalId%20eq%20'" + pimRunnerOID + "'%20and%20roleDefinitionId%20eq%20'" + entraGlobalReader + "'"
	_, _, body = doRaw(t, s, http.MethodGet, base+"roleAssignmentScheduleInstances"+filter, runner, "")
	if !strings.Contains(body, `"assignmentType":"Activated"`) {
		t.Errorf("instances: got %s; want one Activated instance", body)
	}
	status, _, body = doRaw(t, s, http.MethodGet, base+"roleAssignmentScheduleRequests/"+id, runner, "")
	if status != http.StatusOK || jsonField(body, "id") != id {
		t.Errorf("get request: got %d %s; want 200", status, body)
	}

	// Deactivation: too early, then after five minutes.
	clock.Advance(time.Minute)
	status, _, body = doRaw(t, s, http.MethodPost, base+"roleAssignmentScheduleRequests", runner,
		graphBody("selfDeactivate", pimRunnerOID, entraGlobalReader, "", ""))
	if status != http.StatusBadRequest || errorCode(t, body) != "ActiveDurationTooShort" {
		t.Errorf("early selfDeactivate: got %d %s; want 400 ActiveDurationTooShort", status, body)
	}
	clock.Advance(5 * time.Minute)
	status, _, body = doRaw(t, s, http.MethodPost, base+"roleAssignmentScheduleRequests", runner,
		graphBody("selfDeactivate", pimRunnerOID, entraGlobalReader, "", ""))
	if status != http.StatusCreated || jsonField(body, "status") != "Revoked" {
		t.Errorf("selfDeactivate: got %d %s; want 201 Revoked", status, body)
	}
	_, _, body = doRaw(t, s, http.MethodGet, base+"roleAssignmentScheduleInstances"+filter, runner, "")
	if strings.Contains(body, pimRunnerOID) {
		t.Errorf("instances after deactivation: %s; want none", body)
	}
}

func TestGraphRequestRules(t *testing.T) {
	s, _ := startPIM(t, 0)
	runner := graphTokenFor(t, s, pimRunnerOID)
	url := s.URL() + "/v1.0/roleManagement/directory/roleAssignmentScheduleRequests"
	tests := []struct {
		name, token, body string
		status            int
		code              string
	}{
		{"over maximum duration", runner, graphBody("selfActivate", pimRunnerOID, entraAppAdmin, "PT3H", "x"), 400, "RoleAssignmentRequestPolicyValidationFailed"},
		{"not eligible", runner, graphBody("selfActivate", pimRunnerOID, entraPrivRoleAdm, "PT1H", "x"), 400, "RoleAssignmentRequestPolicyValidationFailed"},
		{"someone else's activation", graphTokenFor(t, s, pimUserOID), graphBody("selfActivate", pimRunnerOID, entraGlobalReader, "PT1H", "x"), 403, "Authorization_RequestDenied"},
		{"unknown action", runner, graphBody("selfPromote", pimRunnerOID, entraGlobalReader, "PT1H", "x"), 400, "BadRequest"},
		{"unknown role", runner, graphBody("adminAssign", pimOtherOID, RoleReader, "PT1H", "x"), 400, "InvalidRoleDefinitionId"},
		{"too short", runner, graphBody("selfActivate", pimRunnerOID, entraGlobalReader, "PT1M", "x"), 400, "ActiveDurationTooShort"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, _, body := doRaw(t, s, http.MethodPost, url, tc.token, tc.body)
			if status != tc.status {
				t.Errorf("status: got %d; want %d (%s)", status, tc.status, body)
			}
			if got := errorCode(t, body); got != tc.code {
				t.Errorf("code: got %q; want %q", got, tc.code)
			}
		})
	}
}

func TestGraphSelfActivateByOther(t *testing.T) {
	seed := pimSeed()
	seed.Principals[len(seed.Principals)-1].GraphAppRoles = []string{"RoleManagement.ReadWrite.Directory"}
	s := startServer(t, Config{Seed: seed})
	user := graphTokenFor(t, s, pimUserOID)
	status, _, body := doRaw(t, s, http.MethodPost, s.URL()+"/v1.0/roleManagement/directory/roleAssignmentScheduleRequests", user,
		graphBody("selfActivate", pimRunnerOID, entraGlobalReader, "PT1H", "x"))
	if status != http.StatusBadRequest || !strings.Contains(body, "must come from the principal itself") {
		t.Errorf("got %d %s; want 400 naming the principal rule", status, body)
	}
}

func TestGraphApprovalThenCancel(t *testing.T) {
	s, _ := startPIM(t, 0)
	runner := graphTokenFor(t, s, pimRunnerOID)
	url := s.URL() + "/v1.0/roleManagement/directory/roleAssignmentScheduleRequests"
	status, _, body := doRaw(t, s, http.MethodPost, url, runner, graphBody("selfActivate", pimRunnerOID, entraAppAdmin, "PT1H", "x"))
	if status != http.StatusCreated || jsonField(body, "status") != "PendingApproval" {
		t.Fatalf("selfActivate: got %d %s; want 201 PendingApproval", status, body)
	}
	id := jsonField(body, "id")
	status, _, body = doRaw(t, s, http.MethodPost, url+"/"+id+"/cancel", runner, "")
	if status != http.StatusNoContent || body != "" {
		t.Errorf("cancel: got %d %q; want 204 with no body", status, body)
	}
	_, _, body = doRaw(t, s, http.MethodGet, url+"/"+id, runner, "")
	if got := jsonField(body, "status"); got != "Canceled" {
		t.Errorf("status: got %q; want Canceled", got)
	}
	status, _, body = doRaw(t, s, http.MethodGet, url+"?$filter=status%20eq%20'Canceled'", runner, "")
	if status != http.StatusOK || !strings.Contains(body, id) {
		t.Errorf("list by status: got %d %s; want the canceled request", status, body)
	}
	status, _, _ = doRaw(t, s, http.MethodGet, url+"?$filter=startswith(id,'a')", runner, "")
	if status != http.StatusBadRequest {
		t.Errorf("unsupported filter: got %d; want 400", status)
	}
}

func TestGraphFilterParse(t *testing.T) {
	tests := []struct {
		in      string
		want    map[string]string
		wantErr bool
	}{
		{"", map[string]string{}, false},
		{"principalId eq 'a'", map[string]string{"principalid": "a"}, false},
		{"principalId eq 'a' and roleDefinitionId eq 'b''c'", map[string]string{"principalid": "a", "roledefinitionid": "b'c"}, false},
		{"principalId eq 'a' and principalId eq 'b'", nil, true},
		{"status eq 'x'", nil, true},
		{"principalId ne 'a'", nil, true},
		{"assignedTo('a')", nil, true},
		{"principalId eq 'a' or roleDefinitionId eq 'b'", nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseGraphFilter(tc.in, "principalId", "roleDefinitionId")
			if (err != nil) != tc.wantErr {
				t.Fatalf("error: got %v; want error %v", err, tc.wantErr)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s: got %q; want %q", k, got[k], v)
				}
			}
		})
	}
}

func FuzzParseGraphFilter(f *testing.F) {
	for _, seed := range []string{"principalId eq 'a'", "principalId eq 'a' and roleDefinitionId eq 'b'", "id eq ''''",
		"x(", "principalId eq", "and", "principalId eq 'a' and"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := parseGraphFilter(in, "principalId", "roleDefinitionId", "id")
		if err != nil {
			return
		}
		for k := range got {
			if k != "principalid" && k != "roledefinitionid" && k != "id" {
				t.Fatalf("parseGraphFilter(%q) accepted property %q", in, k)
			}
		}
	})
}
