package lifecycle

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/elevate-dev/elevate/internal/abac"
	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/azure"
)

// The permissions API returns a caller's actions without the ABAC
// conditions on them, so a caller whose roleAssignments/write comes from a
// conditioned delegation passes the permission check and then gets 403 for
// a role the condition leaves out. This file evaluates those conditions
// with the same parser the emulator uses, over the caller's own role
// assignments at the scope.

// AssignmentLister lists the role assignments that apply to a principal at
// a scope. *azure.RBAC implements it. The pre-flight evaluates delegation
// conditions only when the engine's ARM implements it too, so that other
// implementations of ARM need not.
type AssignmentLister interface {
	ListAssignmentsAssignedTo(ctx context.Context, scope, principalID string) ([]azure.Assignment, error)
}

// principalTypes are the principalType values of the role assignments REST
// spec (2022-04-01), tried in turn when a request leaves the type to ARM.
var principalTypes = []string{"User", "Group", "ServicePrincipal", "ForeignGroup"}

// roleCache keeps role definitions by lower-case GUID for one pre-flight,
// so that a role held at several scopes is read once.
type roleCache struct {
	arm  ARM
	defs map[string]azure.RoleDefinition
	errs map[string]error
}

func newRoleCache(arm ARM) *roleCache {
	return &roleCache{arm: arm, defs: map[string]azure.RoleDefinition{}, errs: map[string]error{}}
}

// get returns the definition of the role whose id or GUID is roleID, read
// at scope on first use.
func (c *roleCache) get(ctx context.Context, scope, roleID string) (azure.RoleDefinition, error) {
	guid := strings.ToLower(roleID[strings.LastIndexByte(roleID, '/')+1:])
	if def, ok := c.defs[guid]; ok {
		return def, nil
	}
	if err, ok := c.errs[guid]; ok {
		return azure.RoleDefinition{}, err
	}
	def, err := c.arm.GetRoleDefinition(ctx, scope, guid)
	if err != nil {
		c.errs[guid] = err
		return def, err
	}
	c.defs[guid] = def
	return def, nil
}

// grantingAssignment is one of the caller's role assignments at a scope
// whose role grants roleAssignments/write or /delete there.
type grantingAssignment struct {
	assignment azure.Assignment
	roleName   string
	write      bool
	delete     bool
	condition  *abac.Condition // nil when the assignment has no condition
	unreadable error           // reason the condition, or the role, could not be read
}

// grants reports whether the assignment's role grants action.
func (g grantingAssignment) grants(action string) bool {
	if action == abac.ActionDelete {
		return g.delete
	}
	return g.write
}

// verdict is the outcome of the caller's assignments for one action on one
// pair.
type verdict int

const (
	allowed verdict = iota
	denied          // every granting assignment has a condition, and none allows it
	unknown         // some granting assignment could not be evaluated
)

