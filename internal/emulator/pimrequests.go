package emulator

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Error codes for cases where no real ARM or Graph response was found.
// NOTE: the emulator uses the generic codes below and its own messages
// for these cases, while the real services may use more specific codes. The
// statuses of RoleAssignmentExists (400) and ActiveDurationTooShort (400)
// come from Graph responses seen in the wild and are assumed for ARM too.
const (
	codeBadRequest = "BadRequest"
	codeNotFound   = "NotFound"
	codeConflict   = "Conflict"
)

// pimCaller is the authenticated principal of a PIM request.
type pimCaller struct {
	ObjectID string
	IsApp    bool
	Name     string // display name for createdBy
	MFA      bool   // the token's amr claim includes "mfa"
	// ACRS holds the authentication context claim values of the token's
	// acrs claim.
	ACRS []string
}

// submitPIMRequest checks and records a schedule request, then provisions,
// revokes or parks it for approval. It runs the checks in this order:
// principal, role, self-service caller, schedule, eligibility, existing
// assignment, minimum duration, policy. The caller holds no lock; the
// caller's permission for Admin* requests is checked by the ARM or Graph
// handler before.
func (s *Server) submitPIMRequest(caller pimCaller, r *pimRequest) *pimError {
	now := s.now()
	s.st.mu.Lock()
	defer s.st.mu.Unlock()

	// Name: request names are unique per service, and requests are
	// immutable once made.
	if s.pim.findRequest(r.Name, r.Directory) != nil {
		return &pimError{409, codeConflict, fmt.Sprintf("A role assignment schedule request with name '%s' already exists; requests cannot be changed, so use a new name.", r.Name)}
	}

	// Principal and role must exist.
	p, ok := s.st.principals[r.PrincipalID]
	if !ok || now.Before(p.CreatedAt.Add(s.cfg.ReplicationDelay)) {
		return &pimError{400, "PrincipalNotFound", fmt.Sprintf("Principal %s does not exist in the directory %s.", r.PrincipalID, s.TenantID())}
	}
	r.PrincipalType = p.Type
	if !s.roleKnown(r.pimTarget) {
		return &pimError{400, "InvalidRoleDefinitionId", fmt.Sprintf("The role definition ID '%s' is not valid.", r.RoleGUID)}
	}

	// Self-service requests: only the principal itself, never a group.
	self := strings.HasPrefix(r.RequestType, "Self")
	if self && p.Type == PrincipalGroup {
		return &pimError{400, codeBadRequest, fmt.Sprintf("The principal '%s' is a group; a group cannot activate or deactivate a role for itself. Request it for a member, or use AdminAssign.", r.PrincipalID)}
	}
	if self && !strings.EqualFold(caller.ObjectID, r.PrincipalID) {
		return &pimError{400, codeBadRequest, fmt.Sprintf("The caller '%s' cannot make a %s request for principal '%s'; a %s request must come from the principal itself.", caller.ObjectID, r.RequestType, r.PrincipalID, r.RequestType)}
	}
	r.RequestorID, r.RequestorIsApp = strings.ToLower(caller.ObjectID), caller.IsApp
	r.CreatedOn = now

	var perr *pimError
	switch r.RequestType {
	case reqSelfActivate, reqAdminAssign:
		perr = s.grantRequest(r, caller, now)
	case reqSelfDeactivate, reqAdminRemove:
		perr = s.removeRequest(r, now)
	case reqAdminExtend, reqAdminRenew, reqAdminUpdate:
		perr = s.extendRequest(r, now)
	default:
		perr = &pimError{400, codeBadRequest, fmt.Sprintf("The request type '%s' is not supported by the emulator; use SelfActivate, SelfDeactivate, AdminAssign, AdminRemove, AdminExtend, AdminRenew or AdminUpdate.", r.RequestType)}
	}
	if perr != nil {
		return perr
	}
	s.pim.requests = append(s.pim.requests, r)
	s.log.Info("pim request", "request", r.Name, "request_type", r.RequestType, "status", r.Status,
		"principal_id", r.PrincipalID, "role_definition_id", r.RoleGUID, "scope", r.scopeString())
	return nil
}

// roleKnown reports whether the target's role exists in its directory.
func (s *Server) roleKnown(t pimTarget) bool {
	if t.Directory {
		_, ok := s.pim.directoryRoles[t.RoleGUID]
		return ok
	}
	_, ok := s.st.roles[t.RoleGUID]
	return ok
}

func (t pimTarget) scopeString() string {
	if t.Directory {
		return t.DirectoryScopeID
	}
	return t.Scope.String()
}

// startSkew is how far after the emulator's now a start time may lie and
// still count as now, so a client whose clock runs slightly ahead gets an
// immediate activation rather than a Granted one that starts later.
// NOTE: the tolerance real PIM applies was not measured; one minute is
// the emulator's choice.
const startSkew = time.Minute

