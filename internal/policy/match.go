package policy

import (
	"errors"
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/elevate-dev/elevate/internal/access"
)

// claimNamePattern is the form of a claim name in match.requester.
var claimNamePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,63}$`)

// claimMatch requires the claim name to equal, or match as a glob, one of
// patterns. Matching is case-sensitive, so a policy must spell values as
// the token carries them.
type claimMatch struct {
	name     string
	patterns []string
}

// compileClaims checks the requester claim patterns. Globs use path.Match
// syntax, so "*" does not cross a "/": "contoso/*" matches every repository
// of contoso, and "refs/heads/release/*" matches one level of release
// branches.
func compileClaims(m map[string]stringList) ([]claimMatch, error) {
	var out []claimMatch
	for _, name := range slices.Sorted(maps.Keys(m)) {
		if !claimNamePattern.MatchString(name) {
			return nil, fmt.Errorf("claim name %q is invalid", name)
		}
		patterns := m[name]
		if len(patterns) == 0 {
			return nil, fmt.Errorf("claim %q has no values; list at least one", name)
		}
		for _, p := range patterns {
			if err := checkGlob(p); err != nil {
				return nil, fmt.Errorf("claim %q: %w", name, err)
			}
		}
		out = append(out, claimMatch{name: name, patterns: patterns})
	}
	return out, nil
}

func checkGlob(p string) error {
	if p == "" {
		return errors.New("pattern is empty; a claim that is missing or empty never matches")
	}
	if _, err := path.Match(p, ""); err != nil {
		return fmt.Errorf("pattern %q is not a valid glob: %w", p, err)
	}
	return nil
}

func (c claimMatch) matches(claims map[string]string) bool {
	value := claims[c.name]
	if value == "" {
		return false
	}
	return slices.ContainsFunc(c.patterns, func(p string) bool {
		ok, _ := path.Match(p, value)
		return ok
	})
}

// compileRoles resolves each role (a GUID, a role definition id or a
// built-in role name) to its lowercase GUID. Custom role names are
// rejected because they differ between tenants and only a GUID is certain.
func compileRoles(roles []string) (map[string]bool, error) {
	if len(roles) == 0 {
		return nil, nil
	}
	set := map[string]bool{}
	for _, role := range roles {
		ref, err := access.ParseRoleRef(role)
		if err != nil {
			return nil, fmt.Errorf("role %q: %w", role, err)
		}
		guid := ref.GUID
		if guid == "" {
			var ok bool
			if guid, ok = access.BuiltinRoleGUID(ref.Name); !ok {
				return nil, fmt.Errorf("role %q is not a GUID or a built-in role name that Elevate knows; write the role definition GUID", role)
			}
		}
		set[guid] = true
	}
	return set, nil
}

// pairRoleGUID returns the lowercase GUID of the pair's role, or "" when
// neither RoleID nor a built-in RoleName gives one.
func pairRoleGUID(p Pair) string {
	if p.RoleID != "" {
		ref, err := access.ParseRoleRef(p.RoleID)
		if err != nil || ref.GUID == "" {
			return ""
		}
		return ref.GUID
	}
	guid, _ := access.BuiltinRoleGUID(p.RoleName)
	return guid
}

// scopeMatch matches a scope either as a resource id prefix, which covers
// the id itself and everything below it, or as a lowercase glob.
type scopeMatch struct {
	prefix access.ResourceID
	glob   string
}

// compileScopes checks each scope. A scope with glob characters is a glob
// matched case-insensitively against the whole resource id, with "*"
// matching within one path segment. Any other scope must parse as a
// resource id and matches at segment boundaries, so ".../rg-app" covers
// ".../rg-app/providers/..." but not ".../rg-app2".
func compileScopes(scopes []string) ([]scopeMatch, error) {
	var out []scopeMatch
	for _, s := range scopes {
		if strings.ContainsAny(s, "*?[") {
			glob := strings.ToLower(strings.TrimSuffix(s, "/"))
			if !strings.HasPrefix(glob, "/") {
				return nil, fmt.Errorf("scope pattern %q must start with \"/\"", s)
			}
			if err := checkGlob(glob); err != nil {
				return nil, err
			}
			out = append(out, scopeMatch{glob: glob})
			continue
		}
		id, err := access.ParseResourceID(s)
		if err != nil {
			return nil, fmt.Errorf("scope %q: %w", s, err)
		}
		out = append(out, scopeMatch{prefix: id})
	}
	return out, nil
}

func (m scopeMatch) matches(scope access.ResourceID) bool {
	if m.glob != "" {
		ok, _ := path.Match(m.glob, scope.Key())
		return ok
	}
	return m.prefix.Contains(scope)
}

// matchesStatic reports whether every condition of r except the CEL
// condition holds. Role and scope conditions must hold for every pair, so a
// rule never decides a request that it covers only in part.
func (r *rule) matchesStatic(p *Policy, in *checkedInput) bool {
	for _, c := range r.claims {
		if !c.matches(in.Requester) {
			return false
		}
	}
	if len(r.requesterIn) > 0 && !p.requesterIn(in.Input, r.requesterIn) {
		return false
	}
	for i := range in.Pairs {
		if r.roles != nil && !r.roles[in.roleGUIDs[i]] {
			return false
		}
		if len(r.scopes) > 0 && !slices.ContainsFunc(r.scopes, func(m scopeMatch) bool { return m.matches(in.scopes[i]) }) {
			return false
		}
	}
	if r.window != nil && !r.window.contains(in.Now) {
		return false
	}
	return true
}

// requesterIn reports whether any identity of the requester is a member of
// one of groups.
func (p *Policy) requesterIn(in Input, groups []string) bool {
	for _, subject := range RequesterIdentities(in) {
		for _, g := range p.GroupsOf(subject, in.RequesterGroups) {
			if slices.Contains(groups, g) {
				return true
			}
		}
	}
	return false
}
