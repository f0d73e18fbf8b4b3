package lifecycle_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/azure"
	"github.com/elevate-dev/elevate/internal/emulator"
	"github.com/elevate-dev/elevate/internal/lifecycle"
)

// Roles that the demo delegation leaves out, and the name of the demo
// seed's conditioned delegation.
const (
	roleSecretsUser = "4633458b-17de-408a-b874-0445c86b69e6"
	roleContributor = "b24988ac-6180-42a0-ab88-20f7382dd24c"
	delegationName  = "e7d6c5b4-a392-4817-b6f5-e4d3c2b1a004"
)

// The pre-flight evaluates conditions only through an AssignmentLister.
var _ lifecycle.AssignmentLister = (*azure.RBAC)(nil)

// permissionCheck returns the pre-flight's "caller can grant and revoke"
// check at scope, failing the test when there is none.
func permissionCheck(t *testing.T, checks []lifecycle.Check, scope string) lifecycle.Check {
	t.Helper()
	for _, c := range checks {
		if c.Name == lifecycle.CheckPermissions && strings.EqualFold(c.Scope, scope) {
			return c
		}
	}
	t.Fatalf("checks %+v: no %q check at %s", checks, lifecycle.CheckPermissions, scope)
	return lifecycle.Check{}
}

// seedWithDelegation returns the demo seed with the standing delegation's
// condition replaced.
func seedWithDelegation(condition, version string) emulator.Seed {
	seed := emulator.DefaultSeed()
	for i := range seed.RoleAssignments {
		if seed.RoleAssignments[i].Name == delegationName {
			seed.RoleAssignments[i].Condition = condition
			seed.RoleAssignments[i].ConditionVersion = version
		}
	}
	return seed
}

// TestPreflightCatchesConditionedRole reproduces a plan that passed the
// pre-flight and an apply that then got 403: the demo delegation allows
// only Key Vault Secrets Officer and Reader, and the request is for Key
// Vault Secrets User.
func TestPreflightCatchesConditionedRole(t *testing.T) {
	te := startEnv(t, emulator.Config{})
	r := te.newRun(t, fastOptions())
	req := te.request(t, pair(t, roleSecretsUser, vaultScope))

	c := permissionCheck(t, r.engine.Preflight(context.Background(), req), vaultScope)
	if c.OK || c.Warning {
		t.Fatalf("check: got OK=%v Warning=%v %q; want a failure", c.OK, c.Warning, c.Detail)
	}
	for _, want := range []string{
		"Key Vault Secrets User (4633458b...)",
		"cannot be granted or removed",
		"allows roleAssignments/write and roleAssignments/delete only for role ids b86a8fe4..., acdd72a7...;",
		"Role Based Access Control Administrator assignment e7d6c5b4...",
		"add the role's id (" + roleSecretsUser + ") to the delegation's condition (elevate bootstrap --role ...) or ask for a role it allows",
	} {
		if !strings.Contains(c.Detail, want) {
			t.Errorf("detail: got %q; want it to contain %q", c.Detail, want)
		}
	}

	// The plan path with backends runs the same check.
	choices := []lifecycle.Choice{{Backend: lifecycle.BackendRBAC}}
	backendChecks := r.engine.PreflightBackends(context.Background(), req, choices, lifecycle.PIMConfig{})
	if got := permissionCheck(t, backendChecks, vaultScope); got.OK || got.Warning {
		t.Errorf("PreflightBackends check: got OK=%v Warning=%v; want a failure", got.OK, got.Warning)
	}

	// Apply agrees: ARM refuses the grant with 403.
	_, err := r.engine.Run(context.Background(), req, r.roles(t, req.Pairs), noopAction, nil)
	if !errors.Is(err, azure.ErrForbidden) {
		t.Errorf("Run: got %v; want a 403 from the conditioned delegation", err)
	}
}

// TestPreflightPassesAllowedRoles checks that roles the condition allows
// pass, and that the pre-flight lists the caller's assignments once per
// scope and reads each of their roles once, however many pairs there are.
func TestPreflightPassesAllowedRoles(t *testing.T) {
	te := startEnv(t, emulator.Config{})
	r := te.newRun(t, fastOptions())
	req := te.request(t,
		pair(t, roleSecretsOfficer, vaultScope), pair(t, roleReader, vaultScope),
		pair(t, roleSecretsOfficer, storageScope), pair(t, roleReader, storageScope))
	te.rec.reset()

	checks := r.engine.Preflight(context.Background(), req)
	for _, scope := range []string{vaultScope, storageScope} {
		c := permissionCheck(t, checks, scope)
		if !c.OK {
			t.Errorf("check at %s: got OK=false %q; want OK", scope, c.Detail)
		}
		listings := te.rec.matching(http.MethodGet, "^"+scope+"/providers/Microsoft.Authorization/roleAssignments$")
		if len(listings) != 1 {
			t.Errorf("role assignment listings at %s: got %d; want 1", scope, len(listings))
		}
	}
	defs := te.rec.matching(http.MethodGet, "/providers/Microsoft.Authorization/roleDefinitions/")
	if len(defs) != 1 {
		t.Errorf("role definition reads: got %d; want 1 (the delegation's role, cached)", len(defs))
	}

	_, err := r.engine.Run(context.Background(), req, r.roles(t, req.Pairs), noopAction, nil)
	if err != nil {
		t.Errorf("Run: got %v; want success for roles the condition allows", err)
	}
}