// resolveSchedule fills Start and End from the request's schedule info.
func resolveSchedule(r *pimRequest, now time.Time) *pimError {
	if r.Start.IsZero() || (r.Start.After(now) && r.Start.Sub(now) <= startSkew) {
		r.Start = now
	}
	switch r.ExpirationType {
	case expAfterDuration:
		d, err := parseISODuration(r.Duration)
		if err != nil {
			return &pimError{400, codeBadRequest, fmt.Sprintf("The schedule duration '%s' is not a valid ISO 8601 duration such as PT8H.", r.Duration)}
		}
		r.End = r.Start.Add(d)
	case expAfterDateTime:
		if !r.EndDateTime.After(r.Start) {
			return &pimError{400, codeBadRequest, "The schedule endDateTime must be after its startDateTime."}
		}
		r.End = r.EndDateTime
	case expNoExpiration:
		r.End = time.Time{}
	default:
		return &pimError{400, codeBadRequest, fmt.Sprintf("The expiration type '%s' is not valid; use AfterDuration, AfterDateTime or NoExpiration.", r.ExpirationType)}
	}
	return nil
}

// grantRequest handles SelfActivate and AdminAssign.
func (s *Server) grantRequest(r *pimRequest, caller pimCaller, now time.Time) *pimError {
	if perr := resolveSchedule(r, now); perr != nil {
		return perr
	}

	// Eligibility: ARM names it in linkedRoleEligibilityScheduleId; Graph
	// finds it from principal, role and directory scope.
	if r.RequestType == reqSelfActivate {
		e := s.pim.eligibilityFor(r.pimTarget, now)
		if !r.Directory && r.LinkedEligibility == "" {
			return &pimError{400, codeBadRequest, "The linkedRoleEligibilityScheduleId is required for a SelfActivate request; list roleEligibilitySchedules to find it."}
		}
		if e == nil || (!r.Directory && r.LinkedEligibility != e.Name) {
			return policyFailure([]string{"EligibilityRule"})
		}
		r.LinkedEligibility = e.Name
	}

	// One active assignment per principal, role and scope.
	if s.assignmentExists(r.pimTarget, now) {
		return &pimError{400, "RoleAssignmentExists", "The Role assignment already exists."}
	}
	if r.ExpirationType != expNoExpiration && r.End.Sub(r.Start) < minimumActiveDuration {
		return durationTooShort()
	}
	policy := s.policyFor(r.pimTarget)
	if failed := policy.check(r, caller.MFA); len(failed) > 0 {
		return policyFailure(failed)
	}
	if perr := policy.checkAuthContext(r, caller.ACRS); perr != nil {
		return perr
	}
	if r.RequestType == reqSelfActivate && policy.RequireApproval {
		r.Status = statusPendingApproval
		r.ApprovalID = uuid.NewString()
		return nil
	}
	s.provision(r, now)
	return nil
}

// durationTooShort is the error for activations under five minutes and for
// deactivations within five minutes of activation; the message is Graph's,
// misspelling included.
func durationTooShort() *pimError {
	return &pimError{400, "ActiveDurationTooShort", "The Active duration is too short. Miniumum Required is 5 minutes."}
}

// assignmentExists reports whether the target principal already holds the
// role at exactly the scope, through PIM or a plain role assignment.
func (s *Server) assignmentExists(t pimTarget, now time.Time) bool {
	if s.pim.activeSchedule(t, now) != nil {
		return true
	}
	if t.Directory {
		return false
	}
	for _, a := range s.st.assignments {
		if a.DeletedOn.IsZero() && a.PrincipalID == t.PrincipalID && strings.EqualFold(a.Scope, t.Scope.String()) {
			if g, _ := roleDefinitionGUID(a.RoleDefinitionID); g == t.RoleGUID {
				return true
			}
		}
	}
	return false
}

// provision creates the schedule, its instance and, for an Azure role, the
// role assignment RBAC enforcement reads. The assignment takes effect at
// the later of now and the schedule start, plus the propagation delay.
func (s *Server) provision(r *pimRequest, now time.Time) {
	sc := &pimSchedule{
		pimTarget: r.pimTarget, Name: uuid.NewString(), InstanceName: uuid.NewString(),
		AssignmentType: "Assigned", Start: r.Start, End: r.End, RequestName: r.Name,
		LinkedEligibility: r.LinkedEligibility, CreatedOn: now,
	}
	if r.RequestType == reqSelfActivate {
		sc.AssignmentType = "Activated"
	}
	if r.Directory {
		sc.Name = r.Name // Graph reports the request id as targetScheduleId
	} else {
		effective := now
		if r.Start.After(now) {
			effective = r.Start
		}
		name := uuid.NewString()
		a := &RoleAssignment{
			Name: name, ID: assignmentID(r.Scope, name), Scope: r.Scope.String(),
			RoleDefinitionID: roleDefinitionIDAt(r.Scope, r.RoleGUID),
			PrincipalID:      r.PrincipalID, PrincipalType: r.PrincipalType,
			Condition: r.Condition, ConditionVersion: r.ConditionVersion,
			CreatedOn: effective, UpdatedOn: effective, CreatedBy: r.RequestorID, UpdatedBy: r.RequestorID,
		}
		s.st.assignments = append(s.st.assignments, a)
		sc.Assignment = a
	}
	s.pim.schedules = append(s.pim.schedules, sc)
	r.Status = statusProvisioned
	if r.Start.After(now) {
		r.Status = statusGranted
	}
	r.TargetSchedule, r.TargetInstance, r.CompletedOn = sc.Name, sc.InstanceName, now
}

