package emulator

import (
	"embed"
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strings"
)

// builtinRoleFiles are the built-in role definitions as Azure's role
// documentation publishes them (ids, names, actions and data actions).
//
//go:embed builtinroles/*.json
var builtinRoleFiles embed.FS

// RoleDefinition is one role: its GUID name, display name and permissions.
type RoleDefinition struct {
	Name             string       `json:"name"` // the GUID
	RoleName         string       `json:"roleName"`
	Description      string       `json:"description"`
	RoleType         string       `json:"roleType"` // BuiltInRole or CustomRole
	AssignableScopes []string     `json:"assignableScopes"`
	Permissions      []Permission `json:"permissions"`
}

// Permission is one block of allowed and excluded actions of a role.
type Permission struct {
	Actions        []string `json:"actions"`
	NotActions     []string `json:"notActions"`
	DataActions    []string `json:"dataActions"`
	NotDataActions []string `json:"notDataActions"`
}

// Built-in role definition GUIDs that the emulator, its seed and its tests
// refer to by name.
const (
	RoleOwner                     = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
	RoleContributor               = "b24988ac-6180-42a0-ab88-20f7382dd24c"
	RoleReader                    = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
	RoleUserAccessAdministrator   = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"
	RoleRBACAdministrator         = "f58310d9-a9f6-439a-9e8d-f62e7b41a168"
	RoleKeyVaultAdministrator     = "00482a5a-887f-4fb3-b363-3b7fe8e74483"
	RoleKeyVaultSecretsOfficer    = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"
	RoleKeyVaultSecretsUser       = "4633458b-17de-408a-b874-0445c86b69e6"
	RoleKeyVaultReader            = "21090545-7ca7-4776-b22c-e363652d74d2"
	roleDefinitionsProviderPrefix = "/providers/Microsoft.Authorization/roleDefinitions/"
)

// BuiltinRoles returns the built-in role definitions, sorted by role name.
// The embedded files are part of the binary, so a parse failure is a build
// defect that TestBuiltinRolesParse catches.
func BuiltinRoles() []RoleDefinition {
	entries, err := builtinRoleFiles.ReadDir("builtinroles")
	if err != nil {
		panic(fmt.Sprintf("read embedded built-in roles: %v", err))
	}
	roles := make([]RoleDefinition, 0, len(entries))
	for _, e := range entries {
		data, err := builtinRoleFiles.ReadFile(path.Join("builtinroles", e.Name()))
		if err != nil {
			panic(fmt.Sprintf("read embedded role %q: %v", e.Name(), err))
		}
		var r RoleDefinition
		if err := json.Unmarshal(data, &r); err != nil {
			panic(fmt.Sprintf("parse embedded role %q: %v", e.Name(), err))
		}
		roles = append(roles, r)
	}
	sort.Slice(roles, func(i, j int) bool { return roles[i].RoleName < roles[j].RoleName })
	return roles
}

// roleDefinitionGUID extracts the GUID from a role definition reference:
// a bare GUID, /providers/Microsoft.Authorization/roleDefinitions/G, or the
// same below a subscription or other scope.
func roleDefinitionGUID(ref string) (string, bool) {
	if isGUID(ref) {
		return strings.ToLower(ref), true
	}
	scope, rest, ok := splitExtension(ref)
	if !ok || len(rest) != 2 || !strings.EqualFold(rest[0], "roleDefinitions") || !isGUID(rest[1]) {
		return "", false
	}
	if scope != "/" {
		if _, err := ParseResourceID(scope); err != nil {
			return "", false
		}
	}
	return strings.ToLower(rest[1]), true
}

// isGUID reports whether s is a GUID in 8-4-4-4-12 hex form.
func isGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// actionMatches compares an operation with a role's action pattern the way
// Azure RBAC does: case-insensitively, with '*' standing for any run of
// characters, including '/'.
func actionMatches(pattern, action string) bool {
	return wildcardMatch(strings.ToLower(pattern), strings.ToLower(action))
}

func wildcardMatch(pattern, s string) bool {
	star := strings.IndexByte(pattern, '*')
	if star < 0 {
		return pattern == s
	}
	if !strings.HasPrefix(s, pattern[:star]) {
		return false
	}
	rest := pattern[star+1:]
	for i := star; i <= len(s); i++ {
		if wildcardMatch(rest, s[i:]) {
			return true
		}
	}
	return false
}

// allows reports whether the permission grants action (or data action when
// data is true): some pattern of Actions matches and none of NotActions.
func (p Permission) allows(action string, data bool) bool {
	allow, deny := p.Actions, p.NotActions
	if data {
		allow, deny = p.DataActions, p.NotDataActions
	}
	granted := false
	for _, a := range allow {
		if actionMatches(a, action) {
			granted = true
			break
		}
	}
	if !granted {
		return false
	}
	for _, a := range deny {
		if actionMatches(a, action) {
			return false
		}
	}
	return true
}