func TestPreflightConditionCases(t *testing.T) {
	const (
		notWrite      = "!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})"
		notDelete     = "!(ActionMatches{'Microsoft.Authorization/roleAssignments/delete'})"
		requestRole   = "@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId]"
		requestType   = "@Request[Microsoft.Authorization/roleAssignments:PrincipalType]"
		requestPrinc  = "@Request[Microsoft.Authorization/roleAssignments:PrincipalId]"
		resourceRole  = "@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId]"
		writeSecrets  = "((" + notWrite + ") OR (" + requestRole + " ForAnyOfAnyValues:GuidEquals {" + roleSecretsUser + "}))"
		deleteOfficer = "((" + notDelete + ") OR (" + resourceRole + " ForAnyOfAnyValues:GuidEquals {" + roleSecretsOfficer + "}))"
	)
	tests := []struct {
		name      string
		condition string
		version   string
		extra     []emulator.SeedAssignment
		role      string
		ok        bool
		warning   bool
		want      []string // parts of the detail
	}{
		{
			name: "delete left out", condition: writeSecrets + " AND " + deleteOfficer, version: "2.0",
			role: roleSecretsUser,
			want: []string{"cannot be removed once granted", "allows roleAssignments/delete only for role ids b86a8fe4...;", "elevate bootstrap --role"},
		},
		{
			name: "users only", version: "2.0",
			condition: "((" + notWrite + ") OR (" + requestType + " ForAnyOfAnyValues:StringEqualsIgnoreCase {'User', 'Group'}))",
			role:      roleSecretsUser,
			want:      []string{"cannot be granted here", "only for principal types User, Group;", "to allow this principal"},
		},
		{
			name: "other principal only", version: "2.0",
			condition: "((" + notWrite + ") OR (" + requestPrinc + " ForAnyOfAnyValues:GuidEquals {" + approverOID + "}))",
			role:      roleSecretsUser,
			want:      []string{"only for principal ids a1b2c3d4...;", "to allow this principal"},
		},
		{
			name: "excluded role", version: "2.0",
			condition: "((" + notWrite + ") OR (" + requestRole + " ForAnyOfAllValues:GuidNotEquals {" + roleContributor + ", " + roleSecretsUser + "}))",
			role:      roleSecretsUser,
			want:      []string{"only for role ids other than b24988ac..., 4633458b...;", "remove the role's id (" + roleSecretsUser + ") from the roles"},
		},
		{
			name: "excluded role allows others", version: "2.0",
			condition: "((" + notWrite + ") OR (" + requestRole + " ForAnyOfAllValues:GuidNotEquals {" + roleContributor + "}))",
			role:      roleSecretsUser, ok: true,
		},
		{
			name: "unreadable condition warns", version: "2.0",
			condition: "((" + notWrite + ") OR (" + requestType + " StringLike 'Serv*'))",
			role:      roleSecretsUser, warning: true,
			want: []string{"could not evaluate role assignment " + delegationName, "unsupported operator"},
		},
		{
			name: "unknown version warns", version: "1.0", condition: writeSecrets,
			role: roleSecretsUser, warning: true,
			want: []string{`conditionVersion "1.0"`},
		},
		{
			name: "unconditioned grant wins", condition: writeSecrets, version: "2.0",
			extra: []emulator.SeedAssignment{{Name: "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e01",
				Scope: "/subscriptions/" + demoSubscription, RoleName: "User Access Administrator", PrincipalID: pipelineOID}},
			role: roleContributor, ok: true,
		},
		{
			name: "second condition allows", condition: writeSecrets, version: "2.0",
			extra: []emulator.SeedAssignment{{Name: "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e02",
				Scope: "/subscriptions/" + demoSubscription, RoleName: "User Access Administrator", PrincipalID: pipelineOID,
				ConditionVersion: "2.0", Condition: "((" + notWrite + ") OR (" + requestRole + " ForAnyOfAnyValues:GuidEquals {" + roleContributor + "}))"}},
			role: roleContributor, ok: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seed := seedWithDelegation(tc.condition, tc.version)
			seed.RoleAssignments = append(seed.RoleAssignments, tc.extra...)
			te := startEnv(t, emulator.Config{Seed: seed})
			r := te.newRun(t, fastOptions())
			req := te.request(t, pair(t, tc.role, vaultScope))

			c := permissionCheck(t, r.engine.Preflight(context.Background(), req), vaultScope)
			if c.OK != tc.ok {
				t.Errorf("OK: got %v; want %v (%s)", c.OK, tc.ok, c.Detail)
			}
			if c.Warning != tc.warning {
				t.Errorf("Warning: got %v; want %v (%s)", c.Warning, tc.warning, c.Detail)
			}
			for _, want := range tc.want {
				if !strings.Contains(c.Detail, want) {
					t.Errorf("detail: got %q; want it to contain %q", c.Detail, want)
				}
			}
		})
	}
}