// removeRequest handles SelfDeactivate and AdminRemove: it ends the active
// schedule now, and with it the role assignment.
func (s *Server) removeRequest(r *pimRequest, now time.Time) *pimError {
	if r.ExpirationType == "" {
		r.ExpirationType = expNoExpiration
	}
	if r.Start.IsZero() {
		r.Start = now
	}
	sc := s.pim.activeSchedule(r.pimTarget, now)
	if sc == nil || (r.RequestType == reqSelfDeactivate && sc.AssignmentType != "Activated") {
		return &pimError{400, codeBadRequest, fmt.Sprintf("No active PIM assignment of role '%s' for principal '%s' at '%s' to remove.", r.RoleGUID, r.PrincipalID, r.scopeString())}
	}
	if r.RequestType == reqSelfDeactivate && now.Sub(maxTime(sc.Start, sc.CreatedOn)) < minimumActiveDuration {
		return durationTooShort()
	}
	sc.EndedOn = now
	if sc.Assignment != nil && sc.Assignment.DeletedOn.IsZero() {
		sc.Assignment.DeletedOn = now
	}
	r.Status, r.TargetSchedule, r.TargetInstance, r.CompletedOn = statusRevoked, sc.Name, sc.InstanceName, now
	r.LinkedEligibility = sc.LinkedEligibility
	return nil
}

// extendRequest handles AdminExtend, AdminRenew and AdminUpdate by moving
// the end of the active schedule to the request's end.
// NOTE: Azure allows AdminExtend only close to expiry and AdminRenew only
// after it; the emulator accepts either while the schedule is active.
func (s *Server) extendRequest(r *pimRequest, now time.Time) *pimError {
	if perr := resolveSchedule(r, now); perr != nil {
		return perr
	}
	sc := s.pim.activeSchedule(r.pimTarget, now)
	if sc == nil {
		return &pimError{400, codeBadRequest, fmt.Sprintf("No active PIM assignment of role '%s' for principal '%s' at '%s' to extend.", r.RoleGUID, r.PrincipalID, r.scopeString())}
	}
	if failed := s.policyFor(r.pimTarget).check(r, false); len(failed) > 0 {
		return policyFailure(failed)
	}
	sc.End = r.End
	r.Status, r.TargetSchedule, r.TargetInstance, r.CompletedOn = statusProvisioned, sc.Name, sc.InstanceName, now
	return nil
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// decidePIMRequest approves or denies a request waiting for approval, as an
// approver would. Approval provisions the assignment unless one appeared
// meanwhile, which fails the request.
func (s *Server) decidePIMRequest(name string, approve bool) (*pimRequest, *pimError) {
	now := s.now()
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	r := s.pim.findRequest(name, false)
	if r == nil {
		r = s.pim.findRequest(name, true)
	}
	if r == nil {
		return nil, &pimError{404, codeNotFound, fmt.Sprintf("No role assignment schedule request named '%s'.", name)}
	}
	if r.Status != statusPendingApproval {
		return nil, &pimError{409, codeConflict, fmt.Sprintf("The request '%s' is %s, not PendingApproval.", name, r.Status)}
	}
	switch {
	case !approve:
		r.Status, r.CompletedOn = statusDenied, now
	case s.assignmentExists(r.pimTarget, now):
		r.Status, r.CompletedOn = statusFailed, now
	default:
		s.provision(r, now)
	}
	s.log.Info("pim request decided", "request", r.Name, "status", r.Status)
	return r, nil
}

// cancelPIMRequest cancels a pending request. Only its requestor or target
// principal may cancel it, or an ARM caller with the cancel action, which
// the ARM handler checks before (admin is true then).
func (s *Server) cancelPIMRequest(caller pimCaller, name string, directory, admin bool) *pimError {
	now := s.now()
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	r := s.pim.findRequest(name, directory)
	if r == nil {
		return &pimError{404, codeNotFound, fmt.Sprintf("The role assignment schedule request '%s' was not found.", name)}
	}
	id := strings.ToLower(caller.ObjectID)
	if !admin && id != r.RequestorID && id != r.PrincipalID {
		return &pimError{403, "AuthorizationFailed", fmt.Sprintf("The client '%s' may not cancel request '%s' made by '%s'.", caller.ObjectID, name, r.RequestorID)}
	}
	if !slices.Contains([]string{statusPendingApproval, "PendingEvaluation", "PendingAdminDecision"}, r.Status) {
		return &pimError{400, codeBadRequest, fmt.Sprintf("The request '%s' is %s; only a pending request can be canceled.", name, r.Status)}
	}
	r.Status, r.CompletedOn = statusCanceled, now
	s.log.Info("pim request canceled", "request", r.Name)
	return nil
}
