package cli

import (
	"strings"
	"testing"

	"github.com/elevate-dev/elevate/internal/emulator"
	"github.com/elevate-dev/elevate/internal/lifecycle"
)

// secretsOfficerRoleID is the built-in Key Vault Secrets Officer role.
const secretsOfficerRoleID = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"

// TestRotateSecretThroughPIM rotates the demo secret with the role granted
// by PIM: a self-activation of an eligibility, and a time-bound admin
// assignment. The rotation must work on the data plane and leave no grant.
func TestRotateSecretThroughPIM(t *testing.T) {
	for _, backend := range []string{lifecycle.BackendPIMActivate, lifecycle.BackendPIMAssign} {
		t.Run(backend, func(t *testing.T) {
			clock := &acceleratedClock{}
			seed := emulator.DefaultSeed()
			pipeline, err := demoPrincipal(seed)
			if err != nil {
				t.Fatal(err)
			}
			seed.Eligibilities = []emulator.SeedEligibility{
				{PrincipalID: pipeline.ObjectID, Scope: testVault, RoleName: "Key Vault Secrets Officer"},
			}
			e := startCLIEnv(t, emulator.Config{Seed: seed, Now: clock.Now})
			before := e.srv.SecretVersions("kv-elevate-demo", "app-db-password")

			got := e.mainAt(t, clock, "rotate-secret", "--backend", backend, "--vault", "kv-elevate-demo",
				"--secret", "app-db-password", "--scope", testVault, "--justification", "rotate through PIM",
				"--duration", "15m", "-o", "json")
			if got.code != ExitOK {
				t.Fatalf("exit code: got %d; want 0; stderr %s", got.code, got.stderr)
			}
			if after := e.srv.SecretVersions("kv-elevate-demo", "app-db-password"); len(after) <= len(before) {
				t.Errorf("secret versions: got %d; want more than %d", len(after), len(before))
			}
			s := decodeSummary(t, got.stdout)
			if len(s.Grants) != 1 || s.Grants[0].Backend != backend {
				t.Fatalf("grants: got %+v; want one through %s", s.Grants, backend)
			}
			for _, a := range e.srv.RoleAssignments() {
				if strings.EqualFold(a.Scope, testVault) && strings.HasSuffix(strings.ToLower(a.RoleDefinitionID), secretsOfficerRoleID) &&
					a.PrincipalID == pipelineObjectID {
					t.Errorf("assignment %s of Key Vault Secrets Officer left at the vault; want none", a.Name)
				}
			}
		})
	}
}
