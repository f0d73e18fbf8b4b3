package access

import (
	"errors"
	"strings"
	"testing"
)

const secretsUser = "4633458b-17de-408a-b874-0445c86b69e6"

func TestParseRoleRefAccepted(t *testing.T) {
	upper := strings.ToUpper(secretsUser)
	tests := []struct {
		name, in string
		want     RoleRef
	}{
		{"lowercase guid", secretsUser, RoleRef{GUID: secretsUser}},
		{"uppercase guid lowercased", upper, RoleRef{GUID: secretsUser}},
		{"surrounding space trimmed", "  " + secretsUser + "\n", RoleRef{GUID: secretsUser}},
		{
			"subscription definition id",
			RoleDefinitionID(testSub, upper),
			RoleRef{GUID: secretsUser, ID: RoleDefinitionID(testSub, upper)},
		},
		{
			"tenant definition id",
			"/providers/Microsoft.Authorization/roleDefinitions/" + secretsUser,
			RoleRef{GUID: secretsUser, ID: "/providers/Microsoft.Authorization/roleDefinitions/" + secretsUser},
		},
		{
			"management group definition id",
			mgID + "/providers/microsoft.authorization/roledefinitions/" + secretsUser,
			RoleRef{GUID: secretsUser, ID: mgID + "/providers/microsoft.authorization/roledefinitions/" + secretsUser},
		},
		{"role name", "Key Vault Secrets User", RoleRef{Name: "Key Vault Secrets User"}},
		{"role name with slash", "SignalR/Web PubSub Contributor", RoleRef{Name: "SignalR/Web PubSub Contributor"}},
		{"short hex word is a name", "ace", RoleRef{Name: "ace"}},
		// Braces make a name, which the role name lookup then fails to find.
		{"braced guid is a name", "{" + secretsUser + "}", RoleRef{Name: "{" + secretsUser + "}"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRoleRef(tt.in)
			if err != nil {
				t.Fatalf("ParseRoleRef(%q) error: %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("got %+v; want %+v", got, tt.want)
			}
		})
	}
}

func TestParseRoleRefRejected(t *testing.T) {
	tests := []struct{ name, in, problem string }{
		{"empty", "", "is empty"},
		{"only spaces", "   ", "is empty"},
		{"malformed guid", "4633458b-17de-408a-b874-0445c86b69e", "looks like a GUID"},
		{"definition id without guid", "/providers/Microsoft.Authorization/roleDefinitions/reader", "is not a GUID"},
		{"resource id not definition", rgID, "not a role definition id"},
		{"definition at resource group", rgID + "/providers/Microsoft.Authorization/roleDefinitions/" + secretsUser, "not a subscription or management group"},
		{"definition at bad scope", "/subs/x/providers/Microsoft.Authorization/roleDefinitions/" + secretsUser, "not a subscription"},
		{"control character in name", "Reader\x07", "control"},
		{"bidi override in name", "Reader\u202e", "format character"},
		{"name too long", strings.Repeat("a", 257), "257 characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRoleRef(tt.in)
			if err == nil {
				t.Fatalf("ParseRoleRef(%q) = %+v; want an error", tt.in, got)
			}
			if !errors.Is(err, ErrInvalidInput) {
				t.Errorf("errors.Is(err, ErrInvalidInput) = false for %v", err)
			}
			if !strings.Contains(err.Error(), tt.problem) || !strings.Contains(err.Error(), "--role") {
				t.Errorf("error %q does not name --role and %q", err, tt.problem)
			}
		})
	}
}

func TestIsGUID(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{secretsUser, true},
		{strings.ToUpper(secretsUser), true},
		{"00000000-0000-0000-0000-000000000000", true},
		{"4633458b17de408ab8740445c86b69e6", false},
		{"4633458b-17de-408a-b874-0445c86b69eg", false},
		{"4633458b-17de-408a-b874_0445c86b69e6", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := IsGUID(tt.in); got != tt.want {
			t.Errorf("IsGUID(%q): got %v; want %v", tt.in, got, tt.want)
		}
	}
}

func TestBuiltinRoleGUID(t *testing.T) {
	guid, ok := BuiltinRoleGUID(" key vault SECRETS user ")
	if !ok || guid != secretsUser {
		t.Errorf("got %q, %v; want %q, true", guid, ok, secretsUser)
	}
	if guid, ok := BuiltinRoleGUID("Made Up Role"); ok {
		t.Errorf("got %q, true; want false", guid)
	}
}
