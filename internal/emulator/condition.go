package emulator

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/elevate-dev/elevate/internal/abac"
)

// This file applies role assignment conditions (Azure ABAC) to role
// assignment writes and deletes. Package abac parses and evaluates them, so
// the emulator and Elevate's pre-flight read a condition the same way. The
// emulator rejects a write whose condition abac cannot parse, so an
// assignment never carries a condition that the emulator cannot evaluate.

// conditionVersion is the only condition language version ARM accepts.
const conditionVersion = abac.Version

// Actions whose conditions the emulator evaluates.
const (
	actionRoleAssignmentWrite  = abac.ActionWrite
	actionRoleAssignmentDelete = abac.ActionDelete
)

// rejectInvalidCondition writes ARM's 400 when a role assignment write
// carries a condition that does not parse or a version other than 2.0, and
// logs the reason, which ARM's message leaves out.
// NOTE: the message is the one Microsoft's troubleshooting page quotes; the
// code InvalidRoleAssignmentCondition comes from users' reports, not from a
// captured response.
func (s *Server) rejectInvalidCondition(req armRequest, id, condition, version string) bool {
	err := abac.Validate(condition, version)
	if err == nil {
		return false
	}
	s.log.Info("role assignment condition rejected", "assignment_id", id, "error", err)
	writeARMError(req.w, http.StatusBadRequest, "InvalidRoleAssignmentCondition",
		"The given role assignment condition is invalid.")
	return true
}

// writeConditionNotFulfilled writes ARM's 403 for a caller whose grants of
// action all carry conditions that the request does not fulfil.
// NOTE: reports confirm the text up to the action; the rest mirrors ARM's
// message for a missing permission.
func writeConditionNotFulfilled(req armRequest, action, target string) {
	writeARMError(req.w, http.StatusForbidden, "AuthorizationFailed", fmt.Sprintf(
		"The client '%s' with object id '%s' has an authorization with ABAC condition that is not fulfilled to perform action '%s' over scope '%s' or the scope is invalid. If access was recently granted, please refresh your credentials.",
		req.caller.clientName(), req.caller.ObjectID, action, target))
}

// conditionAttributes returns the condition attributes of an assignment.
func conditionAttributes(a RoleAssignment) map[string]string {
	return abac.Attributes(a.RoleDefinitionID, a.PrincipalID, a.PrincipalType)
}

// conditionsAllow evaluates the ABAC conditions of the caller's effective
// assignments that grant action at scope. For a write the target is the
// assignment requested and provides the @Request attributes. For a delete
// it is the existing assignment and provides the @Resource attributes.
// It returns true when some granting assignment has no condition or a
// condition that is true. A stored condition that does not parse is true
// for nothing.
// NOTE: only role assignment writes and deletes evaluate conditions, and
// other actions ignore them. A changed condition takes effect at once, not
// after the propagation delay.
func (st *state) conditionsAllow(principalID, action string, scope ResourceID, target RoleAssignment, now time.Time, delay time.Duration) bool {
	in := abac.WriteInput(conditionAttributes(target))
	if strings.EqualFold(action, actionRoleAssignmentDelete) {
		in = abac.DeleteInput(conditionAttributes(target))
	}
	in.Action = action
	principalID = strings.ToLower(principalID)
	keys := st.ancestors(scope)
	for _, a := range st.assignments {
		if a.PrincipalID != principalID || !a.effective(now, delay) || !slices.Contains(keys, strings.ToLower(a.Scope)) {
			continue
		}
		if !st.assignmentGrants(a, action) {
			continue
		}
		if a.Condition == "" {
			return true
		}
		if a.ConditionVersion != "" && a.ConditionVersion != conditionVersion {
			continue
		}
		c, err := abac.Parse(a.Condition)
		if err == nil && c.Evaluate(in) {
			return true
		}
	}
	return false
}

// assignmentGrants reports whether the role of a grants the control plane
// action.
func (st *state) assignmentGrants(a *RoleAssignment, action string) bool {
	guid, _ := roleDefinitionGUID(a.RoleDefinitionID)
	for _, p := range st.roles[guid].Permissions {
		if p.allows(action, false) {
			return true
		}
	}
	return false
}
