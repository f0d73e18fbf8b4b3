package azure

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"
)

// graphPolicyRule is the union of the unifiedRoleManagementPolicyRule
// kinds Elevate reads. A rule's id determines which fields it carries.
type graphPolicyRule struct {
	ID                   string   `json:"id"`
	IsExpirationRequired *bool    `json:"isExpirationRequired"`
	MaximumDuration      *string  `json:"maximumDuration"`
	EnabledRules         []string `json:"enabledRules"`
	IsEnabled            *bool    `json:"isEnabled"`
	ClaimValue           *string  `json:"claimValue"`
	Setting              *struct {
		IsApprovalRequired *bool `json:"isApprovalRequired"`
	} `json:"setting"`
}

// Policy returns the PIM role management policy of an Entra role, read
// through its policy assignment with the policy and its rules expanded.
// Entra role policies apply to the whole tenant, so the lookup is at scope
// "/" also for grants at an administrative unit. ErrNotFound when the role
// has no policy assignment.
func (g *Graph) Policy(ctx context.Context, roleDefinitionID string) (RolePolicy, error) {
	query := url.Values{
		"$filter": {fmt.Sprintf("scopeId eq '/' and scopeType eq 'Directory' and roleDefinitionId eq '%s'", odataQuote(roleDefinitionID))},
		"$expand": {"policy($expand=rules)"},
	}
	var page struct {
		Value []struct {
			ID               string `json:"id"`
			PolicyID         string `json:"policyId"`
			RoleDefinitionID string `json:"roleDefinitionId"`
			Policy           *struct {
				ID    string            `json:"id"`
				Rules []json.RawMessage `json:"rules"`
			} `json:"policy"`
		} `json:"value"`
	}
	if err := g.do(ctx, http.MethodGet, "policies/roleManagementPolicyAssignments", query, nil, http.StatusOK, &page); err != nil {
		return RolePolicy{}, fmt.Errorf("read the PIM policy of Entra role %s: %w", roleDefinitionID, err)
	}
	for _, a := range page.Value {
		if !sameRole(a.RoleDefinitionID, roleDefinitionID) || a.Policy == nil {
			continue
		}
		rp := RolePolicy{ID: a.Policy.ID, Name: a.Policy.ID, Scope: "/", RoleDefinitionID: a.RoleDefinitionID}
		for _, raw := range a.Policy.Rules {
			var rule graphPolicyRule
			if err := decodeJSON(raw, &rule, "role management policy rule"); err != nil {
				return RolePolicy{}, fmt.Errorf("read the PIM policy of Entra role %s: %w", roleDefinitionID, err)
			}
			if err := rp.applyGraphRule(rule); err != nil {
				return RolePolicy{}, fmt.Errorf("read the PIM policy %s of Entra role %s: %w", a.Policy.ID, roleDefinitionID, err)
			}
		}
		return rp, nil
	}
	return RolePolicy{}, fmt.Errorf("PIM policy of Entra role %s at %q: %w", roleDefinitionID, "/", ErrNotFound)
}

// applyGraphRule sets the fields of rp that one Graph rule governs, with
// the same meaning flattenPolicy gives the ARM rule of that id.
func (rp *RolePolicy) applyGraphRule(r graphPolicyRule) error {
	isTrue := func(b *bool) bool { return b != nil && *b }
	switch r.ID {
	case "Expiration_EndUser_Assignment", "Expiration_Admin_Assignment":
		var d time.Duration
		if r.MaximumDuration != nil && *r.MaximumDuration != "" {
			var err error
			if d, err = parseISODuration(*r.MaximumDuration); err != nil {
				return fmt.Errorf("rule %s: %w", r.ID, err)
			}
		}
		if r.ID == "Expiration_EndUser_Assignment" {
			rp.MaxDuration = d
		} else {
			rp.AdminMaxDuration = d
			rp.AdminExpirationRequired = isTrue(r.IsExpirationRequired)
		}
	case "Enablement_EndUser_Assignment":
		rp.JustificationRequired = slices.Contains(r.EnabledRules, "Justification")
		rp.TicketRequired = slices.Contains(r.EnabledRules, "Ticketing")
		rp.MFARequired = slices.Contains(r.EnabledRules, "MultiFactorAuthentication")
	case "Enablement_Admin_Assignment":
		rp.AdminJustificationRequired = slices.Contains(r.EnabledRules, "Justification")
	case "Approval_EndUser_Assignment":
		rp.ApprovalRequired = r.Setting != nil && isTrue(r.Setting.IsApprovalRequired)
	case authContextRuleID:
		if isTrue(r.IsEnabled) && r.ClaimValue != nil {
			rp.AuthenticationContext = *r.ClaimValue
		}
	}
	return nil
}
