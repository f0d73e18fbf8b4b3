package emulator

import (
	"errors"
	"fmt"
	"strings"
)

// ResourceID is a parsed ARM scope: the tenant root, a management group, a
// subscription, a resource group, or a resource with any number of child
// types. ARM compares every part case-insensitively; the parsed parts keep
// the caller's spelling so responses echo it.
type ResourceID struct {
	ManagementGroup string // set only for management group scopes
	Subscription    string
	ResourceGroup   string
	Provider        string   // resource provider namespace, e.g. Microsoft.KeyVault
	Types           []string // resource types below the provider, e.g. [vaults secrets]
	Names           []string // one name per entry of Types
}

// errInvalidResourceID is wrapped by every ParseResourceID error.
var errInvalidResourceID = errors.New("invalid resource id")

// ParseResourceID parses a scope such as
// /subscriptions/S/resourceGroups/RG/providers/Microsoft.KeyVault/vaults/kv.
// "/" is the tenant root scope. Extension resources (a second /providers/
// segment) are not scopes here; callers split them off first.
func ParseResourceID(s string) (ResourceID, error) {
	var id ResourceID
	if s == "/" {
		return id, nil
	}
	if !strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/") {
		return id, fmt.Errorf("%w %q: must start with / and not end with /", errInvalidResourceID, s)
	}

	parts := strings.Split(s[1:], "/")
	for _, p := range parts {
		if p == "" {
			return id, fmt.Errorf("%w %q: empty segment", errInvalidResourceID, s)
		}
	}
	switch {
	case len(parts) == 4 && strings.EqualFold(parts[0], "providers") &&
		strings.EqualFold(parts[1], "Microsoft.Management") &&
		strings.EqualFold(parts[2], "managementGroups"):
		id.ManagementGroup = parts[3]
		return id, nil
	case strings.EqualFold(parts[0], "subscriptions") && len(parts) >= 2:
		id.Subscription = parts[1]
		parts = parts[2:]
	default:
		return id, fmt.Errorf("%w %q: want /subscriptions/{id}/... or /providers/Microsoft.Management/managementGroups/{id}", errInvalidResourceID, s)
	}
	if len(parts) == 0 {
		return id, nil
	}

	if !strings.EqualFold(parts[0], "resourceGroups") || len(parts) < 2 {
		return id, fmt.Errorf("%w %q: want resourceGroups/{name} after the subscription", errInvalidResourceID, s)
	}
	id.ResourceGroup = parts[1]
	parts = parts[2:]
	if len(parts) == 0 {
		return id, nil
	}

	if !strings.EqualFold(parts[0], "providers") || len(parts) < 4 {
		return id, fmt.Errorf("%w %q: want providers/{namespace}/{type}/{name} after the resource group", errInvalidResourceID, s)
	}
	id.Provider = parts[1]
	parts = parts[2:]
	if len(parts)%2 != 0 {
		return id, fmt.Errorf("%w %q: resource type %q has no name", errInvalidResourceID, s, parts[len(parts)-1])
	}
	for i := 0; i < len(parts); i += 2 {
		if strings.EqualFold(parts[i], "providers") {
			return id, fmt.Errorf("%w %q: extension resources are not scopes", errInvalidResourceID, s)
		}
		id.Types = append(id.Types, parts[i])
		id.Names = append(id.Names, parts[i+1])
	}
	return id, nil
}

// String returns the canonical form with ARM's keyword spelling.
func (id ResourceID) String() string {
	if id.ManagementGroup != "" {
		return "/providers/Microsoft.Management/managementGroups/" + id.ManagementGroup
	}
	if id.Subscription == "" {
		return "/"
	}
	var b strings.Builder
	b.WriteString("/subscriptions/" + id.Subscription)
	if id.ResourceGroup == "" {
		return b.String()
	}
	b.WriteString("/resourceGroups/" + id.ResourceGroup)
	if id.Provider == "" {
		return b.String()
	}
	b.WriteString("/providers/" + id.Provider)
	for i := range id.Types {
		b.WriteString("/" + id.Types[i] + "/" + id.Names[i])
	}
	return b.String()
}

// Key returns the lower-case canonical form used to compare scopes.
func (id ResourceID) Key() string { return strings.ToLower(id.String()) }

// IsResource reports whether the id names a resource below a resource group.
func (id ResourceID) IsResource() bool { return id.Provider != "" }

// Type returns the full resource type, e.g. Microsoft.KeyVault/vaults/secrets,
// or "" for scopes that are not resources.
func (id ResourceID) Type() string {
	if !id.IsResource() {
		return ""
	}
	return id.Provider + "/" + strings.Join(id.Types, "/")
}

// Name returns the last name in the id.
func (id ResourceID) Name() string {
	switch {
	case id.IsResource():
		return id.Names[len(id.Names)-1]
	case id.ResourceGroup != "":
		return id.ResourceGroup
	case id.Subscription != "":
		return id.Subscription
	default:
		return id.ManagementGroup
	}
}

// Parent returns the enclosing scope inside the subscription tree. The id
// alone does not name a subscription's management group, so a subscription's
// parent is the tenant root, and callers add the group from the seed.
func (id ResourceID) Parent() (ResourceID, bool) {
	switch {
	case len(id.Types) > 1:
		p := id
		p.Types = id.Types[:len(id.Types)-1]
		p.Names = id.Names[:len(id.Names)-1]
		return p, true
	case id.IsResource():
		return ResourceID{Subscription: id.Subscription, ResourceGroup: id.ResourceGroup}, true
	case id.ResourceGroup != "":
		return ResourceID{Subscription: id.Subscription}, true
	case id.Subscription != "" || id.ManagementGroup != "":
		return ResourceID{}, true
	default:
		return id, false
	}
}

// authorizationPath is the ARM path segment that separates a scope from a
// Microsoft.Authorization extension resource.
const authorizationPath = "/providers/microsoft.authorization/"

// splitExtension splits an ARM path at its last Microsoft.Authorization
// provider segment: "/subscriptions/S/providers/Microsoft.Authorization/roleAssignments/N"
// becomes scope "/subscriptions/S" and rest ["roleAssignments", "N"]. A path
// without that segment returns ok false.
func splitExtension(p string) (scope string, rest []string, ok bool) {
	i := lastIndexFoldASCII(p, authorizationPath)
	if i < 0 {
		return "", nil, false
	}
	scope = p[:i]
	if scope == "" {
		scope = "/"
	}
	tail := strings.TrimSuffix(p[i+len(authorizationPath):], "/")
	if tail == "" {
		return scope, nil, true
	}
	return scope, strings.Split(tail, "/"), true
}

// lastIndexFoldASCII is strings.LastIndex ignoring ASCII case only. Unicode
// case folding could change byte lengths (or fold the Kelvin sign to k), and
// the index must point into p itself.
func lastIndexFoldASCII(p, lowerSub string) int {
	for i := len(p) - len(lowerSub); i >= 0; i-- {
		match := true
		for j := 0; j < len(lowerSub); j++ {
			c := p[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != lowerSub[j] {
				match = false
				break
			}
		}
		if match {
			return i
		}
	}
	return -1
}
