package azure

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/authorization/armauthorization/v2"
)

// PIM error kinds, in addition to those of errors.go. A policy failure is
// also ErrInvalid, and a missing eligibility also ErrNotFound.
var (
	ErrPolicyViolation  = errors.New("PIM policy rule failed")
	ErrNotEligible      = errors.New("no active PIM eligibility")
	ErrDurationTooShort = errors.New("PIM active duration too short")
)

// PIM request types, as ARM spells them.
const (
	RequestSelfActivate   = "SelfActivate"
	RequestSelfDeactivate = "SelfDeactivate"
	RequestAdminAssign    = "AdminAssign"
	RequestAdminRemove    = "AdminRemove"
	RequestAdminExtend    = "AdminExtend"
)

// PIM request statuses that Elevate branches on; ARM and Graph spell them
// alike.
const (
	StatusProvisioned     = "Provisioned"
	StatusGranted         = "Granted" // accepted, starts at a later time
	StatusPendingApproval = "PendingApproval"
	StatusCanceled        = "Canceled"
	StatusDenied          = "Denied"
	StatusRevoked         = "Revoked"
	StatusFailed          = "Failed"
)

// MinimumActiveDuration is the shortest activation PIM accepts and the
// time an activation must run before it can be deactivated.
const MinimumActiveDuration = 5 * time.Minute

// Eligibility is a PIM eligible assignment: the principal may activate the
// role at the scope (an ARM scope, or a directory scope id for Entra).
type Eligibility struct {
	ID, Name         string
	Scope            string
	RoleDefinitionID string
	PrincipalID      string
	PrincipalType    string
	Start, End       time.Time // End is zero for a permanent eligibility
}

// ScheduleRequest is an ARM role assignment schedule request. The
// expiration is AfterDuration when Duration is set, AfterDateTime when End
// is set, and NoExpiration when neither is.
type ScheduleRequest struct {
	ID, Name            string
	Scope               string
	RequestType         string // RequestSelfActivate, RequestAdminAssign, ...
	PrincipalID         string
	PrincipalType       string
	RoleDefinitionID    string // full id
	LinkedEligibilityID string // required for SelfActivate
	Justification       string
	TicketNumber        string
	TicketSystem        string
	Start               time.Time // zero: now
	Duration            time.Duration
	End                 time.Time
	Status              string
	ApprovalID          string
	TargetScheduleID    string
	CreatedOn           time.Time
}

// Instance is an active PIM assignment, from ARM or Graph.
type Instance struct {
	ID, Name         string
	Scope            string // ARM scope, or Graph directoryScopeId
	RoleDefinitionID string
	PrincipalID      string
	AssignmentType   string // Activated (by the principal) or Assigned (by an admin)
	Start, End       time.Time
	ScheduleID       string
	RoleAssignmentID string // the RBAC assignment PIM created; ARM only
}

// RolePolicy is a role management policy flattened to the rules Elevate
// checks before it sends a request. The EndUser rules govern activation,
// the Admin rules active assignment by an administrator.
type RolePolicy struct {
	ID, Name, Scope, RoleDefinitionID string

	MaxDuration           time.Duration // Expiration_EndUser_Assignment; 0 when unset
	JustificationRequired bool          // Enablement_EndUser_Assignment
	TicketRequired        bool
	MFARequired           bool
	ApprovalRequired      bool // Approval_EndUser_Assignment
	// AuthenticationContext is the Conditional Access authentication
	// context, a claim value such as "c1", that an enabled
	// AuthenticationContext_EndUser_Assignment rule requires in the acrs
	// claim of the activating token. It is "" when the rule is off.
	AuthenticationContext string

	AdminMaxDuration           time.Duration // Expiration_Admin_Assignment
	AdminExpirationRequired    bool
	AdminJustificationRequired bool // Enablement_Admin_Assignment
}

// PIM performs Azure role PIM operations through the armauthorization v2
// clients and, for the policy assignment filter those clients lack, the
// same ARM pipeline.
type PIM struct {
	requests      *armauthorization.RoleAssignmentScheduleRequestsClient
	eligibilities *armauthorization.RoleEligibilitySchedulesClient
	instances     *armauthorization.RoleAssignmentScheduleInstancesClient
	policies      *armauthorization.RoleManagementPoliciesClient
	raw           *arm.Client
}