// checkConditions evaluates the conditions on the caller's role
// assignments at scope for every pair there, for the write that grants
// and the delete that revokes. It returns a failed check when some pair is
// denied, a warning when some could not be evaluated, and an OK check
// otherwise. It lists the caller's assignments once and reads a role
// definition only when some assignment has a condition.
func (e *Engine) checkConditions(ctx context.Context, req access.Request, scope string, pairs []access.Pair, roles *roleCache) Check {
	c := Check{Name: CheckPermissions, Scope: scope}
	pairs = slices.DeleteFunc(slices.Clone(pairs), func(p access.Pair) bool { return !e.writesRoleAssignment(p) })
	if len(pairs) == 0 {
		c.OK = true
		c.Detail = "the caller may write and delete role assignments, and every pair here goes through PIM, so the conditions on its role assignments were not evaluated"
		return c
	}
	lister, ok := e.arm.(AssignmentLister)
	if !ok {
		c.OK = true
		c.Detail = "the caller may write and delete role assignments (this ARM client cannot list role assignments, so conditions are not evaluated)"
		return c
	}
	listed, err := lister.ListAssignmentsAssignedTo(ctx, scope, e.callerID)
	if err != nil {
		e.log.WarnContext(ctx, "list caller role assignments failed", "request_id", req.ID, "scope", scope, "error", err)
		c.Warning = true
		c.Detail = "the caller may write and delete role assignments, but listing its role assignments to evaluate their conditions failed: " + shortError(err)
		return c
	}
	if !slices.ContainsFunc(listed, func(a azure.Assignment) bool { return a.Condition != "" }) {
		c.OK = true
		c.Detail = "the caller may write and delete role assignments, and none of its role assignments here has a condition"
		return c
	}
	granting := e.grantingAssignments(ctx, req, scope, listed, roles)

	var denials []denial
	var unreadable []string
	for _, p := range pairs {
		attrs := abac.Attributes(RoleDefinitionID(p.Scope, p.RoleID), req.Principal.ID, req.Principal.Type)
		r := denial{roleID: p.RoleID}
		for _, action := range []string{abac.ActionWrite, abac.ActionDelete} {
			v, limits, reasons := judge(granting, action, attrs)
			switch v {
			case denied:
				r.actions = append(r.actions, action)
				r.addLimits(limits)
			case unknown:
				unreadable = appendNew(unreadable, reasons...)
			}
		}
		if len(r.actions) > 0 {
			denials = append(denials, r)
		}
	}

	switch {
	case len(denials) > 0:
		c.Detail = e.describeDenials(ctx, scope, denials, roles)
	case len(unreadable) > 0:
		c.Warning = true
		c.Detail = "the caller may write and delete role assignments, but Elevate could not evaluate " +
			strings.Join(unreadable, "; ") + "; if apply fails with 403, check that condition"
	default:
		c.OK = true
		c.Detail = "the caller may write and delete these role assignments, and the conditions on its role assignments allow them"
	}
	return c
}

// writesRoleAssignment reports whether p is granted by writing a role
// assignment, which the delegation's conditions decide: true unless Route
// sent p to a PIM backend.
// NOTE: whether Azure applies the delegation's condition to PIM schedule
// requests was not checked, and the emulator does not, so PIM pairs are
// left out. PreflightBackends without Route still evaluates them.
func (e *Engine) writesRoleAssignment(p access.Pair) bool {
	r, ok := e.backends[BackendRBAC].(*router)
	if !ok {
		return true
	}
	c, ok := r.byPair[pairKey(p)]
	return !ok || c.Backend == BackendRBAC
}

// grantingAssignments returns the listed assignments whose role grants
// roleAssignments/write or /delete, with their conditions parsed. An
// assignment whose role cannot be read is kept as unreadable, because its
// role might grant both.
func (e *Engine) grantingAssignments(ctx context.Context, req access.Request, scope string, listed []azure.Assignment, roles *roleCache) []grantingAssignment {
	var out []grantingAssignment
	for _, a := range listed {
		g := grantingAssignment{assignment: a}
		def, err := roles.get(ctx, scope, a.RoleDefinitionID)
		if err != nil {
			e.log.WarnContext(ctx, "role definition lookup failed", "request_id", req.ID, "assignment_id", a.ID, "error", err)
			g.write, g.delete = true, true
			g.unreadable = fmt.Errorf("read role %s: %s", a.RoleDefinitionID, shortError(err))
			out = append(out, g)
			continue
		}
		g.roleName = def.Name
		g.write = allows(def.Actions, def.NotActions, abac.ActionWrite)
		g.delete = allows(def.Actions, def.NotActions, abac.ActionDelete)
		if !g.write && !g.delete {
			continue
		}
		if a.Condition != "" {
			g.condition, g.unreadable = parseAssignmentCondition(a)
			if g.unreadable != nil {
				e.log.WarnContext(ctx, "role assignment condition unreadable", "request_id", req.ID, "assignment_id", a.ID, "error", g.unreadable)
			}
		}
		out = append(out, g)
	}
	return out
}

// parseAssignmentCondition parses the condition of a, which must be
// version 2.0 or carry no version.
func parseAssignmentCondition(a azure.Assignment) (*abac.Condition, error) {
	if a.ConditionVersion != "" && a.ConditionVersion != abac.Version {
		return nil, fmt.Errorf("conditionVersion %q is not %q", a.ConditionVersion, abac.Version)
	}
	return abac.Parse(a.Condition)
}

