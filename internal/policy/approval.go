package policy

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Approval states that Evaluate returns.
const (
	StatePending  = "pending"
	StateApproved = "approved"
	StateDenied   = "denied"
)

// Verdicts of an Approval.
const (
	VerdictApprove = "approve"
	VerdictDeny    = "deny"
)

// Approval is one reviewer's verdict on a request.
type Approval struct {
	// Approver is the reviewer's subject, such as user:bob@contoso.example.
	Approver string
	// Groups contains the reviewer's groups claim values from sign-in. They
	// are not policy group names: GroupsOf maps them to policy groups
	// through "group:" members.
	Groups []string
	// Verdict is VerdictApprove or VerdictDeny.
	Verdict string
	// RequestHash is the hash of the request as the reviewer saw it.
	RequestHash string
}

// RequesterIdentities returns the subjects that stand for the requester of
// in: the sub claim as given, "github:" plus the actor claim, and
// "principal:" plus the principal. Evaluate refuses approvals from any of
// them, and requester_in matches them against group members.
func RequesterIdentities(in Input) []string {
	var ids []string
	if sub := strings.TrimSpace(in.Requester["sub"]); sub != "" {
		ids = append(ids, sub)
	}
	for _, claim := range []string{"actor", "triggering_actor"} {
		if v := strings.TrimSpace(in.Requester[claim]); v != "" {
			ids = append(ids, "github:"+v)
		}
	}
	if principal := strings.TrimSpace(in.Principal); principal != "" {
		ids = append(ids, "principal:"+principal)
	}
	return ids
}

// GroupsOf returns, sorted, the policy groups that subject belongs to,
// either as a listed member or through a "group:" member that matches one
// of claimGroups. Comparisons ignore case.
func (p *Policy) GroupsOf(subject string, claimGroups []string) []string {
	subject = normalizeSubject(subject)
	claims := map[string]bool{}
	for _, g := range claimGroups {
		if g = normalizeSubject(g); g != "" {
			claims["group:"+g] = true
		}
	}
	var out []string
	for _, name := range slices.Sorted(maps.Keys(p.groups)) {
		for _, m := range p.groups[name] {
			if (subject != "" && m == subject) || claims[m] {
				out = append(out, name)
				break
			}
		}
	}
	return out
}