// NewPIM builds the clients.
func NewPIM(cred azcore.TokenCredential, opts *arm.ClientOptions) (*PIM, error) {
	requests, err := armauthorization.NewRoleAssignmentScheduleRequestsClient(cred, opts)
	if err != nil {
		return nil, fmt.Errorf("create schedule requests client: %w", err)
	}
	eligibilities, err := armauthorization.NewRoleEligibilitySchedulesClient(cred, opts)
	if err != nil {
		return nil, fmt.Errorf("create eligibility schedules client: %w", err)
	}
	instances, err := armauthorization.NewRoleAssignmentScheduleInstancesClient(cred, opts)
	if err != nil {
		return nil, fmt.Errorf("create schedule instances client: %w", err)
	}
	policies, err := armauthorization.NewRoleManagementPoliciesClient(cred, opts)
	if err != nil {
		return nil, fmt.Errorf("create role management policies client: %w", err)
	}
	raw, err := arm.NewClient("elevate", "v0.1.0", cred, opts)
	if err != nil {
		return nil, fmt.Errorf("create ARM client: %w", err)
	}
	return &PIM{requests: requests, eligibilities: eligibilities, instances: instances, policies: policies, raw: raw}, nil
}

// FindEligibility returns the principal's eligibility for the role at
// exactly scope; ErrNotFound (and ErrNotEligible) when there is none.
func (p *PIM) FindEligibility(ctx context.Context, scope, principalID, roleDefinitionID string) (Eligibility, error) {
	filter := fmt.Sprintf("assignedTo('%s')", principalID)
	pager := p.eligibilities.NewListForScopePager(scope, &armauthorization.RoleEligibilitySchedulesClientListForScopeOptions{Filter: &filter})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return Eligibility{}, fmt.Errorf("list eligibilities of %s at %s: %w", principalID, scope, Classify(err))
		}
		for _, s := range page.Value {
			e := fromSDKEligibility(s)
			if sameScope(e.Scope, scope) && sameRole(e.RoleDefinitionID, roleDefinitionID) && strings.EqualFold(e.PrincipalID, principalID) {
				return e, nil
			}
		}
	}
	return Eligibility{}, fmt.Errorf("eligibility of role %s for principal %s at %s: %w (%w); an administrator must make the principal eligible first",
		lastSegment(roleDefinitionID), principalID, scope, ErrNotEligible, ErrNotFound)
}

// Request creates a schedule request by PUT. A policy failure comes back
// as a *PolicyError that names each failed rule and its fix.
func (p *PIM) Request(ctx context.Context, scope, name string, r ScheduleRequest) (ScheduleRequest, error) {
	props := &armauthorization.RoleAssignmentScheduleRequestProperties{
		PrincipalID:      to.Ptr(r.PrincipalID),
		RoleDefinitionID: to.Ptr(r.RoleDefinitionID),
		RequestType:      to.Ptr(armauthorization.RequestType(r.RequestType)),
		ScheduleInfo:     sdkSchedule(r.Start, r.Duration, r.End),
	}
	if r.LinkedEligibilityID != "" {
		props.LinkedRoleEligibilityScheduleID = to.Ptr(r.LinkedEligibilityID)
	}
	if r.Justification != "" {
		props.Justification = to.Ptr(r.Justification)
	}
	if r.TicketNumber != "" || r.TicketSystem != "" {
		props.TicketInfo = &armauthorization.RoleAssignmentScheduleRequestPropertiesTicketInfo{
			TicketNumber: to.Ptr(r.TicketNumber), TicketSystem: to.Ptr(r.TicketSystem)}
	}
	resp, err := p.requests.Create(ctx, scope, name, armauthorization.RoleAssignmentScheduleRequest{Properties: props}, nil)
	if err != nil {
		return ScheduleRequest{}, fmt.Errorf("%s request %q for role %s at %s: %w", r.RequestType, name,
			lastSegment(r.RoleDefinitionID), scope, p.classifyRequest(ctx, scope, r, err))
	}
	return fromSDKRequest(resp.RoleAssignmentScheduleRequest), nil
}