// judge decides action on a role assignment with attrs from the granting
// assignments. It returns, for denied, what each condition allows, and for
// unknown, which assignments could not be evaluated.
func judge(granting []grantingAssignment, action string, attrs map[string]string) (verdict, []limit, []string) {
	var limits []limit
	var unreadable []string
	for _, g := range granting {
		if !g.grants(action) {
			continue
		}
		switch {
		case g.unreadable != nil:
			unreadable = append(unreadable, fmt.Sprintf("role assignment %s (%s)", g.assignment.Name, g.unreadable))
		case g.condition == nil:
			return allowed, nil, nil
		case evaluate(g.condition, action, attrs):
			return allowed, nil, nil
		default:
			limits = append(limits, describeLimits(g, action, attrs))
		}
	}
	if len(unreadable) > 0 {
		return unknown, nil, unreadable
	}
	if len(limits) == 0 {
		return unknown, nil, []string{"where its " + shortAction(action) + " right comes from, because none of its role assignments listed here grants it"}
	}
	return denied, limits, nil
}

// evaluate runs condition on action with attrs. An empty principal type,
// which leaves the type to ARM, counts as allowed when any type would be.
func evaluate(condition *abac.Condition, action string, attrs map[string]string) bool {
	in := func(a map[string]string) abac.Input {
		if action == abac.ActionDelete {
			return abac.DeleteInput(a)
		}
		return abac.WriteInput(a)
	}
	if attrs[abac.AttrPrincipalType] != "" {
		return condition.Evaluate(in(attrs))
	}
	for _, t := range principalTypes {
		tried := maps.Clone(attrs)
		tried[abac.AttrPrincipalType] = t
		if condition.Evaluate(in(tried)) {
			return true
		}
	}
	return false
}

// limit is the rule that one assignment's condition sets for some
// actions, in words.
type limit struct {
	holder  string // the assignment, as "the caller's ROLE assignment ID..."
	actions []string
	rule    string // the attribute values the condition allows, or "" when none explains the denial
	// roleBlocked is true when the condition allows a list of roles that
	// leaves out the requested one, so adding the role's id is the fix.
	roleBlocked bool
	// roleExcluded is true when the condition names the requested role
	// among the roles it excludes.
	roleExcluded bool
}

// text renders l as a clause of a check's detail.
func (l limit) text() string {
	names := make([]string, len(l.actions))
	for i, a := range l.actions {
		names[i] = shortAction(a)
	}
	if l.rule == "" {
		return "the condition on " + l.holder + " is false for " + strings.Join(names, " and ")
	}
	return "the condition on " + l.holder + " allows " + strings.Join(names, " and ") + " only for " + l.rule
}

// denial is one pair that the conditions deny, with the actions denied.
type denial struct {
	roleID  string
	actions []string
	limits  []limit
}

// addLimits adds limits, merging those of the same assignment and rule
// into one clause that names both actions.
func (r *denial) addLimits(limits []limit) {
	for _, l := range limits {
		i := slices.IndexFunc(r.limits, func(m limit) bool { return m.holder == l.holder && m.rule == l.rule })
		if i < 0 {
			r.limits = append(r.limits, l)
			continue
		}
		r.limits[i].actions = appendNew(r.limits[i].actions, l.actions...)
	}
}

