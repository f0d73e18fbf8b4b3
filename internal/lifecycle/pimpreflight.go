package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/azure"
)

// PIM pre-flight checks, by name.
const (
	CheckBackend        = "backend"
	CheckPIMPolicy      = "PIM policy"
	CheckPIMApproval    = "PIM approval"
	CheckPIMEligibility = "PIM eligibility"
	CheckPIMPrincipal   = "PIM principal"
)

// PreflightBackends runs Preflight on the pairs that make Azure role
// assignments and adds, per pair, the backend chosen and why, and the
// checks of its PIM backend: principal, eligibility and the rules of the
// role management policy. A pim-activate pair needs no right to write role
// assignments, so the caller's permission check is left out for scopes
// where every pair activates.
func (e *Engine) PreflightBackends(ctx context.Context, req access.Request, choices []Choice, cfg PIMConfig) []Check {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return []Check{{Name: CheckBackend, Detail: err.Error()}}
	}
	armReq := req
	armReq.Pairs = nil
	needsWrite := map[string]bool{}
	for i, p := range req.Pairs {
		if choices[i].Backend == BackendEntraRole {
			continue
		}
		armReq.Pairs = append(armReq.Pairs, p)
		needsWrite[p.Scope.Key()] = needsWrite[p.Scope.Key()] || choices[i].Backend != BackendPIMActivate
	}
	var checks []Check
	if len(armReq.Pairs) > 0 {
		for _, c := range e.Preflight(ctx, armReq) {
			if c.Name == CheckPermissions && !needsWrite[strings.ToLower(c.Scope)] {
				continue
			}
			checks = append(checks, c)
		}
	}
	for i, p := range req.Pairs {
		c := choices[i]
		checks = append(checks, Check{Name: CheckBackend, Scope: p.Scope.String(), OK: true,
			Detail: choicePrefix(i, p, c.Backend) + c.Reason + ")"})
		checks = append(checks, e.backendChecks(ctx, req, p, c.Backend, cfg)...)
	}
	return checks
}

// choicePrefix starts the Detail of pair i's backend check, before the
// reason and a closing bracket.
func choicePrefix(i int, p access.Pair, backend string) string {
	return fmt.Sprintf("pair %d, role %s: %s (", i+1, p.RoleID, backend)
}

// PlannedReason returns the reason that the backend check of pair i in
// checks gives for backend, or "" when checks has no such check. Apply
// uses it to audit why auto chose each backend when the plan was made.
func PlannedReason(checks []Check, i int, p access.Pair, backend string) string {
	prefix := choicePrefix(i, p, backend)
	for _, c := range checks {
		if c.Name != CheckBackend {
			continue
		}
		if reason, ok := strings.CutPrefix(c.Detail, prefix); ok {
			return strings.TrimSuffix(reason, ")")
		}
	}
	return ""
}

// backendChecks returns the PIM checks of one pair.
func (e *Engine) backendChecks(ctx context.Context, req access.Request, p access.Pair, backend string, cfg PIMConfig) []Check {
	scope := p.Scope.String()
	self := strings.EqualFold(req.Principal.ID, e.callerID) || cfg.Planning
	if (backend == BackendPIMActivate || backend == BackendPIMAssign) && cfg.PIM == nil ||
		backend == BackendEntraRole && cfg.Graph == nil {
		return []Check{{Name: CheckBackend, Scope: scope, Detail: "backend " + backend + " has no client configured"}}
	}
	switch backend {
	case BackendPIMActivate:
		if err := e.selfActivationPlanned(req, cfg.Planning); err != nil {
			return []Check{{Name: CheckPIMPrincipal, Scope: scope, Detail: err.Error()}}
		}
		checks := []Check{e.checkEligibility(ctx, req, p, cfg)}
		return append(checks, e.policyChecks(ctx, req, p, azure.RequestSelfActivate, cfg)...)
	case BackendPIMAssign:
		if !self {
			return []Check{notSelfCheck(scope, backend)}
		}
		return e.policyChecks(ctx, req, p, azure.RequestAdminAssign, cfg)
	case BackendEntraRole:
		return e.entraChecks(ctx, req, p, cfg)
	}
	return nil
}

// notSelfCheck rejects a PIM assignment for another principal. The
// engine's effectiveness check then reads back a role assignment by
// Elevate's deterministic name, which PIM does not use, so the wait could
// only time out.
func notSelfCheck(scope, backend string) Check {
	return Check{Name: CheckPIMPrincipal, Scope: scope, Detail: fmt.Sprintf(
		"%s can grant only the caller itself for now, because the effectiveness check cannot find a PIM-made assignment for another principal; "+
			"sign in as the principal, or use --backend rbac", backend)}
}