// GetRequest reads a schedule request; ErrNotFound when there is none.
func (p *PIM) GetRequest(ctx context.Context, scope, name string) (ScheduleRequest, error) {
	resp, err := p.requests.Get(ctx, scope, name, nil)
	if err != nil {
		return ScheduleRequest{}, fmt.Errorf("get schedule request %q at %s: %w", name, scope, Classify(err))
	}
	return fromSDKRequest(resp.RoleAssignmentScheduleRequest), nil
}

// CancelRequest cancels a request that waits for approval. PIM accepts it
// only while the request is pending.
func (p *PIM) CancelRequest(ctx context.Context, scope, name string) error {
	if _, err := p.requests.Cancel(ctx, scope, name, nil); err != nil {
		return fmt.Errorf("cancel schedule request %q at %s: %w", name, scope, Classify(err))
	}
	return nil
}

// ActiveInstance returns the principal's active assignment of the role at
// exactly scope, made through PIM; ErrNotFound when there is none.
func (p *PIM) ActiveInstance(ctx context.Context, scope, principalID, roleDefinitionID string) (Instance, error) {
	filter := fmt.Sprintf("principalId eq '%s'", principalID)
	pager := p.instances.NewListForScopePager(scope, &armauthorization.RoleAssignmentScheduleInstancesClientListForScopeOptions{Filter: &filter})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return Instance{}, fmt.Errorf("list active assignments of %s at %s: %w", principalID, scope, Classify(err))
		}
		for _, v := range page.Value {
			in := fromSDKInstance(v)
			if sameScope(in.Scope, scope) && sameRole(in.RoleDefinitionID, roleDefinitionID) && strings.EqualFold(in.PrincipalID, principalID) {
				return in, nil
			}
		}
	}
	return Instance{}, fmt.Errorf("active PIM assignment of role %s for %s at %s: %w", lastSegment(roleDefinitionID), principalID, scope, ErrNotFound)
}

// Policy returns the role management policy that governs the role at
// scope, found through its policy assignment.
func (p *PIM) Policy(ctx context.Context, scope, roleDefinitionID string) (RolePolicy, error) {
	fullRole := qualifiedRoleID(scope, roleDefinitionID)
	var list armauthorization.RoleManagementPolicyAssignmentListResult
	path := strings.TrimRight(scope, "/") + "/providers/Microsoft.Authorization/roleManagementPolicyAssignments"
	query := url.Values{"$filter": {fmt.Sprintf("roleDefinitionId eq '%s'", fullRole)}}
	if err := p.getJSON(ctx, path, query, &list); err != nil {
		return RolePolicy{}, fmt.Errorf("list policy assignments for role %s at %s: %w", lastSegment(fullRole), scope, err)
	}
	var policyID string
	for _, a := range list.Value {
		if a.Properties != nil && sameRole(deref(a.Properties.RoleDefinitionID), fullRole) {
			policyID = deref(a.Properties.PolicyID)
			break
		}
	}
	if policyID == "" {
		return RolePolicy{}, fmt.Errorf("policy for role %s at %s: %w", lastSegment(fullRole), scope, ErrNotFound)
	}
	resp, err := p.policies.Get(ctx, scope, lastSegment(policyID), nil)
	if err != nil {
		return RolePolicy{}, fmt.Errorf("get policy %s: %w", policyID, Classify(err))
	}
	rp := flattenPolicy(resp.RoleManagementPolicy)
	rp.RoleDefinitionID = fullRole
	return rp, nil
}

