package policy

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	"go.yaml.in/yaml/v3"
)

// supportedVersion is the only policy file version this package reads.
const supportedVersion = 1

// namePattern is the form of rule ids and group names: they appear in
// decisions, audit records and log lines, so they stay plain.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// memberKinds are the subject kinds a group member may have.
var memberKinds = []string{"user", "group", "github", "principal"}

// rule is one compiled rule. Its zero-valued match fields match anything.
type rule struct {
	id          string
	claims      []claimMatch
	requesterIn []string
	// roles contains lowercase role definition GUIDs. Nil matches any role.
	roles     map[string]bool
	scopes    []scopeMatch
	window    *timeWindow
	condition *condition

	outcome       string
	message       string
	approvals     int
	groups        []string
	eachGroup     bool
	maxDuration   time.Duration
	requireTicket bool
	breakGlass    bool
}

// compiler turns a decoded policyFile into a Policy. It keeps the YAML node
// tree so that every error names a line.
type compiler struct {
	root      *yaml.Node
	env       *cel.Env
	costLimit uint64
}

func (c *compiler) errorf(path []any, format string, args ...any) error {
	return fmt.Errorf("line %d: %s", lineOf(c.root, path...), fmt.Sprintf(format, args...))
}

func (c *compiler) compile(f policyFile) (*Policy, error) {
	if f.Version != supportedVersion {
		return nil, c.errorf([]any{"version"}, "version is %d; want %d", f.Version, supportedVersion)
	}
	c.costLimit = defaultCELCostLimit
	if f.CELCostLimit > 0 {
		c.costLimit = f.CELCostLimit
	}

	p := &Policy{breakGlassPrefix: f.BreakGlassPrefix, groups: map[string][]string{}}
	for _, name := range slices.Sorted(maps.Keys(f.Groups)) {
		list, err := c.compileGroup(name, f.Groups[name])
		if err != nil {
			return nil, err
		}
		p.groups[name] = list
	}

	seen := map[string]bool{}
	for i, rf := range f.Rules {
		path := []any{"rules", i}
		r, err := c.compileRule(path, rf, p.groups)
		if err != nil {
			return nil, err
		}
		if seen[r.id] {
			return nil, c.errorf(append(path, "id"), "rule id %q is used twice; rule ids must be unique", r.id)
		}
		seen[r.id] = true
		p.rules = append(p.rules, r)
	}
	p.approverGroups, p.shortestMax = summarize(p.rules)
	return p, nil
}

// summarize returns the sorted groups that require rules name and the
// smallest max_duration of the rules that grant.
func summarize(rules []*rule) (approverGroups []string, shortest time.Duration) {
	for _, r := range rules {
		if r.outcome == OutcomeDeny {
			continue
		}
		if shortest == 0 || r.maxDuration < shortest {
			shortest = r.maxDuration
		}
		for _, g := range r.groups {
			if !slices.Contains(approverGroups, g) {
				approverGroups = append(approverGroups, g)
			}
		}
	}
	slices.Sort(approverGroups)
	return approverGroups, shortest
}

func (c *compiler) compileGroup(name string, members []string) ([]string, error) {
	path := []any{"groups", name}
	if !namePattern.MatchString(name) {
		return nil, c.errorf(path, "group name %q is invalid; use letters, digits, '.', '_' and '-'", name)
	}
	if len(members) == 0 {
		return nil, c.errorf(path, "group %q has no members", name)
	}
	list := make([]string, 0, len(members))
	for _, m := range members {
		kind, value, ok := strings.Cut(m, ":")
		if !ok || !slices.Contains(memberKinds, kind) || strings.TrimSpace(value) == "" || strings.ContainsAny(value, " \t\r\n") {
			return nil, c.errorf(path, "group %q: member %q is invalid; want kind:value with kind one of %s, such as user:alice@contoso.example",
				name, m, strings.Join(memberKinds, ", "))
		}
		list = append(list, strings.ToLower(m))
	}
	return list, nil
}

