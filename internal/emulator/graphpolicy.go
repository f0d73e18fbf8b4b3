package emulator

import (
	"fmt"
	"net/http"
	"strings"
)

// graphReadPolicies are the app roles that may list role management policy
// assignments for Entra roles.
var graphReadPolicies = []string{"RoleManagementPolicy.Read.Directory", "RoleManagement.Read.Directory", "RoleManagement.Read.All",
	"RoleManagementPolicy.ReadWrite.Directory", "RoleManagement.ReadWrite.Directory"}

// serveGraphPolicyAssignments serves GET policies/roleManagementPolicyAssignments
// for Entra roles. Graph requires a filter on scopeId and scopeType. For
// Entra roles scopeId is "/" and scopeType is Directory or DirectoryRole,
// and a roleDefinitionId term may narrow the list to one role. $expand=policy adds the policy,
// and policy($expand=rules) its rules too. Each role's policy is the one
// seeded for it at directory scope "/", else the emulator's default.
func (s *Server) serveGraphPolicyAssignments(gr graphRequest) {
	if gr.r.Method != http.MethodGet || len(gr.path) != 2 {
		writeGraphError(gr.w, gr.r, http.StatusMethodNotAllowed, "Request_BadRequest", "The emulator serves only GET for the roleManagementPolicyAssignments collection.")
		return
	}
	if !s.graphAllowed(gr, graphReadPolicies) {
		return
	}
	f, err := parseGraphFilter(gr.r.URL.Query().Get("$filter"), "scopeId", "scopeType", "roleDefinitionId")
	if err != nil {
		writeGraphError(gr.w, gr.r, http.StatusBadRequest, "BadRequest", fmt.Sprintf("Invalid filter clause: %v.", err))
		return
	}
	scopeType := f["scopetype"]
	if f["scopeid"] != "/" || (!strings.EqualFold(scopeType, "Directory") && !strings.EqualFold(scopeType, "DirectoryRole")) {
		writeGraphError(gr.w, gr.r, http.StatusBadRequest, "BadRequest",
			"The filter must name scopeId eq '/' and scopeType eq 'Directory' or 'DirectoryRole'; the emulator serves no PIM for groups policies.")
		return
	}
	expand := strings.ReplaceAll(strings.ToLower(gr.r.URL.Query().Get("$expand")), " ", "")
	withPolicy := strings.HasPrefix(expand, "policy")
	withRules := expand == "policy($expand=rules)"

	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	value := []map[string]any{}
	for _, role := range builtinDirectoryRoles {
		if !f.match("roleDefinitionId", role.ID) {
			continue
		}
		t := pimTarget{Directory: true, DirectoryScopeID: "/", RoleGUID: role.ID}
		policyID := scopeType + "_" + s.TenantID() + "_" + policyName(t.DirectoryScopeID, role.ID)
		out := map[string]any{
			"id": policyID + "_" + role.ID, "policyId": policyID,
			"scopeId": "/", "scopeType": scopeType, "roleDefinitionId": role.ID,
		}
		if withPolicy {
			pol := s.policyFor(t)
			policy := map[string]any{
				"id": policyID, "displayName": "DirectoryRole", "description": "DirectoryRole",
				"isOrganizationDefault": !pol.Seeded, "scopeId": "/", "scopeType": scopeType,
				"lastModifiedDateTime": nil, "lastModifiedBy": map[string]any{"displayName": nil, "id": nil},
			}
			if withRules {
				policy["rules"] = graphRules(pol)
			}
			out["policy"] = policy
		}
		value = append(value, out)
	}
	context := "policies/roleManagementPolicyAssignments"
	if withRules {
		context += "(policy(rules()))"
	}
	writeJSON(gr.w, http.StatusOK, map[string]any{"@odata.context": s.graphContext(gr, context), "value": value})
}

// graphRules renders the policy's rules as Graph writes them: the ARM rule
// list with @odata.type in place of ruleType, lower-case operations, empty
// setting lists in place of null, and a null claim value while the
// authentication context rule is off.
func graphRules(p pimPolicy) []map[string]any {
	rules := p.rules()
	for _, r := range rules {
		r["@odata.type"] = "#microsoft.graph.unifiedRoleManagementPolicy" + strings.TrimPrefix(r["ruleType"].(string), "RoleManagementPolicy")
		delete(r, "ruleType")
		if target, ok := r["target"].(map[string]any); ok {
			target["operations"] = []string{"all"}
			target["inheritableSettings"] = []string{}
			target["enforcedSettings"] = []string{}
			delete(target, "targetObjects")
		}
		if r["id"] == "AuthenticationContext_EndUser_Assignment" && p.AuthenticationContext == "" {
			r["claimValue"] = nil
		}
		if r["notificationRecipients"] == nil && r["notificationType"] != nil {
			r["notificationRecipients"] = []string{}
		}
		if setting, ok := r["setting"].(map[string]any); ok {
			setting["approvalStages"] = graphApprovalStages(setting["approvalStages"].([]map[string]any), p.Approvers)
		}
	}
	return rules
}

// graphApprovalStages writes approvers as Graph's singleUser subject sets.
func graphApprovalStages(stages []map[string]any, approvers []string) []map[string]any {
	users := []map[string]any{}
	for _, id := range approvers {
		users = append(users, map[string]any{"@odata.type": "#microsoft.graph.singleUser", "userId": id, "description": id, "isBackup": false})
	}
	for _, st := range stages {
		st["primaryApprovers"] = users
		st["escalationApprovers"] = []map[string]any{}
	}
	return stages
}