// getJSON GETs an ARM path with extra query values through the pipeline.
func (p *PIM) getJSON(ctx context.Context, path string, query url.Values, out any) error {
	req, err := runtime.NewRequest(ctx, http.MethodGet, runtime.JoinPaths(p.raw.Endpoint(), path))
	if err != nil {
		return fmt.Errorf("build request for %q: %w", path, err)
	}
	query.Set("api-version", "2020-10-01")
	req.Raw().URL.RawQuery = strings.ReplaceAll(query.Encode(), "+", "%20")
	req.Raw().Header.Set("Accept", "application/json")
	resp, err := p.raw.Pipeline().Do(req)
	if err != nil {
		return Classify(err)
	}
	if !runtime.HasStatusCode(resp, http.StatusOK) {
		return Classify(runtime.NewResponseError(resp))
	}
	if err := runtime.UnmarshalAsJSON(resp, out); err != nil {
		return fmt.Errorf("decode response of GET %q: %w", path, err)
	}
	return nil
}

// classifyRequest turns a failed request into an error kind with a
// message that names each failed rule and how to fix it. For an expiration
// failure it reads the policy, best effort, to state the maximum.
func (p *PIM) classifyRequest(ctx context.Context, scope string, r ScheduleRequest, err error) error {
	switch ErrorCode(err) {
	case codePolicyValidationFailed:
		rules := failedRules(err)
		var policy *RolePolicy
		if containsRule(rules, "ExpirationRule") {
			if pol, perr := p.Policy(ctx, scope, r.RoleDefinitionID); perr == nil {
				policy = &pol
			}
		}
		return newPolicyError(rules, policy, r.RequestType, requestDuration(r), err)
	case codeActiveDurationTooShort:
		return &kindError{kind: ErrDurationTooShort, err: fmt.Errorf(
			"PIM needs activations of at least %s and deactivates only after %s of activity; request a longer duration or wait: %w",
			shortDuration(MinimumActiveDuration), shortDuration(MinimumActiveDuration), err)}
	case codeAcrsValidationFailed:
		policy := &RolePolicy{AuthenticationContext: challengedContext(err)}
		return newPolicyError([]string{AuthenticationContextRule}, policy, r.RequestType, requestDuration(r), err)
	}
	return Classify(err)
}

// requestDuration returns the requested active time, 0 for NoExpiration.
func requestDuration(r ScheduleRequest) time.Duration {
	if r.Duration > 0 {
		return r.Duration
	}
	if !r.End.IsZero() {
		start := r.Start
		if start.IsZero() {
			start = time.Now()
		}
		return r.End.Sub(start)
	}
	return 0
}

func sdkSchedule(start time.Time, duration time.Duration, end time.Time) *armauthorization.RoleAssignmentScheduleRequestPropertiesScheduleInfo {
	if start.IsZero() {
		start = time.Now().UTC()
	}
	exp := &armauthorization.RoleAssignmentScheduleRequestPropertiesScheduleInfoExpiration{Type: to.Ptr(armauthorization.TypeNoExpiration)}
	switch {
	case duration > 0:
		exp = &armauthorization.RoleAssignmentScheduleRequestPropertiesScheduleInfoExpiration{
			Type: to.Ptr(armauthorization.TypeAfterDuration), Duration: to.Ptr(formatISODuration(duration))}
	case !end.IsZero():
		exp = &armauthorization.RoleAssignmentScheduleRequestPropertiesScheduleInfoExpiration{
			Type: to.Ptr(armauthorization.TypeAfterDateTime), EndDateTime: to.Ptr(end)}
	}
	return &armauthorization.RoleAssignmentScheduleRequestPropertiesScheduleInfo{StartDateTime: to.Ptr(start), Expiration: exp}
}