func (e *Engine) checkEligibility(ctx context.Context, req access.Request, p access.Pair, cfg PIMConfig) Check {
	c := Check{Name: CheckPIMEligibility, Scope: p.Scope.String()}
	elig, err := cfg.PIM.FindEligibility(ctx, c.Scope, req.Principal.ID, RoleDefinitionID(p.Scope, p.RoleID))
	switch {
	case err == nil && strings.EqualFold(elig.PrincipalType, access.PrincipalGroup):
		// The request may not say that the principal is a group (a
		// planning caller's --principal-type defaults to ServicePrincipal),
		// but PIM's eligibility does.
		c.Name = CheckPIMPrincipal
		group := req
		group.Principal.Type = access.PrincipalGroup
		c.Detail = e.selfActivationPlanned(group, true).Error()
	case err == nil:
		c.OK = true
		c.Detail = fmt.Sprintf("eligible schedule %s, until %s", elig.Name, endLabel(elig.End))
		if !elig.End.IsZero() && elig.End.Before(e.clock.Now().Add(req.Duration)) {
			c.OK = false
			c.Detail = fmt.Sprintf("the eligibility ends at %s, before the requested window ends; ask an administrator to extend it, or request less",
				elig.End.UTC().Format("2006-01-02T15:04:05Z"))
		}
	case errors.Is(err, azure.ErrNotFound):
		c.Detail = fmt.Sprintf("principal %s has no eligible assignment of role %s at exactly this scope; "+
			"an administrator must make it eligible first, or use --backend rbac", req.Principal.ID, p.RoleID)
	default:
		c.Warning = true
		c.Detail = "could not read eligibilities: " + shortError(err)
	}
	return c
}

// policyChecks compares the request with the role management policy
// before anyone is asked to approve it. Each failed rule is its own check
// naming the rule and both values.
func (e *Engine) policyChecks(ctx context.Context, req access.Request, p access.Pair, requestType string, cfg PIMConfig) []Check {
	scope := p.Scope.String()
	policy, err := cfg.PIM.Policy(ctx, scope, RoleDefinitionID(p.Scope, p.RoleID))
	if err != nil {
		return []Check{{Name: CheckPIMPolicy, Scope: scope, Warning: true,
			Detail: "could not read the role management policy, so PIM may still reject the request: " + shortError(err)}}
	}
	return policyResult(scope, req, policy, e.plannedRequest(req, requestType, cfg), cfg)
}

// plannedRequest is the schedule request a grant of req would send, as
// RolePolicy.Check reads it. ARM and Graph requests check alike, so the
// request type of both is in ARM's spelling.
func (e *Engine) plannedRequest(req access.Request, requestType string, cfg PIMConfig) azure.ScheduleRequest {
	sr := azure.ScheduleRequest{
		RequestType:   requestType,
		Justification: req.Justification,
		Start:         e.clock.Now(),
	}
	if requestType == azure.RequestSelfActivate {
		sr.Duration = req.Duration
	} else {
		sr.End = sr.Start.Add(req.Duration)
	}
	if req.Metadata.Ticket != "" {
		sr.TicketNumber, sr.TicketSystem = req.Metadata.Ticket, cfg.TicketSystem
	}
	return sr
}

// policyResult turns RolePolicy.Check into checks, one per failed rule.
func policyResult(scope string, req access.Request, policy azure.RolePolicy, sr azure.ScheduleRequest, cfg PIMConfig) []Check {
	var checks []Check
	err := policy.Check(sr)
	var pe *azure.PolicyError
	switch {
	case errors.As(err, &pe):
		for i, rule := range pe.Rules {
			c := Check{Name: CheckPIMPolicy + " " + rule, Scope: scope, Detail: pe.Details[i]}
			if rule == "TicketingRule" && req.Metadata.Ticket == "" {
				c.Detail += "; pass --ticket"
			}
			if rule == "MfaRule" || rule == azure.AuthenticationContextRule {
				c = signInCheck(scope, rule, req.Principal, policy)
			}
			checks = append(checks, c)
		}
	case err != nil:
		checks = append(checks, Check{Name: CheckPIMPolicy + " ExpirationRule", Scope: scope, Detail: err.Error()})
	default:
		checks = append(checks, Check{Name: CheckPIMPolicy, Scope: scope, OK: true,
			Detail: fmt.Sprintf("%s of %s fits the policy (maximum %s)", sr.RequestType, shortDur(req.Duration), maxLabel(policy, sr.RequestType))})
	}
	if sr.RequestType == azure.RequestSelfActivate && policy.ApprovalRequired {
		c := Check{Name: CheckPIMApproval, Scope: scope}
		if cfg.ApprovalWait > 0 {
			c.OK, c.Warning = true, true
			c.Detail = fmt.Sprintf("the policy requires a PIM approver for each activation (Approval_EndUser_Assignment); "+
				"the grant waits up to %s for one, then cancels the activation", shortDur(cfg.ApprovalWait))
		} else {
			c.Detail = "the policy requires a PIM approver for each activation (Approval_EndUser_Assignment), and --pim-approval-wait is 0; " +
				"set --pim-approval-wait to wait for one, remove the approval from the role's policy, or use --backend pim-assign or rbac"
		}
		checks = append(checks, c)
	}
	return checks
}

