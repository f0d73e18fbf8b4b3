package broker

import (
	"maps"
	"time"

	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/policy"
	"github.com/elevate-dev/elevate/internal/store"
)

// policyInput describes a request to the policy engine.
func policyInput(caller Identity, req access.Request, names map[string]string, ticket string, now time.Time) policy.Input {
	in := policy.Input{
		RequesterGroups: caller.Groups,
		Principal:       req.Principal.ID,
		PrincipalType:   req.Principal.Type,
		Duration:        req.Duration,
		Justification:   req.Justification,
		Ticket:          ticket,
		Metadata:        metadataMap(req.Metadata),
		Now:             now,
	}
	// Copy the claims, because one Identity may serve concurrent calls and
	// writing sub into a shared map is a data race.
	in.Requester = maps.Clone(caller.Claims)
	if in.Requester == nil {
		in.Requester = map[string]string{}
	}
	in.Requester["sub"] = caller.Subject
	for _, p := range req.Pairs {
		in.Pairs = append(in.Pairs, policy.Pair{RoleID: p.RoleID, RoleName: names[p.RoleID], Scope: p.Scope.String()})
	}
	return in
}

func toStoreDecision(d policy.Decision) store.Decision {
	outcome := d.Outcome
	if outcome == policy.OutcomeRequire {
		outcome = store.OutcomeNeedsApproval
	}
	return store.Decision{
		Outcome: outcome, RuleID: d.RuleID, RequiredApprovals: d.Approvals, Groups: d.Groups,
		MaxDuration: d.MaxDuration, BreakGlass: d.BreakGlass, EachGroup: d.EachGroup,
		Message: d.Message, ReviewRequired: d.ReviewRequired, NotifyGroups: d.NotifyGroups,
	}
}

func fromStoreDecision(d store.Decision) policy.Decision {
	outcome := d.Outcome
	if outcome == store.OutcomeNeedsApproval {
		outcome = policy.OutcomeRequire
	}
	return policy.Decision{
		Outcome: outcome, RuleID: d.RuleID, Approvals: d.RequiredApprovals, Groups: d.Groups,
		MaxDuration: d.MaxDuration, BreakGlass: d.BreakGlass, EachGroup: d.EachGroup,
		Message: d.Message, ReviewRequired: d.ReviewRequired, NotifyGroups: d.NotifyGroups,
	}
}

// metadataFromClaims takes the build metadata from the verified token, not
// from the request body, so a pipeline cannot claim another repository.
func metadataFromClaims(claims map[string]string, in CreateInput) access.Metadata {
	return access.Metadata{
		Repository:  claims["repository"],
		Workflow:    claims["workflow"],
		RunID:       claims["run_id"],
		RunAttempt:  claims["run_attempt"],
		Commit:      claims["sha"],
		Ref:         claims["ref"],
		Environment: claims["environment"],
		Actor:       claims["actor"],
		Ticket:      in.Ticket,
		PullRequest: in.Metadata["pull_request"],
		RunURL:      in.Metadata["run_url"],
	}
}

func metadataMap(m access.Metadata) map[string]string {
	out := map[string]string{}
	for k, v := range map[string]string{
		"repository": m.Repository, "workflow": m.Workflow, "run_id": m.RunID, "run_attempt": m.RunAttempt,
		"run_url": m.RunURL, "pull_request": m.PullRequest, "ticket": m.Ticket, "commit": m.Commit,
		"ref": m.Ref, "environment": m.Environment, "actor": m.Actor,
	} {
		if v != "" {
			out[k] = v
		}
	}
	return out
}