func fromSDKRequest(v armauthorization.RoleAssignmentScheduleRequest) ScheduleRequest {
	r := ScheduleRequest{ID: deref(v.ID), Name: deref(v.Name)}
	p := v.Properties
	if p == nil {
		return r
	}
	r.Scope, r.PrincipalID, r.RoleDefinitionID = deref(p.Scope), deref(p.PrincipalID), deref(p.RoleDefinitionID)
	r.LinkedEligibilityID, r.Justification = deref(p.LinkedRoleEligibilityScheduleID), deref(p.Justification)
	r.ApprovalID, r.TargetScheduleID = deref(p.ApprovalID), deref(p.TargetRoleAssignmentScheduleID)
	if p.RequestType != nil {
		r.RequestType = string(*p.RequestType)
	}
	if p.Status != nil {
		r.Status = string(*p.Status)
	}
	if p.PrincipalType != nil {
		r.PrincipalType = string(*p.PrincipalType)
	}
	if p.CreatedOn != nil {
		r.CreatedOn = *p.CreatedOn
	}

	if t := p.TicketInfo; t != nil {
		r.TicketNumber, r.TicketSystem = deref(t.TicketNumber), deref(t.TicketSystem)
	}
	if si := p.ScheduleInfo; si != nil {
		if si.StartDateTime != nil {
			r.Start = *si.StartDateTime
		}
		if e := si.Expiration; e != nil {
			if d, err := parseISODuration(deref(e.Duration)); err == nil {
				r.Duration = d
			}
			if e.EndDateTime != nil {
				r.End = *e.EndDateTime
			}
		}
	}
	return r
}

func fromSDKEligibility(v *armauthorization.RoleEligibilitySchedule) Eligibility {
	e := Eligibility{ID: deref(v.ID), Name: deref(v.Name)}
	if p := v.Properties; p != nil {
		e.Scope, e.RoleDefinitionID, e.PrincipalID = deref(p.Scope), deref(p.RoleDefinitionID), deref(p.PrincipalID)
		if p.PrincipalType != nil {
			e.PrincipalType = string(*p.PrincipalType)
		}
		if p.StartDateTime != nil {
			e.Start = *p.StartDateTime
		}
		if p.EndDateTime != nil {
			e.End = *p.EndDateTime
		}
	}
	return e
}

func fromSDKInstance(v *armauthorization.RoleAssignmentScheduleInstance) Instance {
	in := Instance{ID: deref(v.ID), Name: deref(v.Name)}
	if p := v.Properties; p != nil {
		in.Scope, in.RoleDefinitionID, in.PrincipalID = deref(p.Scope), deref(p.RoleDefinitionID), deref(p.PrincipalID)
		in.ScheduleID, in.RoleAssignmentID = deref(p.RoleAssignmentScheduleID), deref(p.OriginRoleAssignmentID)
		if p.AssignmentType != nil {
			in.AssignmentType = string(*p.AssignmentType)
		}
		if p.StartDateTime != nil {
			in.Start = *p.StartDateTime
		}
		if p.EndDateTime != nil {
			in.End = *p.EndDateTime
		}
	}
	return in
}

// flattenPolicy reads the rules Elevate checks, from effectiveRules when
// ARM sends them (they include inherited settings), else from rules.
func flattenPolicy(v armauthorization.RoleManagementPolicy) RolePolicy {
	rp := RolePolicy{ID: deref(v.ID), Name: deref(v.Name)}
	if v.Properties == nil {
		return rp
	}
	rp.Scope = deref(v.Properties.Scope)
	rules := v.Properties.EffectiveRules
	if len(rules) == 0 {
		rules = v.Properties.Rules
	}
	for _, rule := range rules {
		switch r := rule.(type) {
		case *armauthorization.RoleManagementPolicyExpirationRule:
			d, _ := parseISODuration(deref(r.MaximumDuration))
			switch deref(r.ID) {
			case "Expiration_EndUser_Assignment":
				rp.MaxDuration = d
			case "Expiration_Admin_Assignment":
				rp.AdminMaxDuration = d
				rp.AdminExpirationRequired = r.IsExpirationRequired != nil && *r.IsExpirationRequired
			}
		case *armauthorization.RoleManagementPolicyEnablementRule:
			for _, e := range r.EnabledRules {
				if e == nil {
					continue
				}
				switch deref(r.ID) {
				case "Enablement_EndUser_Assignment":
					rp.JustificationRequired = rp.JustificationRequired || *e == armauthorization.EnablementRulesJustification
					rp.TicketRequired = rp.TicketRequired || *e == armauthorization.EnablementRulesTicketing
					rp.MFARequired = rp.MFARequired || *e == armauthorization.EnablementRulesMultiFactorAuthentication
				case "Enablement_Admin_Assignment":
					rp.AdminJustificationRequired = rp.AdminJustificationRequired || *e == armauthorization.EnablementRulesJustification
				}
			}
		case *armauthorization.RoleManagementPolicyApprovalRule:
			if deref(r.ID) == "Approval_EndUser_Assignment" && r.Setting != nil && r.Setting.IsApprovalRequired != nil {
				rp.ApprovalRequired = *r.Setting.IsApprovalRequired
			}
		case *armauthorization.RoleManagementPolicyAuthenticationContextRule:
			if deref(r.ID) == authContextRuleID && r.IsEnabled != nil && *r.IsEnabled {
				rp.AuthenticationContext = deref(r.ClaimValue)
			}
		}
	}
	return rp
}