// TestPreflightEmptyPrincipalType checks that a request that leaves the
// principal type to ARM passes a condition that some type would pass.
func TestPreflightEmptyPrincipalType(t *testing.T) {
	condition := "((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR " +
		"(@Request[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {'ServicePrincipal'}))"
	te := startEnv(t, emulator.Config{Seed: seedWithDelegation(condition, "2.0")})
	r := te.newRun(t, fastOptions())
	req := te.request(t, pair(t, roleSecretsUser, vaultScope))
	req.Principal.Type = ""

	c := permissionCheck(t, r.engine.Preflight(context.Background(), req), vaultScope)
	if !c.OK {
		t.Errorf("check: got OK=false %q; want OK", c.Detail)
	}
}

// TestPreflightSkipsRolesWithoutConditions checks that an unconditioned
// delegation costs one listing and no role definition reads.
func TestPreflightSkipsRolesWithoutConditions(t *testing.T) {
	te := startEnv(t, emulator.Config{Seed: seedWithDelegation("", "")})
	r := te.newRun(t, fastOptions())
	req := te.request(t, pair(t, roleSecretsUser, vaultScope))
	te.rec.reset()

	c := permissionCheck(t, r.engine.Preflight(context.Background(), req), vaultScope)
	if !c.OK {
		t.Errorf("check: got OK=false %q; want OK", c.Detail)
	}
	if n := len(te.rec.matching(http.MethodGet, "^"+vaultScope+"/providers/Microsoft.Authorization/roleAssignments$")); n != 1 {
		t.Errorf("role assignment listings: got %d; want 1", n)
	}
	if n := len(te.rec.matching(http.MethodGet, "/providers/Microsoft.Authorization/roleDefinitions/")); n != 0 {
		t.Errorf("role definition reads: got %d; want 0", n)
	}
}

// TestPreflightOtherPrincipalSkipsConditions checks that a request for
// another principal, whose rights the caller cannot see, lists nothing.
func TestPreflightOtherPrincipalSkipsConditions(t *testing.T) {
	te := startEnv(t, emulator.Config{})
	r := te.newRun(t, fastOptions())
	req := te.request(t, pair(t, roleSecretsUser, vaultScope))
	req.Principal = access.Principal{ID: approverOID, Type: access.PrincipalUser}
	te.rec.reset()

	for _, c := range r.engine.Preflight(context.Background(), req) {
		if c.Name == lifecycle.CheckPermissions {
			t.Errorf("checks: got %q at %s; want none for another principal", c.Name, c.Scope)
		}
	}
	if n := len(te.rec.matching(http.MethodGet, "^"+vaultScope+"/providers/Microsoft.Authorization/roleAssignments$")); n != 0 {
		t.Errorf("role assignment listings: got %d; want 0", n)
	}
}

// TestPreflightLeavesPIMPairsOut checks that a pair routed to pim-assign,
// which the emulator grants whatever the delegation's condition allows, is
// not refused for a role the condition leaves out.
func TestPreflightLeavesPIMPairsOut(t *testing.T) {
	pe := startPIMEnv(t)
	r := pe.newPIMRun(t, pe.pimConfig(0))
	req := pe.pimRequest(t, 10*time.Minute, pair(t, roleSecretsUser, storageScope))
	choices := routed(t, r, req, lifecycle.BackendPIMAssign)

	c := permissionCheck(t, r.engine.PreflightBackends(context.Background(), req, choices, pe.pimConfig(0)), storageScope)
	if !c.OK {
		t.Errorf("check: got OK=false Warning=%v %q; want OK", c.Warning, c.Detail)
	}
	if !strings.Contains(c.Detail, "goes through PIM") {
		t.Errorf("detail: got %q; want it to say the pairs go through PIM", c.Detail)
	}
}
