package access

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ScopeKind is the level of the Azure hierarchy that a ResourceID names.
// The zero value means "not parsed".
type ScopeKind int

// Scope kinds, from the widest to the narrowest.
const (
	ManagementGroup ScopeKind = iota + 1
	Subscription
	ResourceGroup
	Resource
)

// String returns the kind's name as Azure documentation spells it.
func (k ScopeKind) String() string {
	switch k {
	case ManagementGroup:
		return "management group"
	case Subscription:
		return "subscription"
	case ResourceGroup:
		return "resource group"
	case Resource:
		return "resource"
	default:
		return fmt.Sprintf("ScopeKind(%d)", int(k))
	}
}

// Fixed resource types of the scopes that are not provider resources.
const (
	TypeManagementGroup = "Microsoft.Management/managementGroups"
	TypeSubscription    = "Microsoft.Resources/subscriptions"
	TypeResourceGroup   = "Microsoft.Resources/resourceGroups"
)

// Length limits for names in a scope. The resource group limit is the one
// the Azure SDK documents for resource group names.
const (
	maxResourceGroupName   = 90
	maxManagementGroupName = 90
)

// exampleScope is shown in every parse error so the user sees a valid id.
const exampleScope = "/subscriptions/00000000-0000-0000-0000-000000000000" +
	"/resourceGroups/rg-app/providers/Microsoft.KeyVault/vaults/kv-app"

// ResourceID is a parsed Azure resource id that can serve as a role
// assignment scope: a management group, a subscription, a resource group or
// a resource with any depth of nested types. The zero value is not a valid
// id. ResourceID is comparable, but two ids that differ only in case are
// the same scope, so compare Key() values instead of using ==.
type ResourceID struct {
	id              string // keywords in canonical case, names as given
	kind            ScopeKind
	managementGroup string
	subscriptionID  string
	resourceGroup   string
	provider        string // resource provider namespace, resources only
	resourceType    string // provider plus nested types, resources only
	name            string
	depth           int // number of type/name pairs after the provider
}

// ParseResourceID parses s as a scope. Keywords (subscriptions,
// resourceGroups, providers, managementGroups) match in any case and are
// rewritten in their canonical case; names keep the case given. One trailing
// slash is dropped. Role assignments, role definitions and other
// Microsoft.Authorization objects are rejected, because they are not scopes.
// Every error wraps ErrInvalidInput.
func ParseResourceID(s string) (ResourceID, error) {
	fail := func(problem string) (ResourceID, error) {
		return ResourceID{}, invalid("resource id", s, problem,
			"example of a valid id: "+exampleScope)
	}
	if s == "" {
		return fail("is empty")
	}
	if problem := checkIDCharacters(s); problem != "" {
		return fail(problem)
	}
	if !strings.HasPrefix(s, "/") {
		return fail(`must start with "/"`)
	}

	// Split into segments, which alternate keyword and name.
	body := strings.TrimSuffix(s[1:], "/")
	if body == "" {
		return fail("has no segments")
	}
	segments := strings.Split(body, "/")
	for i, seg := range segments {
		switch seg {
		case "":
			return fail(fmt.Sprintf("segment %d is empty (two slashes in a row)", i+1))
		case ".", "..":
			return fail(fmt.Sprintf("segment %d is the relative path %q", i+1, seg))
		}
	}
	if len(segments)%2 != 0 {
		return fail(fmt.Sprintf("has %d segments, but keywords and names come in pairs, "+
			"so the count must be even", len(segments)))
	}

	var (
		id  ResourceID
		err string
	)
	switch strings.ToLower(segments[0]) {
	case "subscriptions":
		id, err = parseSubscriptionScope(segments)
	case "providers":
		id, err = parseManagementGroup(segments)
	default:
		err = fmt.Sprintf(`starts with %q, but a scope starts with "/subscriptions/" `+
			`or "/providers/Microsoft.Management/managementGroups/"`, segments[0])
	}
	if err != "" {
		return fail(err)
	}
	return id, nil
}

// checkIDCharacters returns a problem description when s contains text that
// never belongs in a resource id: invalid UTF-8, whitespace, control
// characters, a query string or a fragment.
func checkIDCharacters(s string) string {
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	for _, r := range s {
		switch {
		case unicode.IsSpace(r):
			return fmt.Sprintf("contains whitespace %q", r)
		case unicode.IsControl(r), unicode.Is(unicode.Cf, r):
			return fmt.Sprintf("contains the control or format character %U", r)
		case r == '?':
			return "contains a query string (?); pass the id alone"
		case r == '#':
			return "contains a fragment (#); pass the id alone"
		}
	}
	return ""
}

