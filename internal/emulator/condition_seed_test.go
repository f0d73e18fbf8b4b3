package emulator_test

import (
	"testing"

	"github.com/elevate-dev/elevate/internal/cli"
	"github.com/elevate-dev/elevate/internal/emulator"
)

// TestDemoSeedMatchesBootstrap checks that the demo seed's standing
// delegation carries exactly the condition `elevate bootstrap` prints for
// the demo pipeline and the roles `elevate demo` grants, so the demo
// exercises the same delegation that bootstrap prints for users.
func TestDemoSeedMatchesBootstrap(t *testing.T) {
	const pipeline = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a801"
	want := cli.DelegationCondition([]string{emulator.RoleKeyVaultSecretsOfficer, emulator.RoleReader}, pipeline)
	found := false
	for _, a := range emulator.DefaultSeed().RoleAssignments {
		if a.RoleName != "Role Based Access Control Administrator" || a.PrincipalID != pipeline {
			continue
		}
		found = true
		if a.Condition != want {
			t.Errorf("condition: got %q; want %q", a.Condition, want)
		}
		if a.ConditionVersion != "2.0" {
			t.Errorf("conditionVersion: got %q; want %q", a.ConditionVersion, "2.0")
		}
	}
	if !found {
		t.Errorf("demo seed: got no RBAC Administrator assignment for %s; want one", pipeline)
	}
}
