package azure

import (
	"context"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"

	"github.com/elevate-dev/elevate/internal/emulator"
)

func TestListAssignmentsAssignedTo(t *testing.T) {
	const (
		approverOID = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c03"
		delegation  = "e7d6c5b4-a392-4817-b6f5-e4d3c2b1a004" // the demo seed's conditioned delegation
		subReader   = "1f2e3d4c-5b6a-4798-8a7b-6c5d4e3f2a01"
		otherOwner  = "1f2e3d4c-5b6a-4798-8a7b-6c5d4e3f2a02"
		vaultGrant  = "1f2e3d4c-5b6a-4798-8a7b-6c5d4e3f2a03"
	)
	seed := emulator.DefaultSeed()
	seed.RoleAssignments = append(seed.RoleAssignments,
		emulator.SeedAssignment{Name: subReader, Scope: "/subscriptions/" + subscriptionID, RoleName: "Reader", PrincipalID: pipelineOID},
		emulator.SeedAssignment{Name: otherOwner, Scope: demoRG, RoleName: "Owner", PrincipalID: approverOID})
	s, err := emulator.Start(context.Background(), emulator.Config{Seed: seed, StateDir: t.TempDir()})
	if err != nil {
		t.Fatalf("start emulator: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	cred := secretCredential(t, s, pipelineApp, "demo-pipeline-secret")
	rbac, err := NewRBAC(cred, &arm.ClientOptions{ClientOptions: emulatorOptions(s)})
	if err != nil {
		t.Fatalf("NewRBAC: %v", err)
	}
	ctx := context.Background()
	vault := demoRG + "/providers/Microsoft.KeyVault/vaults/kv-elevate-demo"

	// An assignment below the resource group, which a listing at the
	// resource group must leave out.
	if _, err := rbac.CreateAssignment(ctx, Assignment{Scope: vault, Name: vaultGrant,
		RoleDefinitionID: roleDefPrefix + emulator.RoleReader, PrincipalID: pipelineOID, PrincipalType: "ServicePrincipal"}); err != nil {
		t.Fatalf("create vault assignment: %v", err)
	}

	tests := []struct {
		name  string
		scope string
		want  []string
	}{
		{"resource group", demoRG, []string{delegation, subReader}},
		{"vault", vault, []string{delegation, subReader, vaultGrant}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := rbac.ListAssignmentsAssignedTo(ctx, tc.scope, pipelineOID)
			if err != nil {
				t.Fatalf("ListAssignmentsAssignedTo: %v", err)
			}
			names := map[string]Assignment{}
			for _, a := range got {
				names[a.Name] = a
			}
			if len(got) != len(tc.want) {
				t.Errorf("count: got %d %v; want %d %v", len(got), got, len(tc.want), tc.want)
			}
			for _, n := range tc.want {
				if _, ok := names[n]; !ok {
					t.Errorf("assignment %s: missing from the listing", n)
				}
			}
			d := names[delegation]
			if !strings.Contains(d.Condition, "ActionMatches{'Microsoft.Authorization/roleAssignments/write'}") {
				t.Errorf("delegation condition: got %q; want the demo delegation", d.Condition)
			}
			if d.ConditionVersion != "2.0" {
				t.Errorf("delegation conditionVersion: got %q; want 2.0", d.ConditionVersion)
			}
			if !strings.HasSuffix(d.RoleDefinitionID, emulator.RoleRBACAdministrator) {
				t.Errorf("delegation role: got %q; want RBAC Administrator", d.RoleDefinitionID)
			}
		})
	}
}