// parseSubscriptionScope parses segments that start with "subscriptions".
// It returns a problem description instead of an error so the caller can
// wrap every failure the same way.
func parseSubscriptionScope(segments []string) (ResourceID, string) {
	sub := segments[1]
	if !IsGUID(sub) {
		return ResourceID{}, fmt.Sprintf("subscription id %q is not a GUID", sub)
	}
	id := ResourceID{
		id:             "/subscriptions/" + sub,
		kind:           Subscription,
		subscriptionID: sub,
		name:           sub,
	}
	rest := segments[2:]
	if len(rest) == 0 {
		return id, ""
	}

	if strings.EqualFold(rest[0], "resourceGroups") {
		rg := rest[1]
		if problem := checkResourceGroupName(rg); problem != "" {
			return ResourceID{}, problem
		}
		id.id += "/resourceGroups/" + rg
		id.kind = ResourceGroup
		id.resourceGroup = rg
		id.name = rg
		rest = rest[2:]
		if len(rest) == 0 {
			return id, ""
		}
	}

	if !strings.EqualFold(rest[0], "providers") {
		return ResourceID{}, fmt.Sprintf(`has %q where "providers" or "resourceGroups" belongs`, rest[0])
	}
	return parseProviderResource(id, rest[1:])
}

// parseProviderResource parses "NS/type/name[/type/name...]" below a
// subscription or resource group.
func parseProviderResource(parent ResourceID, rest []string) (ResourceID, string) {
	namespace := rest[0]
	if strings.EqualFold(namespace, "Microsoft.Authorization") {
		return ResourceID{}, "names a Microsoft.Authorization object (a role assignment, " +
			"definition or lock), which is not a scope; pass the resource it applies to"
	}
	if !isNamespace(namespace) {
		return ResourceID{}, fmt.Sprintf("resource provider %q is not a namespace such as Microsoft.KeyVault", namespace)
	}
	pairs := rest[1:]
	if len(pairs) == 0 {
		return ResourceID{}, fmt.Sprintf("ends at the resource provider %q without a resource type and name", namespace)
	}

	types := []string{namespace}
	for i := 0; i+1 < len(pairs); i += 2 {
		typ, name := pairs[i], pairs[i+1]
		if strings.EqualFold(typ, "providers") {
			return ResourceID{}, "contains an extension resource (a second \"providers\"), " +
				"which is not supported as a scope; pass the resource it extends"
		}
		if !isTypeName(typ) {
			return ResourceID{}, fmt.Sprintf("resource type %q may contain only letters, digits, '-', '_' and '.'", typ)
		}
		if i := strings.IndexAny(name, `<>%&\`); i >= 0 {
			return ResourceID{}, fmt.Sprintf("resource name %q contains %q, which is not allowed in a resource name", name, name[i])
		}
		types = append(types, typ)
	}

	id := parent
	id.id += "/providers/" + strings.Join(rest, "/")
	id.kind = Resource
	id.provider = namespace
	id.resourceType = strings.Join(types, "/")
	id.name = pairs[len(pairs)-1]
	id.depth = len(pairs) / 2
	return id, ""
}

// parseManagementGroup parses the four segments of
// /providers/Microsoft.Management/managementGroups/{id}.
func parseManagementGroup(segments []string) (ResourceID, string) {
	if len(segments) < 4 ||
		!strings.EqualFold(segments[1], "Microsoft.Management") ||
		!strings.EqualFold(segments[2], "managementGroups") {
		return ResourceID{}, "is a tenant-level id, but the only tenant-level scope accepted " +
			"is /providers/Microsoft.Management/managementGroups/{id}"
	}
	if len(segments) > 4 {
		return ResourceID{}, "continues after the management group id, but extension " +
			"resources of a management group are not supported as scopes"
	}
	group := segments[3]
	if problem := checkManagementGroupName(group); problem != "" {
		return ResourceID{}, problem
	}
	return ResourceID{
		id:              "/providers/" + TypeManagementGroup + "/" + group,
		kind:            ManagementGroup,
		managementGroup: group,
		name:            group,
	}, ""
}

// checkResourceGroupName applies Azure's resource group naming rule, as the
// Azure SDK documents it: 1-90 letters, digits, '_', '-', '.', '(' or ')',
// not ending in a period.
func checkResourceGroupName(rg string) string {
	if n := utf8.RuneCountInString(rg); n > maxResourceGroupName {
		return fmt.Sprintf("resource group name is %d characters, more than the maximum of %d", n, maxResourceGroupName)
	}
	for _, r := range rg {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && !strings.ContainsRune("_-.()", r) {
			return fmt.Sprintf("resource group name %q contains %q; allowed are letters, digits, '_', '-', '.', '(' and ')'", rg, r)
		}
	}
	if strings.HasSuffix(rg, ".") {
		return fmt.Sprintf("resource group name %q ends in a period, which Azure does not allow", rg)
	}
	return ""
}

// checkManagementGroupName accepts 1-90 ASCII letters, digits, '-', '_',
// '(', ')' or '.', not ending in a period.
// NOTE: this rule mirrors the resource group rule and was not checked
// against Azure documentation, so it may reject a few real ids.
func checkManagementGroupName(group string) string {
	if len(group) > maxManagementGroupName {
		return fmt.Sprintf("management group id is %d characters, more than the maximum of %d", len(group), maxManagementGroupName)
	}
	for _, r := range group {
		if !isASCIIAlnum(r) && !strings.ContainsRune("-_().", r) {
			return fmt.Sprintf("management group id %q contains %q; allowed are letters, digits, '-', '_', '(', ')' and '.'", group, r)
		}
	}
	if strings.HasSuffix(group, ".") {
		return fmt.Sprintf("management group id %q ends in a period, which Azure does not allow", group)
	}
	return ""
}

// isNamespace reports whether s looks like a resource provider namespace:
// dot-separated ASCII letter and digit words, at least two of them.
func isNamespace(s string) bool {
	words := strings.Split(s, ".")
	if len(words) < 2 {
		return false
	}
	for _, w := range words {
		if w == "" {
			return false
		}
		for _, r := range w {
			if !isASCIIAlnum(r) {
				return false
			}
		}
	}
	return true
}

func isTypeName(s string) bool {
	for _, r := range s {
		if !isASCIIAlnum(r) && !strings.ContainsRune("-_.", r) {
			return false
		}
	}
	return s != ""
}

func isASCIIAlnum(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
}

// MustParseResourceID parses s and panics on error. It is for ids written in
// code and tests, never for input.
func MustParseResourceID(s string) ResourceID {
	id, err := ParseResourceID(s)
	if err != nil {
		panic(err)
	}
	return id
}

// String returns the id with keywords in canonical case, names as given and
// no trailing slash. It is "" for the zero value.
func (r ResourceID) String() string { return r.id }

// Key returns the lowercased id. Azure compares ids without regard to case,
// so two ids are the same scope exactly when their keys are equal.
func (r ResourceID) Key() string { return strings.ToLower(r.id) }

// IsZero reports whether r is the zero value rather than a parsed id.
func (r ResourceID) IsZero() bool { return r.kind == 0 }

// Kind returns the hierarchy level that r names.
func (r ResourceID) Kind() ScopeKind { return r.kind }

// SubscriptionID returns the subscription GUID, or "" for a management group.
func (r ResourceID) SubscriptionID() string { return r.subscriptionID }

// ResourceGroup returns the resource group name, or "" above resource group
// level and for subscription-level resources.
func (r ResourceID) ResourceGroup() string { return r.resourceGroup }

// ManagementGroup returns the management group id, or "" for other kinds.
func (r ResourceID) ManagementGroup() string { return r.managementGroup }

// Name returns the last name segment: the resource, resource group or
// management group name, or the subscription GUID.
func (r ResourceID) Name() string { return r.name }

// Type returns the full resource type, such as "Microsoft.KeyVault/vaults"
// or "Microsoft.Sql/servers/databases" for a nested resource.
func (r ResourceID) Type() string {
	switch r.kind {
	case ManagementGroup:
		return TypeManagementGroup
	case Subscription:
		return TypeSubscription
	case ResourceGroup:
		return TypeResourceGroup
	default:
		return r.resourceType
	}
}

// Provider returns the resource provider namespace of Type().
func (r ResourceID) Provider() string {
	typ := r.Type()
	namespace, _, _ := strings.Cut(typ, "/")
	return namespace
}

// Parent returns the scope directly above r. A nested resource's parent is
// the resource it is nested in. A subscription and a management group
// report no parent, because their place in the management group tree is not
// part of the id.
func (r ResourceID) Parent() (ResourceID, bool) {
	var cut int // segments to drop from the end
	switch {
	case r.kind == ResourceGroup:
		cut = 2
	case r.kind == Resource && r.depth > 1:
		cut = 2
	case r.kind == Resource:
		cut = 4 // "providers/NS/type/name"
	default:
		return ResourceID{}, false
	}
	s := r.id
	for range cut {
		s = s[:strings.LastIndexByte(s, '/')]
	}
	parent, err := ParseResourceID(s)
	if err != nil {
		return ResourceID{}, false
	}
	return parent, true
}

// Contains reports whether a role assigned at r applies at other: other is r
// itself or lies below it. The check respects segment boundaries, so
// resource group "rg" does not contain "rg2". A management group contains
// only itself here, because the ids do not say which subscriptions lie
// below it.
func (r ResourceID) Contains(other ResourceID) bool {
	if r.IsZero() || other.IsZero() {
		return false
	}
	parent, child := r.Key(), other.Key()
	return child == parent || strings.HasPrefix(child, parent+"/")
}

// MarshalText encodes the id as String(), so ids in JSON plans are strings.
func (r ResourceID) MarshalText() ([]byte, error) { return []byte(r.id), nil }

// UnmarshalText parses text with ParseResourceID.
func (r *ResourceID) UnmarshalText(text []byte) error {
	id, err := ParseResourceID(string(text))
	if err != nil {
		return err
	}
	*r = id
	return nil
}
