package emulator

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// pimPolicy is the flattened role management policy the emulator enforces:
// the EndUser rules apply to Self* requests, the Admin rules to Admin*.
type pimPolicy struct {
	MaximumDuration      string // ISO 8601, Expiration_EndUser_Assignment
	maximum              time.Duration
	RequireJustification bool
	RequireTicket        bool
	RequireMFA           bool
	RequireApproval      bool
	Approvers            []string
	// AuthenticationContext is the claim value an activation's token must
	// carry in acrs; "" turns AuthenticationContext_EndUser_Assignment off.
	AuthenticationContext string

	AdminMaximumDuration      string // ISO 8601, Expiration_Admin_Assignment
	adminMaximum              time.Duration
	AdminRequireExpiration    bool
	AdminRequireJustification bool
	Seeded                    bool
}

// defaultPIMPolicy applies to a role and scope without a seeded policy:
// activations up to 8 hours with a justification, no ticket, MFA or
// approval, and admin assignments up to 180 days.
// NOTE: these are the emulator's choices; a real tenant's defaults may
// differ (for example MFA on activation), so tests that care seed a policy.
func defaultPIMPolicy() pimPolicy {
	return pimPolicy{
		MaximumDuration: "PT8H", maximum: 8 * time.Hour,
		RequireJustification: true,
		AdminMaximumDuration: "P180D", adminMaximum: 180 * 24 * time.Hour,
	}
}

// policyKey identifies a seeded policy by scope and role.
func policyKey(t pimTarget) string {
	if t.Directory {
		return "directory|" + t.DirectoryScopeID + "|" + t.RoleGUID
	}
	return "arm|" + t.Scope.Key() + "|" + t.RoleGUID
}

func (ps *pimStore) policyFromSeed(sp SeedRolePolicy, st *state) (string, pimPolicy, error) {
	t, err := ps.seedTarget(sp.Scope, sp.DirectoryScopeID, sp.RoleDefinitionID, sp.RoleName, st)
	if err != nil {
		return "", pimPolicy{}, err
	}
	p := pimPolicy{
		MaximumDuration: sp.MaximumDuration, RequireJustification: sp.RequireJustification,
		RequireTicket: sp.RequireTicket, RequireMFA: sp.RequireMFA, RequireApproval: sp.RequireApproval,
		Approvers: sp.Approvers, AuthenticationContext: sp.RequireAuthenticationContext,
		AdminMaximumDuration:   sp.AdminMaximumDuration,
		AdminRequireExpiration: sp.AdminRequireExpiration, AdminRequireJustification: sp.AdminRequireJustification,
		Seeded: true,
	}
	if p.MaximumDuration == "" {
		p.MaximumDuration = "PT8H"
	}
	if p.AdminMaximumDuration == "" {
		p.AdminMaximumDuration = "P180D"
	}
	if p.maximum, err = parseISODuration(p.MaximumDuration); err != nil {
		return "", p, fmt.Errorf("maximumDuration: %w", err)
	}
	if p.adminMaximum, err = parseISODuration(p.AdminMaximumDuration); err != nil {
		return "", p, fmt.Errorf("adminMaximumDuration: %w", err)
	}
	if p.maximum < minimumActiveDuration {
		return "", p, fmt.Errorf("maximumDuration %s is under the 5 minute minimum activation", p.MaximumDuration)
	}
	return policyKey(t), p, nil
}

// policyFor returns the policy for the target's role at its scope: a policy
// seeded at the scope or the nearest scope above it, else the default.
func (s *Server) policyFor(t pimTarget) pimPolicy {
	if t.Directory {
		if p, ok := s.pim.policies[policyKey(t)]; ok {
			return p
		}
		root := t
		root.DirectoryScopeID = "/"
		if p, ok := s.pim.policies[policyKey(root)]; ok {
			return p
		}
		return defaultPIMPolicy()
	}
	for _, key := range s.st.ancestors(t.Scope) {
		if p, ok := s.pim.policies["arm|"+key+"|"+t.RoleGUID]; ok {
			return p
		}
	}
	return defaultPIMPolicy()
}