// Check reports the rules a request would fail, before it is sent, as a
// *PolicyError; nil when it passes. Approval is not a failure: the request
// then waits in PendingApproval.
func (rp RolePolicy) Check(r ScheduleRequest) error {
	var rules []string
	self := strings.HasPrefix(r.RequestType, "Self")
	d := requestDuration(r)
	maximum, required, justification := rp.AdminMaxDuration, rp.AdminExpirationRequired, rp.AdminJustificationRequired
	if self {
		maximum, required, justification = rp.MaxDuration, true, rp.JustificationRequired
	}
	if (d == 0 && required) || (d > 0 && maximum > 0 && d > maximum) {
		rules = append(rules, "ExpirationRule")
	}
	if justification && strings.TrimSpace(r.Justification) == "" {
		rules = append(rules, "JustificationRule")
	}
	if self && rp.TicketRequired && (r.TicketNumber == "" || r.TicketSystem == "") {
		rules = append(rules, "TicketingRule")
	}
	if self && rp.MFARequired {
		rules = append(rules, "MfaRule")
	}
	if self && rp.AuthenticationContext != "" {
		rules = append(rules, AuthenticationContextRule)
	}
	if len(rules) == 0 {
		if d > 0 && d < MinimumActiveDuration {
			return fmt.Errorf("duration %s is under PIM's minimum of %s; request at least %s: %w",
				shortDuration(d), shortDuration(MinimumActiveDuration), shortDuration(MinimumActiveDuration), ErrDurationTooShort)
		}
		return nil
	}
	return newPolicyError(rules, &rp, r.RequestType, d, nil)
}

// qualifiedRoleID returns a role definition id in the full form ARM's
// filters compare against: subscription-qualified inside a subscription.
func qualifiedRoleID(scope, roleDefinitionID string) string {
	if strings.Contains(roleDefinitionID, "/") {
		return roleDefinitionID
	}
	const provider = "/providers/Microsoft.Authorization/roleDefinitions/"
	parts := strings.Split(strings.Trim(scope, "/"), "/")
	if len(parts) >= 2 && strings.EqualFold(parts[0], "subscriptions") {
		return "/subscriptions/" + parts[1] + provider + roleDefinitionID
	}
	return provider + roleDefinitionID
}

func sameScope(a, b string) bool {
	return strings.EqualFold(strings.TrimRight(a, "/"), strings.TrimRight(b, "/"))
}

func sameRole(a, b string) bool {
	return strings.EqualFold(lastSegment(a), lastSegment(b))
}

// decodeJSON is json.Unmarshal with the input named in the error.
func decodeJSON(data []byte, out any, what string) error {
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode %s: %w", what, err)
	}
	return nil
}

// PIM error codes, as ARM and Graph send them. PIM rejects an activation
// whose token lacks the required authentication context with
// codeAcrsValidationFailed, and its message is the claims challenge.
const (
	codePolicyValidationFailed = "RoleAssignmentRequestPolicyValidationFailed"
	codeActiveDurationTooShort = "ActiveDurationTooShort"
	codeAcrsValidationFailed   = "RoleAssignmentRequestAcrsValidationFailed"
)

// AuthenticationContextRule is the PolicyError rule name Elevate gives an
// enabled authentication context rule. PIM itself reports it with the
// error code RoleAssignmentRequestAcrsValidationFailed, not a rule name.
const AuthenticationContextRule = "AuthenticationContextRule"