func normalizeSubject(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// IsRequester reports whether subject names one of the requester identities,
// compared as Evaluate compares them: ignoring case, as written or after the
// "kind:" prefix.
func IsRequester(subject string, requester []string) bool {
	subject = normalizeSubject(subject)
	for _, r := range requester {
		if sameIdentity(normalizeSubject(r), subject) {
			return true
		}
	}
	return false
}

// sameIdentity reports whether two normalized subjects name the same
// identity: equal as written, or equal after the "kind:" prefix. The second
// test makes "github:alice" and "user:alice" the same person, which refuses
// some approvals that could have counted but never counts a self-approval.
func sameIdentity(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	if a == b {
		return true
	}
	_, av, aok := strings.Cut(a, ":")
	_, bv, bok := strings.Cut(b, ":")
	if !aok {
		av = a
	}
	if !bok {
		bv = b
	}
	return av != "" && av == bv
}

// Evaluate returns the approval state of a request that d decided and why.
// requester lists the requester's identities (see RequesterIdentities), and
// requestHash is the hash of the current version of the request.
//
// An approval counts only when its approver belongs to one of d.Groups, is
// not the requester and approved requestHash. Each approver counts once.
// A deny from an approver who could have counted denies the request. With
// d.EachGroup, every group needs d.Approvals distinct approvers, and one
// person who belongs to two groups fills a place in only one of them.
func (p *Policy) Evaluate(d Decision, requester []string, requestHash string, approvals []Approval) (state string, reason string) {
	switch d.Outcome {
	case OutcomeDeny:
		return StateDenied, fmt.Sprintf("rule %q denied the request: %s", d.RuleID, d.Message)
	case OutcomeAutoApprove:
		if d.BreakGlass {
			return StateApproved, fmt.Sprintf("break-glass rule %q grants without approval; reviewers must check the grant afterwards", d.RuleID)
		}
		return StateApproved, fmt.Sprintf("rule %q grants without approval", d.RuleID)
	case OutcomeRequire:
	default:
		return StateDenied, fmt.Sprintf("decision outcome %q is unknown; want %s, %s or %s", d.Outcome, OutcomeDeny, OutcomeAutoApprove, OutcomeRequire)
	}
	if d.Approvals < 1 || len(d.Groups) == 0 {
		return StateDenied, fmt.Sprintf("rule %q requires approval but the decision names %d approvals from %d groups", d.RuleID, d.Approvals, len(d.Groups))
	}
	if requestHash == "" {
		return StatePending, "the request hash is empty, so no approval can be bound to it"
	}

	t := p.tally(d, requester, requestHash, approvals)
	if t.denier != "" {
		return StateDenied, fmt.Sprintf("%s denied the request", t.denier) + t.notes()
	}
	if d.EachGroup {
		done, summary := t.countEachGroup(d)
		return stateOf(done), summary + t.notes()
	}
	summary := fmt.Sprintf("%d of %d approvals from %s", len(t.approvers), d.Approvals, strings.Join(d.Groups, " or "))
	if len(t.approvers) > 0 {
		summary += " (" + strings.Join(t.approverNames(), ", ") + ")"
	}
	return stateOf(len(t.approvers) >= d.Approvals), summary + t.notes()
}

func stateOf(done bool) string {
	if done {
		return StateApproved
	}
	return StatePending
}

// eligible is an approver whose approval counts, with the required groups
// they belong to.
type eligible struct {
	subject string
	groups  []int // indexes into Decision.Groups
}

// tally is the result of sorting the approvals of one request.
type tally struct {
	approvers []eligible
	// denier is the first eligible approver who denied, if any.
	denier string
	// ignored explains each approval that did not count.
	ignored []string
}

func (p *Policy) tally(d Decision, requester []string, requestHash string, approvals []Approval) tally {
	var t tally
	var self []string
	for _, r := range requester {
		self = append(self, normalizeSubject(r))
	}
	seen := map[string]bool{}

	for _, a := range approvals {
		approver := normalizeSubject(a.Approver)
		groups := p.requiredGroupsOf(d, a)
		switch {
		case approver == "":
			t.ignored = append(t.ignored, "an approval without an approver")
		case a.RequestHash != requestHash:
			t.ignored = append(t.ignored, approver+" (approved a different version of the request)")
		case slices.ContainsFunc(self, func(s string) bool { return sameIdentity(s, approver) }):
			t.ignored = append(t.ignored, approver+" (the requester)")
		case len(groups) == 0:
			t.ignored = append(t.ignored, approver+" (not in "+strings.Join(d.Groups, " or ")+")")
		case a.Verdict == VerdictDeny:
			if t.denier == "" {
				t.denier = approver
			}
		case a.Verdict != VerdictApprove:
			t.ignored = append(t.ignored, fmt.Sprintf("%s (verdict %q is not %s or %s)", approver, a.Verdict, VerdictApprove, VerdictDeny))
		case seen[approver]:
			// A repeated approval by the same person counts once.
		default:
			seen[approver] = true
			t.approvers = append(t.approvers, eligible{subject: approver, groups: groups})
		}
	}
	return t
}

// requiredGroupsOf returns the indexes of the groups of d that the
// approver of a belongs to.
func (p *Policy) requiredGroupsOf(d Decision, a Approval) []int {
	member := p.GroupsOf(a.Approver, a.Groups)
	var out []int
	for i, g := range d.Groups {
		if slices.Contains(member, g) {
			out = append(out, i)
		}
	}
	return out
}

func (t tally) approverNames() []string {
	names := make([]string, len(t.approvers))
	for i, a := range t.approvers {
		names[i] = a.subject
	}
	return names
}

func (t tally) notes() string {
	if len(t.ignored) == 0 {
		return ""
	}
	return "; not counted: " + strings.Join(t.ignored, ", ")
}

// countEachGroup assigns approvers to d.Approvals places per group so that
// as many places as possible are filled and no approver fills two. It
// reports whether every place is filled, and a per-group summary.
func (t tally) countEachGroup(d Decision) (bool, string) {
	assigned := make([]int, len(t.approvers)) // group index per approver, or -1
	load := make([]int, len(d.Groups))
	for i := range assigned {
		assigned[i] = -1
	}

	// place moves approver a into a group with room, first trying to make
	// room by moving an approver already placed (an augmenting path).
	var place func(a int, visited []bool) bool
	place = func(a int, visited []bool) bool {
		for _, g := range t.approvers[a].groups {
			if visited[g] {
				continue
			}
			visited[g] = true
			if load[g] < d.Approvals {
				assigned[a], load[g] = g, load[g]+1
				return true
			}
			for b := range t.approvers {
				if assigned[b] == g && place(b, visited) {
					load[g]-- // b left g
					assigned[a], load[g] = g, load[g]+1
					return true
				}
			}
		}
		return false
	}
	for a := range t.approvers {
		place(a, make([]bool, len(d.Groups)))
	}

	done := true
	parts := make([]string, len(d.Groups))
	for g, name := range d.Groups {
		parts[g] = fmt.Sprintf("%s %d of %d", name, load[g], d.Approvals)
		done = done && load[g] >= d.Approvals
	}
	return done, "approvals per group: " + strings.Join(parts, ", ")
}
