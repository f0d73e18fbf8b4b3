package access

import (
	"fmt"
	"strings"
	"unicode"
)

// maxRoleName caps role names. It is an estimate chosen well above the
// built-in role names, not a limit that Azure documents.
const maxRoleName = 256

// exampleRole is shown in role parse errors.
const exampleRole = `a GUID such as 4633458b-17de-408a-b874-0445c86b69e6, ` +
	`/providers/Microsoft.Authorization/roleDefinitions/{guid}, or a name such as "Key Vault Secrets User"`

// RoleRef is a parsed --role value. Exactly one of GUID or Name is set. ID is
// set, next to GUID, only when the input was a full role definition id.
type RoleRef struct {
	GUID string // lowercase role definition GUID
	ID   string // role definition id as given
	Name string // role display name, to be resolved to a GUID elsewhere
}

// String returns the reference as the user would type it.
func (r RoleRef) String() string {
	switch {
	case r.ID != "":
		return r.ID
	case r.GUID != "":
		return r.GUID
	default:
		return r.Name
	}
}

// ParseRoleRef parses a role given as a GUID, as a role definition id at
// tenant, management group or subscription level, or as a role display name.
// Surrounding whitespace is ignored. A value made of hex digits and dashes
// that is not a GUID is rejected instead of being taken for a name.
func ParseRoleRef(s string) (RoleRef, error) {
	s = strings.TrimSpace(s)
	fail := func(problem string) (RoleRef, error) {
		return RoleRef{}, invalid("--role", s, problem, "want "+exampleRole)
	}
	switch {
	case s == "":
		return fail("is empty")
	case IsGUID(s):
		return RoleRef{GUID: strings.ToLower(s)}, nil
	case strings.HasPrefix(s, "/"):
		guid, problem := parseRoleDefinitionID(s)
		if problem != "" {
			return fail(problem)
		}
		return RoleRef{GUID: guid, ID: s}, nil
	case looksLikeGUID(s):
		return fail("looks like a GUID but is not one (want 8-4-4-4-12 hex digits)")
	}

	if n := len([]rune(s)); n > maxRoleName {
		return fail(fmt.Sprintf("is %d characters, more than the maximum of %d for a role name", n, maxRoleName))
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return fail(fmt.Sprintf("contains the control or format character %U", r))
		}
	}
	return RoleRef{Name: s}, nil
}

// parseRoleDefinitionID extracts the GUID from a role definition id. The
// scope in front of "/providers/Microsoft.Authorization/roleDefinitions/"
// must be empty (tenant), a subscription or a management group.
func parseRoleDefinitionID(s string) (guid, problem string) {
	const marker = "/providers/microsoft.authorization/roledefinitions/"
	// Lowercase ASCII only, so byte offsets in the copy match those in s.
	i := strings.LastIndex(asciiLower(s), marker)
	if i < 0 {
		return "", "starts with \"/\" but is not a role definition id"
	}
	guid = s[i+len(marker):]
	if !IsGUID(guid) {
		return "", fmt.Sprintf("role definition name %q is not a GUID", guid)
	}
	if scope := s[:i]; scope != "" {
		id, err := ParseResourceID(scope)
		if err != nil || (id.Kind() != Subscription && id.Kind() != ManagementGroup) {
			return "", fmt.Sprintf("role definition scope %q is not a subscription or management group", scope)
		}
	}
	return strings.ToLower(guid), ""
}

// RoleDefinitionID returns the subscription-level id of a role definition,
// the form that role assignment requests carry in roleDefinitionId.
func RoleDefinitionID(subscriptionID, guid string) string {
	return fmt.Sprintf("/subscriptions/%s/providers/Microsoft.Authorization/roleDefinitions/%s", subscriptionID, guid)
}

// IsGUID reports whether s is a GUID in the 8-4-4-4-12 hex digit form,
// without braces or a urn prefix. Case does not matter.
func IsGUID(s string) bool {
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
			if !isHex(c) {
				return false
			}
		}
	}
	return true
}

// looksLikeGUID reports whether s is made only of hex digits and dashes and
// contains a dash, which marks a mistyped GUID rather than a role name.
func looksLikeGUID(s string) bool {
	if !strings.Contains(s, "-") || len(s) < 8 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isHex(s[i]) && s[i] != '-' {
			return false
		}
	}
	return true
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// builtinRoles maps lowercased display names of common built-in roles to
// their GUIDs, which are the same in every Azure tenant. Lookups of other
// names go to the role definitions API.
var builtinRoles = map[string]string{
	"owner":                     "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
	"contributor":               "b24988ac-6180-42a0-ab88-20f7382dd24c",
	"reader":                    "acdd72a7-3385-48ef-bd42-f606fba81ae7",
	"user access administrator": "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
	"role based access control administrator": "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
	"key vault administrator":                 "00482a5a-887f-4fb3-b363-3b7fe8e74483",
	"key vault reader":                        "21090545-7ca7-4776-b22c-e363652d74d2",
	"key vault secrets officer":               "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
	"key vault secrets user":                  "4633458b-17de-408a-b874-0445c86b69e6",
}

// BuiltinRoleGUID returns the GUID of a well-known built-in role by display
// name, ignoring case. It covers only the roles Elevate works with most
// often. For any other name ok is false and the caller must look the name up.
func BuiltinRoleGUID(name string) (guid string, ok bool) {
	guid, ok = builtinRoles[strings.ToLower(strings.TrimSpace(name))]
	return guid, ok
}