func (c *compiler) compileRule(path []any, f ruleFile, groups map[string][]string) (*rule, error) {
	if !namePattern.MatchString(f.ID) {
		return nil, c.errorf(append(path, "id"), "rule id %q is invalid; use letters, digits, '.', '_' and '-'", f.ID)
	}
	if f.ID == DefaultDenyRuleID || f.ID == InvalidRequestRuleID {
		return nil, c.errorf(append(path, "id"), "rule id %q is reserved for decisions no rule made; choose another", f.ID)
	}
	r := &rule{id: f.ID, message: f.Message, requireTicket: f.RequireTicket, breakGlass: f.BreakGlass,
		maxDuration: time.Duration(f.MaxDuration)}
	fail := func(field string, format string, args ...any) error {
		return c.errorf(append(path, field), "rule %q: %s", f.ID, fmt.Sprintf(format, args...))
	}

	if err := c.compileOutcome(r, f, groups, fail); err != nil {
		return nil, err
	}
	if err := c.compileMatch(r, append(path, "match"), f.Match, groups); err != nil {
		return nil, err
	}
	return r, nil
}

// compileOutcome checks and copies the outcome fields of a rule: outcome,
// require, max_duration, require_ticket and break_glass.
func (c *compiler) compileOutcome(r *rule, f ruleFile, groups map[string][]string, fail func(string, string, ...any) error) error {
	r.outcome = f.Outcome
	if f.BreakGlass {
		if f.Outcome != "" && f.Outcome != OutcomeAutoApprove {
			return fail("outcome", "a break-glass rule grants without approval, so outcome must be empty or %s, not %q", OutcomeAutoApprove, f.Outcome)
		}
		r.outcome = OutcomeAutoApprove
	}

	switch r.outcome {
	case OutcomeDeny:
		if f.Require != nil {
			return fail("require", "a deny rule takes no require block; remove it or change the outcome to %s", OutcomeRequire)
		}
		if f.MaxDuration != 0 || f.RequireTicket {
			return fail("outcome", "a deny rule grants nothing, so max_duration and require_ticket have no effect; remove them")
		}
		return nil
	case OutcomeAutoApprove:
		if f.Require != nil {
			return fail("require", "an %s rule takes no require block; remove it or change the outcome to %s", r.outcome, OutcomeRequire)
		}
	case OutcomeRequire:
		if err := compileRequire(r, f.Require, groups, fail); err != nil {
			return err
		}
	default:
		return fail("outcome", "outcome %q is invalid; want %s, %s or %s", f.Outcome, OutcomeDeny, OutcomeAutoApprove, OutcomeRequire)
	}

	if r.maxDuration <= 0 {
		return fail("max_duration", "max_duration is missing or not positive; a rule that grants must set it, such as max_duration: 1h")
	}
	return nil
}

func compileRequire(r *rule, f *requireFile, groups map[string][]string, fail func(string, string, ...any) error) error {
	if f == nil {
		return fail("outcome", "outcome %s needs a require block with approvals and groups", OutcomeRequire)
	}
	if f.Approvals < 1 {
		return fail("require", "require.approvals is %d; want 1 or more", f.Approvals)
	}
	if len(f.Groups) == 0 {
		return fail("require", "require.groups is empty; name at least one approver group")
	}
	for _, g := range f.Groups {
		if _, ok := groups[g]; !ok {
			return fail("require", "require.groups names %q, which is not a group of this policy", g)
		}
		if slices.Contains(r.groups, g) {
			return fail("require", "require.groups names %q twice", g)
		}
		r.groups = append(r.groups, g)
	}
	r.approvals = f.Approvals
	r.eachGroup = f.EachGroup
	return nil
}

func (c *compiler) compileMatch(r *rule, path []any, m matchFile, groups map[string][]string) error {
	fail := func(field string, format string, args ...any) error {
		return c.errorf(append(path, field), "rule %q: %s", r.id, fmt.Sprintf(format, args...))
	}

	claims, err := compileClaims(m.Requester)
	if err != nil {
		return fail("requester", "%v", err)
	}
	r.claims = claims

	for _, g := range m.RequesterIn {
		if _, ok := groups[g]; !ok {
			return fail("requester_in", "requester_in names %q, which is not a group of this policy", g)
		}
	}
	r.requesterIn = m.RequesterIn

	if r.roles, err = compileRoles(m.Roles); err != nil {
		return fail("roles", "%v", err)
	}
	if r.scopes, err = compileScopes(m.Scopes); err != nil {
		return fail("scopes", "%v", err)
	}
	if m.Time != nil {
		if r.window, err = compileWindow(*m.Time); err != nil {
			return fail("time", "%v", err)
		}
	}
	if m.Condition != "" {
		if r.condition, err = compileCondition(c.env, m.Condition, c.costLimit); err != nil {
			return fail("condition", "%v", err)
		}
	}
	return nil
}