// pimError is a PIM failure that ARM and Graph write in their own envelopes.
type pimError struct {
	status  int
	code    string
	message string
}

func (e *pimError) Error() string { return e.code + ": " + e.message }

// policyFailure is ARM's and Graph's error for failed policy rules; the
// message lists the failed rule names as a JSON array.
func policyFailure(rules []string) *pimError {
	list, _ := json.Marshal(rules)
	return &pimError{400, "RoleAssignmentRequestPolicyValidationFailed",
		fmt.Sprintf("The following policy rules failed: %s", list)}
}

// checkPolicy returns the names of the rules a request breaks, in the
// order ExpirationRule, JustificationRule, TicketingRule, MfaRule. mfa is
// whether the caller's sign-in satisfied multi-factor authentication.
func (p pimPolicy) check(r *pimRequest, mfa bool) []string {
	var failed []string
	self := strings.HasPrefix(r.RequestType, "Self")
	maximum, required := p.adminMaximum, p.AdminRequireExpiration
	justification := p.AdminRequireJustification
	if self {
		maximum, required, justification = p.maximum, true, p.RequireJustification
	}
	switch {
	case r.ExpirationType == expNoExpiration && required:
		failed = append(failed, "ExpirationRule")
	case r.ExpirationType != expNoExpiration && r.End.Sub(r.Start) > maximum:
		failed = append(failed, "ExpirationRule")
	}
	if justification && strings.TrimSpace(r.Justification) == "" {
		failed = append(failed, "JustificationRule")
	}
	if self && p.RequireTicket && (strings.TrimSpace(r.TicketNumber) == "" || strings.TrimSpace(r.TicketSystem) == "") {
		failed = append(failed, "TicketingRule")
	}
	if self && p.RequireMFA && !mfa {
		failed = append(failed, "MfaRule")
	}
	return failed
}

// checkAuthContext rejects a self-service request whose token lacks the
// authentication context the policy requires, as PIM does: with
// RoleAssignmentRequestAcrsValidationFailed and, as its message, the
// claims challenge a client would send to Entra to get such a token.
func (p pimPolicy) checkAuthContext(r *pimRequest, acrs []string) *pimError {
	if p.AuthenticationContext == "" || !strings.HasPrefix(r.RequestType, "Self") || slices.Contains(acrs, p.AuthenticationContext) {
		return nil
	}
	challenge, _ := json.Marshal(map[string]any{"access_token": map[string]any{
		"acrs": map[string]any{"essential": true, "value": p.AuthenticationContext}}})
	return &pimError{400, "RoleAssignmentRequestAcrsValidationFailed",
		"&claims=" + strings.ReplaceAll(url.QueryEscape(string(challenge)), "+", "%20")}
}

// policyName returns the stable GUID name of the policy for a role at a
// scope, as every scope has its own policy object in Azure.
func policyName(scopeKey, roleGUID string) string {
	return uuid.NewSHA1(pimNamespace, []byte("policy|"+scopeKey+"|"+roleGUID)).String()
}