// describeLimits builds the limit that the condition of g sets for action,
// naming the attributes of attrs that it leaves out.
func describeLimits(g grantingAssignment, action string, attrs map[string]string) limit {
	resource := action == abac.ActionDelete
	allowedValues := map[string][]string{}
	excludedValues := map[string][]string{}
	for _, cmp := range g.condition.Comparisons() {
		if cmp.Resource != resource {
			continue
		}
		if cmp.Negated {
			excludedValues[cmp.Attribute] = appendNew(excludedValues[cmp.Attribute], cmp.Values...)
		} else {
			allowedValues[cmp.Attribute] = appendNew(allowedValues[cmp.Attribute], cmp.Values...)
		}
	}

	l := limit{holder: "the caller's role assignment " + shortID(g.assignment.Name), actions: []string{action}}
	if g.roleName != "" {
		l.holder = "the caller's " + g.roleName + " assignment " + shortID(g.assignment.Name)
	}
	var parts []string
	for _, attr := range []struct{ key, noun string }{
		{abac.AttrRoleDefinitionID, "role ids"},
		{abac.AttrPrincipalID, "principal ids"},
		{abac.AttrPrincipalType, "principal types"},
	} {
		value := attrs[attr.key]
		if attr.key == abac.AttrRoleDefinitionID {
			value = value[strings.LastIndexByte(value, '/')+1:]
		}
		allowedList, excludedList := allowedValues[attr.key], excludedValues[attr.key]
		isRole := attr.key == abac.AttrRoleDefinitionID
		switch {
		case len(allowedList) > 0 && (value == "" || !containsFold(allowedList, value)):
			parts = append(parts, attr.noun+" "+shortList(allowedList))
			l.roleBlocked = l.roleBlocked || isRole
		case containsFold(excludedList, value):
			parts = append(parts, attr.noun+" other than "+shortList(excludedList))
			l.roleExcluded = l.roleExcluded || isRole
		}
	}
	l.rule = strings.Join(parts, " and ")
	return l
}

// describeDenials builds the detail of a failed check: each refused role
// by name, why, and the fix.
func (e *Engine) describeDenials(ctx context.Context, scope string, denials []denial, roles *roleCache) string {
	var sentences, blockedIDs, excludedIDs []string
	for _, r := range denials {
		label := shortID(r.roleID)
		if def, err := roles.get(ctx, scope, r.roleID); err == nil && def.Name != "" {
			label = def.Name + " (" + label + ")"
		}
		verb := "granted"
		switch {
		case len(r.actions) == 2:
			verb = "granted or removed"
		case r.actions[0] == abac.ActionDelete:
			verb = "removed once granted"
		}
		var texts []string
		for _, l := range r.limits {
			texts = append(texts, l.text())
			if l.roleBlocked {
				blockedIDs = appendNew(blockedIDs, r.roleID)
			}
			if l.roleExcluded {
				excludedIDs = appendNew(excludedIDs, r.roleID)
			}
		}
		sentences = append(sentences, fmt.Sprintf("role %s cannot be %s here: %s", label, verb, strings.Join(texts, ", and ")))
	}
	detail := strings.Join(sentences, "; ")
	switch {
	case len(blockedIDs) > 0:
		return detail + fmt.Sprintf("; add the role's id (%s) to the delegation's condition (elevate bootstrap --role ...) or ask for a role it allows",
			strings.Join(blockedIDs, ", "))
	case len(excludedIDs) > 0:
		return detail + fmt.Sprintf("; remove the role's id (%s) from the roles the delegation's condition excludes, or ask for a role it allows",
			strings.Join(excludedIDs, ", "))
	}
	return detail + "; change the delegation's condition (elevate bootstrap --principal-id ...) to allow this principal, or grant to a principal it allows"
}

// shortAction names a role assignment action for messages.
func shortAction(action string) string {
	if action == abac.ActionDelete {
		return "roleAssignments/delete"
	}
	return "roleAssignments/write"
}

// shortID returns the first block of a GUID, enough to tell roles apart in
// a message.
func shortID(guid string) string {
	if len(guid) > 8 {
		return guid[:8] + "..."
	}
	return guid
}

func shortList(values []string) string {
	out := make([]string, len(values))
	for i, v := range values {
		if access.IsGUID(v) {
			v = shortID(v)
		}
		out[i] = v
	}
	return strings.Join(out, ", ")
}

func containsFold(list []string, s string) bool {
	return slices.ContainsFunc(list, func(v string) bool { return strings.EqualFold(v, s) })
}

// appendNew appends the values that list does not contain yet.
func appendNew(list []string, values ...string) []string {
	for _, v := range values {
		if !slices.Contains(list, v) {
			list = append(list, v)
		}
	}
	return list
}