// authContextRuleID is the id of the policy rule that requires an
// authentication context on activation.
const authContextRuleID = "AuthenticationContext_EndUser_Assignment"

// PolicyError is a PIM request that failed policy rules: Rules holds the
// rule names PIM reported (ExpirationRule, JustificationRule,
// TicketingRule, MfaRule, EligibilityRule) or AuthenticationContextRule,
// and Details one message per rule with the fix. It matches ErrPolicyViolation and ErrInvalid, and
// ErrNotEligible when EligibilityRule failed.
type PolicyError struct {
	Rules   []string
	Details []string
	err     error // the service's error; nil for a pre-flight Check
}

func (e *PolicyError) Error() string {
	msg := "PIM policy rejected the request: " + strings.Join(e.Details, "; ")
	if e.err != nil {
		msg += " (" + e.err.Error() + ")"
	}
	return msg
}

func (e *PolicyError) Unwrap() []error {
	errs := []error{ErrPolicyViolation, ErrInvalid}
	if containsRule(e.Rules, "EligibilityRule") {
		errs = append(errs, ErrNotEligible)
	}
	if e.err != nil {
		errs = append(errs, e.err)
	}
	return errs
}

// newPolicyError describes each failed rule. policy may be nil when it
// could not be read; duration is the requested active time, 0 for none.
func newPolicyError(rules []string, policy *RolePolicy, requestType string, duration time.Duration, err error) *PolicyError {
	self := strings.HasPrefix(requestType, "Self")
	expirationRule, enablementRule := "Expiration_Admin_Assignment", "Enablement_Admin_Assignment"
	if self {
		expirationRule, enablementRule = "Expiration_EndUser_Assignment", "Enablement_EndUser_Assignment"
	}
	pe := &PolicyError{Rules: rules, err: err}
	for _, rule := range rules {
		var d string
		switch rule {
		case "ExpirationRule":
			d = expirationDetail(policy, self, duration, expirationRule)
		case "JustificationRule":
			d = fmt.Sprintf("a justification is required (%s); set one", enablementRule)
		case "TicketingRule":
			d = fmt.Sprintf("a ticket number and ticket system are required (%s); set both", enablementRule)
		case "MfaRule":
			d = fmt.Sprintf("multi-factor authentication is required on activation (%s), which a workload identity cannot satisfy; "+
				"turn the rule off for this role or grant with a temporary role assignment instead", enablementRule)
		case AuthenticationContextRule:
			d = authContextDetail(policy)
		case "EligibilityRule":
			d = "the principal has no active eligibility for this role at this scope; an administrator must make it eligible first"
		default:
			d = fmt.Sprintf("policy rule %s failed; read the role's management policy for its settings", rule)
		}
		pe.Details = append(pe.Details, d)
	}
	return pe
}

func authContextDetail(policy *RolePolicy) string {
	claim := "an authentication context"
	if policy != nil && policy.AuthenticationContext != "" {
		claim = fmt.Sprintf("authentication context claim %q", policy.AuthenticationContext)
	}
	return fmt.Sprintf("rule %s requires %s in the caller's token on activation, which a workload identity cannot present; "+
		"turn the rule off for this role or grant with a temporary role assignment instead", authContextRuleID, claim)
}

func expirationDetail(policy *RolePolicy, self bool, duration time.Duration, rule string) string {
	var maximum time.Duration
	if policy != nil {
		maximum = policy.AdminMaxDuration
		if self {
			maximum = policy.MaxDuration
		}
	}
	switch {
	case duration == 0:
		return fmt.Sprintf("the policy requires an expiration (%s); set a duration", rule)
	case maximum > 0:
		return fmt.Sprintf("duration %s exceeds the role's maximum of %s (%s); request at most %s",
			shortDuration(duration), shortDuration(maximum), rule, shortDuration(maximum))
	}
	return fmt.Sprintf("duration %s exceeds the role's maximum (%s); read the role's policy and request less", shortDuration(duration), rule)
}