// signInCheck checks a rule that the caller's sign-in must satisfy on
// activation: MFA (Enablement_EndUser_Assignment) or a Conditional Access
// authentication context (AuthenticationContext_EndUser_Assignment). A user
// can sign in that way, so it is a warning for a user. A workload identity
// (service principal or managed identity) signs in with a client
// credential, which carries neither, so the request is rejected.
func signInCheck(scope, rule string, principal access.Principal, policy azure.RolePolicy) Check {
	ruleID, needs := "Enablement_EndUser_Assignment", "multi-factor authentication"
	if rule == azure.AuthenticationContextRule {
		ruleID, needs = "AuthenticationContext_EndUser_Assignment", fmt.Sprintf("authentication context claim %s", policy.AuthenticationContext)
	}
	c := Check{Name: CheckPIMPolicy + " " + rule, Scope: scope}
	if strings.EqualFold(principal.Type, access.PrincipalUser) {
		c.Warning = true
		c.Detail = fmt.Sprintf("rule %s requires %s on activation; principal %s is a User, whose sign-in must include it", ruleID, needs, principal.ID)
		return c
	}
	kind := principal.Type
	if kind == "" {
		kind = access.PrincipalServicePrincipal
	}
	c.Detail = fmt.Sprintf("rule %s requires %s on activation; principal %s is a %s and cannot present it, because a workload identity signs in without a user; "+
		"turn the rule off for this role, or use --backend pim-assign or rbac", ruleID, needs, principal.ID, kind)
	return c
}

func maxLabel(p azure.RolePolicy, requestType string) string {
	m := p.AdminMaxDuration
	if requestType == azure.RequestSelfActivate {
		m = p.MaxDuration
	}
	if m == 0 {
		return "none"
	}
	return shortDur(m)
}

// entraChecks checks an entra-role pair: principal, eligibility, and the
// rules of the role's PIM policy, read through Graph.
func (e *Engine) entraChecks(ctx context.Context, req access.Request, p access.Pair, cfg PIMConfig) []Check {
	c := Check{Name: CheckPIMEligibility, Scope: cfg.DirectoryScope}
	mode := cfg.EntraMode
	self := strings.EqualFold(req.Principal.ID, e.callerID) || cfg.Planning
	if mode == "" && cfg.Graph != nil && self {
		_, err := cfg.Graph.FindEligibility(ctx, req.Principal.ID, p.RoleID, cfg.DirectoryScope)
		switch {
		case err == nil:
			mode = EntraSelfActivate
		case !errors.Is(err, azure.ErrNotFound):
			c.Warning = true
			c.Detail = "could not read Entra eligibilities: " + shortError(err)
			return []Check{c}
		}
	}
	if mode == "" {
		mode = EntraAdminAssign
	}
	if mode == EntraSelfActivate {
		if err := e.selfActivationPlanned(req, cfg.Planning); err != nil {
			return []Check{{Name: CheckPIMPrincipal, Scope: cfg.DirectoryScope, Detail: err.Error()}}
		}
	}
	c.OK = true
	c.Detail = fmt.Sprintf("Entra role %s at directory scope %q by %s", p.RoleID, cfg.DirectoryScope, mode)
	checks := []Check{c}
	if mode == EntraAdminAssign && !self {
		checks = append(checks, notSelfCheck(cfg.DirectoryScope, BackendEntraRole))
	}
	policy, err := cfg.Graph.Policy(ctx, p.RoleID)
	if err != nil {
		return append(checks, Check{Name: CheckPIMPolicy, Scope: cfg.DirectoryScope, Warning: true,
			Detail: "could not read the Entra role's PIM policy, so Graph may still reject the request: " + shortError(err)})
	}
	requestType := azure.RequestAdminAssign
	if mode == EntraSelfActivate {
		requestType = azure.RequestSelfActivate
	}
	return append(checks, policyResult(cfg.DirectoryScope, req, policy, e.plannedRequest(req, requestType, cfg), cfg)...)
}

func shortDur(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
