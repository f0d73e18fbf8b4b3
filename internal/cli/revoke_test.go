package cli

import (
	"path/filepath"
	"testing"

	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/audit"
	"github.com/elevate-dev/elevate/internal/lifecycle"
)

func TestAuditedGrantsFillPlan(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	log, err := audit.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	vault := access.MustParseResourceID(wfVault)
	storage := access.MustParseResourceID(wfStorage)
	const reqID = "0f8fad5b-d9cb-469f-a165-70867728950e"
	records := []audit.Record{
		{RequestID: "11111111-2222-3333-4444-555555555555", Event: "grant", Outcome: "ok",
			Pairs: []audit.PairRecord{{RoleID: "acdd72a7-3385-48ef-bd42-f606fba81ae7", Scope: wfStorage, PreExisting: true}}},
		{RequestID: reqID, Event: "grant", Outcome: "ok", Pairs: []audit.PairRecord{
			{RoleID: "b86a8fe4-44ce-4948-aee5-eccb2c155cd7", Scope: wfVault, AssignmentID: "/roleManagement/directory/roleAssignmentScheduleRequests/abc", Backend: "entra-role"},
			{RoleID: "acdd72a7-3385-48ef-bd42-f606fba81ae7", Scope: wfStorage, AssignmentID: wfStorage + "/providers/Microsoft.Authorization/roleAssignments/x", PreExisting: true, Backend: "rbac"},
		}},
	}
	for _, r := range records {
		if _, err := log.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	log.Close()

	grants := []lifecycle.Grant{
		{Pair: access.Pair{RoleID: "b86a8fe4-44ce-4948-aee5-eccb2c155cd7", Scope: vault}, Backend: "entra-role"},
		{Pair: access.Pair{RoleID: "acdd72a7-3385-48ef-bd42-f606fba81ae7", Scope: storage}, Backend: "rbac"},
	}
	if err := applyAuditedGrants(path, reqID, grants); err != nil {
		t.Fatal(err)
	}
	if got := grants[0].AssignmentID; got != "/roleManagement/directory/roleAssignmentScheduleRequests/abc" {
		t.Errorf("entra grant id = %q; want the recorded schedule request", got)
	}
	if grants[0].PreExisting {
		t.Errorf("entra grant marked pre-existing; want created")
	}
	if !grants[1].PreExisting {
		t.Errorf("adopted grant not marked pre-existing; revoke would remove it")
	}
	if err := applyAuditedGrants(filepath.Join(t.TempDir(), "missing.jsonl"), reqID, grants); err != nil {
		t.Errorf("missing audit log: %v; want no error", err)
	}
}