// shortDuration formats d without zero minutes and seconds: "2h", "1h30m".
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// failedRules reads the rule names from PIM's error message, which ends
// with a JSON array: `The following policy rules failed: ["ExpirationRule"]`.
func failedRules(err error) []string {
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.RawResponse == nil {
		return nil
	}
	body, perr := runtime.Payload(re.RawResponse)
	var envelope struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if perr != nil || decodeJSON(body, &envelope, "error body") != nil {
		return nil
	}
	msg := envelope.Error.Message
	start, end := strings.Index(msg, "["), strings.LastIndex(msg, "]")
	if start < 0 || end < start {
		return nil
	}
	var rules []string
	if decodeJSON([]byte(msg[start:end+1]), &rules, "failed rules") != nil {
		return nil
	}
	return rules
}

// challengedContext reads the authentication context a failed activation
// asked for from PIM's error message, which is the claims challenge
// "&claims=" followed by URL-encoded {"access_token":{"acrs":{"value":"c1"}}}.
// It returns "" when the message has another form.
func challengedContext(err error) string {
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.RawResponse == nil {
		return ""
	}
	body, perr := runtime.Payload(re.RawResponse)
	var envelope struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if perr != nil || decodeJSON(body, &envelope, "error body") != nil {
		return ""
	}
	_, encoded, ok := strings.Cut(envelope.Error.Message, "claims=")
	if !ok {
		return ""
	}
	raw, uerr := url.QueryUnescape(encoded)
	var challenge struct {
		AccessToken struct {
			ACRS struct {
				Value string `json:"value"`
			} `json:"acrs"`
		} `json:"access_token"`
	}
	if uerr != nil || decodeJSON([]byte(raw), &challenge, "claims challenge") != nil {
		return ""
	}
	return challenge.AccessToken.ACRS.Value
}

func containsRule(rules []string, rule string) bool {
	for _, r := range rules {
		if r == rule {
			return true
		}
	}
	return false
}

// parseISODuration parses the ISO 8601 durations PIM writes: PnW, PnD and
// PTnHnMnS. Years and months are rejected, as their length varies.
func parseISODuration(s string) (time.Duration, error) {
	rest, ok := strings.CutPrefix(strings.ToUpper(s), "P")
	if !ok || rest == "" || rest == "T" {
		return 0, fmt.Errorf("invalid ISO 8601 duration %q; want a form such as PT8H", s)
	}
	var total time.Duration
	inTime := false
	for rest != "" {
		if rest[0] == 'T' {
			inTime, rest = true, rest[1:]
			continue
		}
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		if i == 0 || i == len(rest) {
			return 0, fmt.Errorf("invalid ISO 8601 duration %q", s)
		}
		var n float64
		if _, err := fmt.Sscanf(rest[:i], "%g", &n); err != nil {
			return 0, fmt.Errorf("invalid ISO 8601 duration %q: %w", s, err)
		}
		units := map[string]time.Duration{"W": 7 * 24 * time.Hour, "D": 24 * time.Hour, "TH": time.Hour, "TM": time.Minute, "TS": time.Second}
		key := string(rest[i])
		if inTime {
			key = "T" + key
		}
		unit, ok := units[key]
		if !ok || n > float64(100*365*24*time.Hour)/float64(unit) {
			return 0, fmt.Errorf("invalid ISO 8601 duration %q: unit or value not supported", s)
		}
		total += time.Duration(n * float64(unit))
		rest = rest[i+1:]
	}
	return total, nil
}

// formatISODuration writes d as PTnHnMnS, the form PIM examples use.
func formatISODuration(d time.Duration) string {
	if d <= 0 {
		return "PT0S"
	}
	var b strings.Builder
	b.WriteString("PT")
	if h := d / time.Hour; h > 0 {
		fmt.Fprintf(&b, "%dH", h)
		d -= h * time.Hour
	}
	if m := d / time.Minute; m > 0 {
		fmt.Fprintf(&b, "%dM", m)
		d -= m * time.Minute
	}
	if d > 0 {
		fmt.Fprintf(&b, "%gS", d.Seconds())
	}
	return b.String()
}
