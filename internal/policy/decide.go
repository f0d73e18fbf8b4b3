package policy

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/elevate-dev/elevate/internal/access"
)

// checkedInput is an Input whose pairs have been parsed once for all rules.
type checkedInput struct {
	Input
	// roleGUIDs and scopes are indexed like Pairs.
	roleGUIDs []string
	scopes    []access.ResourceID
}

// reason returns the break-glass reason: Reason, or Metadata["reason"].
func (in Input) reason() string {
	if r := strings.TrimSpace(in.Reason); r != "" {
		return r
	}
	return strings.TrimSpace(in.Metadata["reason"])
}

// checkInput parses the pairs and rejects an input that no rule can
// decide. It returns a message for the deny, or "" when the input is fine.
func checkInput(in Input) (*checkedInput, string) {
	switch {
	case len(in.Pairs) == 0:
		return nil, "the request has no pairs"
	case in.Duration <= 0:
		return nil, fmt.Sprintf("the request duration %s is not positive", in.Duration)
	case in.Now.IsZero():
		return nil, "the decision time (Input.Now) is not set"
	}
	c := &checkedInput{Input: in}
	for i, p := range in.Pairs {
		guid := pairRoleGUID(p)
		if guid == "" {
			return nil, fmt.Sprintf("pair %d: role id %q and role name %q give no role definition GUID", i+1, p.RoleID, p.RoleName)
		}
		scope, err := access.ParseResourceID(p.Scope)
		if err != nil {
			return nil, fmt.Sprintf("pair %d: %v", i+1, err)
		}
		c.roleGUIDs = append(c.roleGUIDs, guid)
		c.scopes = append(c.scopes, scope)
	}
	return c, ""
}

// Decide returns the decision of the first rule that matches in, or a deny
// by DefaultDenyRuleID when none does. A condition that fails to evaluate
// denies the request by its rule, because a policy that cannot be checked
// must not grant.
func (p *Policy) Decide(in Input) Decision {
	checked, problem := checkInput(in)
	if problem != "" {
		return Decision{Outcome: OutcomeDeny, RuleID: InvalidRequestRuleID, Message: "invalid request: " + problem}
	}

	var vars map[string]any
	for _, r := range p.rules {
		if !r.matchesStatic(p, checked) {
			continue
		}
		if r.condition != nil {
			if vars == nil {
				vars = conditionVars(checked)
			}
			ok, err := r.condition.eval(vars)
			if err != nil {
				return Decision{Outcome: OutcomeDeny, RuleID: r.id,
					Message: fmt.Sprintf("rule %q: evaluate condition: %v; the request is denied", r.id, err)}
			}
			if !ok {
				continue
			}
		}
		return p.decideByRule(r, checked)
	}
	return Decision{Outcome: OutcomeDeny, RuleID: DefaultDenyRuleID, Message: "no rule of the policy matches the request"}
}

// decideByRule applies the limits of the matching rule r and returns its
// decision.
func (p *Policy) decideByRule(r *rule, in *checkedInput) Decision {
	if r.outcome == OutcomeDeny {
		msg := r.message
		if msg == "" {
			msg = fmt.Sprintf("rule %q denies the request", r.id)
		}
		return Decision{Outcome: OutcomeDeny, RuleID: r.id, Message: msg}
	}

	d := Decision{Outcome: r.outcome, RuleID: r.id, Message: r.message,
		MaxDuration: r.maxDuration, RequireTicket: r.requireTicket, BreakGlass: r.breakGlass}
	if r.breakGlass {
		d.MaxDuration = min(r.maxDuration, p.shortestMax)
		d.ReviewRequired = true
		d.NotifyGroups = p.notifyGroups()
	}
	if r.outcome == OutcomeRequire {
		d.Approvals = r.approvals
		d.Groups = append([]string(nil), r.groups...)
		d.EachGroup = r.eachGroup
	}

	// Limits: a request that breaks one is denied by this rule, not passed
	// on to later rules, so the deny message names the limit that applied.
	if in.Duration > d.MaxDuration {
		return limitDeny(d, fmt.Sprintf("rule %q allows at most %s (max_duration), but the request asks for %s",
			r.id, formatDuration(d.MaxDuration), formatDuration(in.Duration)))
	}
	if r.requireTicket && strings.TrimSpace(in.Ticket) == "" {
		return limitDeny(d, fmt.Sprintf("rule %q requires a ticket (require_ticket: true), but the request's ticket is empty", r.id))
	}
	if r.breakGlass && !p.hasBreakGlassReason(in.Input) {
		return limitDeny(d, p.breakGlassReasonMessage(r.id))
	}
	return d
}

// limitDeny turns d into a deny that keeps the rule's limits for display.
func limitDeny(d Decision, msg string) Decision {
	d.Outcome = OutcomeDeny
	d.Message = msg
	d.Approvals, d.Groups, d.EachGroup = 0, nil, false
	d.ReviewRequired, d.NotifyGroups = false, nil
	return d
}

// hasBreakGlassReason reports whether the request states a break-glass
// reason: a justification that starts with the policy's prefix and has
// text after it, or a non-empty reason.
func (p *Policy) hasBreakGlassReason(in Input) bool {
	if in.reason() != "" {
		return true
	}
	if p.breakGlassPrefix == "" {
		return false
	}
	rest, ok := strings.CutPrefix(strings.TrimSpace(in.Justification), p.breakGlassPrefix)
	return ok && strings.TrimSpace(rest) != ""
}

func (p *Policy) breakGlassReasonMessage(ruleID string) string {
	if p.breakGlassPrefix == "" {
		return fmt.Sprintf("break-glass rule %q requires a reason, but the request has none", ruleID)
	}
	return fmt.Sprintf("break-glass rule %q requires a reason: a justification that starts with %q, or a reason field, but the request has neither",
		ruleID, p.breakGlassPrefix)
}

// notifyGroups returns the groups a break-glass grant notifies: every group
// that approves under some rule, or every group when no rule requires
// approval.
func (p *Policy) notifyGroups() []string {
	if len(p.approverGroups) > 0 {
		return append([]string(nil), p.approverGroups...)
	}
	return slices.Sorted(maps.Keys(p.groups))
}

// formatDuration prints whole minutes and hours without trailing zero
// units: 15m, 1h, 1h30m.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
