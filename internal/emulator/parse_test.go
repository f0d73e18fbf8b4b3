package emulator

import (
	"strings"
	"testing"
)

func TestParseResourceIDForms(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		wantType string
		wantName string
		wantErr  bool
	}{
		{"tenant root", "/", "", "", false},
		{"management group", "/providers/Microsoft.Management/managementGroups/contoso", "", "contoso", false},
		{"subscription", "/subscriptions/" + demoSubscription, "", demoSubscription, false},
		{"resource group any case", "/SUBSCRIPTIONS/" + demoSubscription + "/resourcegroups/rg", "", "rg", false},
		{"resource", demoVault, "Microsoft.KeyVault/vaults", "kv-elevate-demo", false},
		{"child resource", demoVault + "/secrets/s1", "Microsoft.KeyVault/vaults/secrets", "s1", false},
		{"trailing slash", demoRG + "/", "", "", true},
		{"empty segment", "/subscriptions//resourceGroups/rg", "", "", true},
		{"type without name", demoRG + "/providers/Microsoft.KeyVault/vaults", "", "", true},
		{"relative", "subscriptions/" + demoSubscription, "", "", true},
		{"extension resource", demoVault + "/providers/Microsoft.Authorization/locks/l", "", "", true},
		{"unknown root", "/tenants/x", "", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := ParseResourceID(tc.in)
			if gotErr := err != nil; gotErr != tc.wantErr {
				t.Fatalf("error: got %v; want error %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if got := id.Type(); got != tc.wantType {
				t.Errorf("Type: got %q; want %q", got, tc.wantType)
			}
			if got := id.Name(); got != tc.wantName {
				t.Errorf("Name: got %q; want %q", got, tc.wantName)
			}
			again, err := ParseResourceID(id.String())
			if err != nil || again.Key() != id.Key() {
				t.Errorf("round trip of %q: got %q, %v; want the same id", tc.in, again.String(), err)
			}
		})
	}
}

func TestParseAssignmentFilterForms(t *testing.T) {
	tests := []struct {
		in      string
		want    assignmentFilter
		wantErr bool
	}{
		{"", assignmentFilter{}, false},
		{"atScope()", assignmentFilter{AtScope: true}, false},
		{"principalId eq 'abc'", assignmentFilter{PrincipalID: "abc"}, false},
		{"assignedTo('abc')", assignmentFilter{AssignedTo: "abc"}, false},
		{"atScope() and assignedTo('abc')", assignmentFilter{AtScope: true, AssignedTo: "abc"}, false},
		{"atScope()  AND  principalId  EQ  'it''s'", assignmentFilter{AtScope: true, PrincipalID: "it's"}, false},
		{"principalId eq abc", assignmentFilter{}, true},
		{"principalId ne 'abc'", assignmentFilter{}, true},
		{"atScope() or assignedTo('x')", assignmentFilter{}, true},
		{"roleName eq 'Reader'", assignmentFilter{}, true},
		{"assignedTo('a') and principalId eq 'b'", assignmentFilter{}, true},
		{"assignedTo('unterminated)", assignmentFilter{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseAssignmentFilter(tc.in)
			if gotErr := err != nil; gotErr != tc.wantErr {
				t.Fatalf("error: got %v; want error %v", err, tc.wantErr)
			}
			if err == nil && got != tc.want {
				t.Errorf("got %+v; want %+v", got, tc.want)
			}
		})
	}
}

func TestActionMatchesWildcards(t *testing.T) {
	tests := []struct {
		pattern, action string
		want            bool
	}{
		{"*", "Microsoft.Authorization/roleAssignments/write", true},
		{"*/read", "Microsoft.KeyVault/vaults/read", true},
		{"*/read", "Microsoft.KeyVault/vaults/write", false},
		{"Microsoft.Authorization/*", "microsoft.authorization/roleassignments/delete", true},
		{"Microsoft.KeyVault/vaults/secrets/*", "Microsoft.KeyVault/vaults/secrets/getSecret/action", true},
		{"Microsoft.KeyVault/vaults/*/read", "Microsoft.KeyVault/vaults/secrets/read", true},
		{"Microsoft.KeyVault/vaults/secrets/getSecret/action", "Microsoft.KeyVault/vaults/secrets/setSecret/action", false},
	}
	for _, tc := range tests {
		if got := actionMatches(tc.pattern, tc.action); got != tc.want {
			t.Errorf("actionMatches(%q, %q): got %v; want %v", tc.pattern, tc.action, got, tc.want)
		}
	}
}

func TestContributorCannotWriteAssignments(t *testing.T) {
	roles := map[string]RoleDefinition{}
	for _, r := range BuiltinRoles() {
		roles[r.Name] = r
	}
	if len(roles) != 9 {
		t.Fatalf("built-in roles: got %d; want 9", len(roles))
	}
	contributor := roles[RoleContributor].Permissions[0]
	if contributor.allows("Microsoft.Authorization/roleAssignments/write", false) {
		t.Errorf("Contributor allows roleAssignments/write; want denied by notActions")
	}
	if !contributor.allows("Microsoft.KeyVault/vaults/write", false) {
		t.Errorf("Contributor denies vaults/write; want allowed")
	}
	user := roles[RoleKeyVaultSecretsUser].Permissions[0]
	if user.allows("Microsoft.KeyVault/vaults/secrets/setSecret/action", true) {
		t.Errorf("Secrets User allows setSecret; want denied")
	}
}

func FuzzParseResourceID(f *testing.F) {
	for _, seed := range []string{"/", demoRG, demoVault, demoVault + "/secrets/a", "/providers/Microsoft.Management/managementGroups/m",
		"//", "/subscriptions", "/subscriptions/x/resourceGroups", "/subscriptions/x/resourceGroups/r/providers/ns/t/n/providers/a/b/c"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		id, err := ParseResourceID(in)
		if err != nil {
			return
		}
		_ = id.Type()
		_ = id.Name()
		for p, ok := id.Parent(); ok; p, ok = p.Parent() {
			_ = p.Key()
		}
		again, err := ParseResourceID(id.String())
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", id.String(), in, err)
		}
		if again.Key() != id.Key() {
			t.Fatalf("round trip of %q: got %q; want %q", in, again.Key(), id.Key())
		}
	})
}

func FuzzParseFilter(f *testing.F) {
	for _, seed := range []string{"atScope()", "principalId eq 'a'", "assignedTo('a')", "atScope() and assignedTo('x''y')",
		"roleName eq 'Reader' and type eq 'BuiltInRole'", "(", "'", "a eq", "a(", "and and"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		terms, err := parseFilter(in)
		if err == nil && len(terms) == 0 {
			t.Fatalf("parseFilter(%q) returned no terms and no error", in)
		}
		_, _ = parseAssignmentFilter(in)
		_, _ = parseDefinitionFilter(in)
	})
}

func FuzzSplitExtension(f *testing.F) {
	for _, seed := range []string{demoRG + "/providers/Microsoft.Authorization/roleAssignments/x", "/providers/Microsoft.Authorization/roleDefinitions",
		"/providers/microsoft.authorization/", "x"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		scope, rest, ok := splitExtension(in)
		if !ok {
			return
		}
		if scope == "" {
			t.Fatalf("splitExtension(%q): empty scope", in)
		}
		for _, r := range rest {
			if strings.Contains(r, "/") {
				t.Fatalf("splitExtension(%q): segment %q contains /", in, r)
			}
		}
	})
}