// policyRules renders the policy as ARM's rule list, in the order and
// with the rule ids of a real policy: Admin eligibility, Admin assignment,
// then EndUser assignment rules, each followed by its notification rules.
func (p pimPolicy) rules() []map[string]any {
	target := func(caller, level string) map[string]any {
		return map[string]any{"caller": caller, "operations": []string{"All"}, "level": level,
			"targetObjects": nil, "inheritableSettings": nil, "enforcedSettings": nil}
	}
	notifications := func(caller, level, suffix string) []map[string]any {
		var out []map[string]any
		for _, recipient := range []string{"Admin", "Requestor", "Approver"} {
			out = append(out, map[string]any{
				"notificationType": "Email", "recipientType": recipient, "isDefaultRecipientsEnabled": true,
				"notificationLevel": "All", "notificationRecipients": nil,
				"id":       "Notification_" + recipient + "_" + suffix,
				"ruleType": "RoleManagementPolicyNotificationRule", "target": target(caller, level),
			})
		}
		return out
	}
	enabled := func(pairs ...any) []string {
		out := []string{}
		for i := 0; i < len(pairs); i += 2 {
			if pairs[i].(bool) {
				out = append(out, pairs[i+1].(string))
			}
		}
		return out
	}
	approvers := []map[string]any{}
	for _, id := range p.Approvers {
		approvers = append(approvers, map[string]any{"id": id, "description": id, "isBackup": false, "userType": "User"})
	}
	approvalMode := "NoApproval"
	stages := []map[string]any{}
	if p.RequireApproval {
		approvalMode = "SingleStage"
		stages = append(stages, map[string]any{
			"approvalStageTimeOutInDays": 1, "isApproverJustificationRequired": true, "escalationTimeInMinutes": 0,
			"primaryApprovers": approvers, "isEscalationEnabled": false, "escalationApprovers": nil,
		})
	}

	rules := []map[string]any{
		{"enabledRules": []string{}, "id": "Enablement_Admin_Eligibility",
			"ruleType": "RoleManagementPolicyEnablementRule", "target": target("Admin", "Eligibility")},
		{"isExpirationRequired": true, "maximumDuration": "P365D", "id": "Expiration_Admin_Eligibility",
			"ruleType": "RoleManagementPolicyExpirationRule", "target": target("Admin", "Eligibility")},
	}
	rules = append(rules, notifications("Admin", "Eligibility", "Admin_Eligibility")...)
	rules = append(rules,
		map[string]any{"enabledRules": enabled(p.AdminRequireJustification, "Justification"),
			"id": "Enablement_Admin_Assignment", "ruleType": "RoleManagementPolicyEnablementRule",
			"target": target("Admin", "Assignment")},
		map[string]any{"isExpirationRequired": p.AdminRequireExpiration, "maximumDuration": p.AdminMaximumDuration,
			"id": "Expiration_Admin_Assignment", "ruleType": "RoleManagementPolicyExpirationRule",
			"target": target("Admin", "Assignment")})
	rules = append(rules, notifications("Admin", "Assignment", "Admin_Assignment")...)
	rules = append(rules,
		map[string]any{"setting": map[string]any{
			"isApprovalRequired": p.RequireApproval, "isApprovalRequiredForExtension": false,
			"isRequestorJustificationRequired": true, "approvalMode": approvalMode, "approvalStages": stages},
			"id": "Approval_EndUser_Assignment", "ruleType": "RoleManagementPolicyApprovalRule",
			"target": target("EndUser", "Assignment")},
		map[string]any{"isEnabled": p.AuthenticationContext != "", "claimValue": p.AuthenticationContext, "id": "AuthenticationContext_EndUser_Assignment",
			"ruleType": "RoleManagementPolicyAuthenticationContextRule", "target": target("EndUser", "Assignment")},
		map[string]any{"enabledRules": enabled(p.RequireMFA, "MultiFactorAuthentication",
			p.RequireJustification, "Justification", p.RequireTicket, "Ticketing"),
			"id": "Enablement_EndUser_Assignment", "ruleType": "RoleManagementPolicyEnablementRule",
			"target": target("EndUser", "Assignment")},
		map[string]any{"isExpirationRequired": true, "maximumDuration": p.MaximumDuration,
			"id": "Expiration_EndUser_Assignment", "ruleType": "RoleManagementPolicyExpirationRule",
			"target": target("EndUser", "Assignment")})
	rules = append(rules, notifications("EndUser", "Assignment", "EndUser_Assignment")...)
	return rules
}
