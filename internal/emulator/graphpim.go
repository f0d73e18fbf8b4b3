package emulator

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
)

// graphActions maps Graph's lowerCamel actions to ARM's request types.
var graphActions = map[string]string{
	"selfactivate": reqSelfActivate, "selfdeactivate": reqSelfDeactivate,
	"selfextend": reqSelfExtend, "selfrenew": reqSelfRenew,
	"adminassign": reqAdminAssign, "adminremove": reqAdminRemove,
	"adminextend": reqAdminExtend, "adminrenew": reqAdminRenew, "adminupdate": reqAdminUpdate,
}

// lowerCamel turns "SelfActivate" or "AfterDuration" into Graph's
// "selfActivate" and "afterDuration".
func lowerCamel(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

// graphScheduleRequestBody is the body of a Graph schedule request POST.
type graphScheduleRequestBody struct {
	Action           string  `json:"action"`
	PrincipalID      string  `json:"principalId"`
	RoleDefinitionID string  `json:"roleDefinitionId"`
	DirectoryScopeID string  `json:"directoryScopeId"`
	AppScopeID       *string `json:"appScopeId"`
	Justification    string  `json:"justification"`
	IsValidationOnly bool    `json:"isValidationOnly"`
	ScheduleInfo     *struct {
		StartDateTime *time.Time `json:"startDateTime"`
		Expiration    *struct {
			Type        string     `json:"type"`
			EndDateTime *time.Time `json:"endDateTime"`
			Duration    *string    `json:"duration"`
		} `json:"expiration"`
	} `json:"scheduleInfo"`
	TicketInfo *struct {
		TicketNumber *string `json:"ticketNumber"`
		TicketSystem *string `json:"ticketSystem"`
	} `json:"ticketInfo"`
}

// serveGraphScheduleRequests serves roleManagement/directory/
// roleAssignmentScheduleRequests: POST (201), list, get by id, and POST
// {id}/cancel (204).
func (s *Server) serveGraphScheduleRequests(gr graphRequest) {
	n, method := len(gr.path), gr.r.Method
	switch {
	case n == 3 && method == http.MethodPost:
		if s.graphAllowed(gr, graphWriteAssignments) {
			s.postGraphScheduleRequest(gr)
		}
	case n == 5 && method == http.MethodPost && strings.EqualFold(gr.path[4], "cancel"):
		if s.graphAllowed(gr, graphWriteAssignments) {
			s.cancelGraphScheduleRequest(gr)
		}
	case (n == 3 || n == 4) && method == http.MethodGet:
		if s.graphAllowed(gr, graphReadAssignments) {
			s.listGraphScheduleRequests(gr)
		}
	default:
		writeGraphError(gr.w, gr.r, http.StatusMethodNotAllowed, "Request_BadRequest", "The method is not allowed for roleAssignmentScheduleRequests.")
	}
}

func (s *Server) postGraphScheduleRequest(gr graphRequest) {
	data, err := io.ReadAll(gr.r.Body)
	var body graphScheduleRequestBody
	if err == nil {
		err = json.Unmarshal(data, &body)
	}
	if err != nil {
		writeGraphError(gr.w, gr.r, http.StatusBadRequest, "BadRequest", fmt.Sprintf("The request body could not be read as a unifiedRoleAssignmentScheduleRequest: %v.", err))
		return
	}
	requestType, ok := graphActions[strings.ToLower(body.Action)]
	if !ok {
		writeGraphError(gr.w, gr.r, http.StatusBadRequest, "BadRequest", fmt.Sprintf("The action '%s' is not valid; use adminAssign, adminRemove, selfActivate, selfDeactivate, adminExtend or adminRenew.", body.Action))
		return
	}
	// NOTE: validation-only requests are not emulated; the emulator rejects
	// them rather than create a grant the caller did not ask for.
	if body.IsValidationOnly {
		writeGraphError(gr.w, gr.r, http.StatusBadRequest, "BadRequest", "isValidationOnly requests are not supported by the emulator.")
		return
	}
	if !isGUID(body.PrincipalID) || body.RoleDefinitionID == "" || body.DirectoryScopeID == "" {
		writeGraphError(gr.w, gr.r, http.StatusBadRequest, "BadRequest", "principalId (a GUID), roleDefinitionId and directoryScopeId are required.")
		return
	}

	r := &pimRequest{
		pimTarget: pimTarget{Directory: true, DirectoryScopeID: body.DirectoryScopeID,
			RoleGUID: strings.ToLower(body.RoleDefinitionID), PrincipalID: strings.ToLower(body.PrincipalID)},
		Name:        newGraphID(),
		RequestType: requestType, Justification: body.Justification,
		ExpirationType: expNoExpiration,
	}
	if si := body.ScheduleInfo; si != nil {
		if si.StartDateTime != nil {
			r.Start = *si.StartDateTime
		}
		if e := si.Expiration; e != nil {
			r.ExpirationType = canonicalExpiration(e.Type)
			r.Duration = derefString(e.Duration)
			if e.EndDateTime != nil {
				r.EndDateTime = *e.EndDateTime
			}
		}
	}
	if t := body.TicketInfo; t != nil {
		r.TicketNumber, r.TicketSystem = derefString(t.TicketNumber), derefString(t.TicketSystem)
	}

	s.st.mu.Lock()
	name := ""
	if p, ok := s.st.principals[strings.ToLower(gr.caller.ObjectID)]; ok {
		name = p.DisplayName
	}
	s.st.mu.Unlock()
	caller := pimCaller{ObjectID: gr.caller.ObjectID, IsApp: gr.caller.AppID != "", Name: name, MFA: s.tokenHasMFA(gr.r),
		ACRS: s.tokenClaimList(gr.r, "acrs")}
	if perr := s.submitPIMRequest(caller, r); perr != nil {
		writeGraphError(gr.w, gr.r, perr.status, perr.code, perr.message)
		return
	}
	s.st.mu.Lock()
	out := s.graphRequestJSON(r, caller.Name)
	s.st.mu.Unlock()
	out["@odata.context"] = s.graphContext(gr, "roleManagement/directory/roleAssignmentScheduleRequests/$entity")
	writeJSON(gr.w, http.StatusCreated, out)
}

// newGraphID returns a new GUID for a Graph object.
func newGraphID() string { return uuid.NewString() }

func (s *Server) cancelGraphScheduleRequest(gr graphRequest) {
	caller := pimCaller{ObjectID: gr.caller.ObjectID, IsApp: gr.caller.AppID != ""}
	if perr := s.cancelPIMRequest(caller, gr.path[3], true, false); perr != nil {
		writeGraphError(gr.w, gr.r, perr.status, perr.code, perr.message)
		return
	}
	gr.w.WriteHeader(http.StatusNoContent)
}

func (s *Server) listGraphScheduleRequests(gr graphRequest) {
	f, err := parseGraphFilter(gr.r.URL.Query().Get("$filter"), "principalId", "roleDefinitionId", "directoryScopeId", "status", "action", "id")
	if err != nil {
		writeGraphError(gr.w, gr.r, http.StatusBadRequest, "BadRequest", fmt.Sprintf("Invalid filter clause: %v.", err))
		return
	}
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	value := []map[string]any{}
	for _, r := range s.pim.requests {
		if !r.Directory {
			continue
		}
		if len(gr.path) == 4 {
			if strings.EqualFold(r.Name, gr.path[3]) {
				out := s.graphRequestJSON(r, "")
				out["@odata.context"] = s.graphContext(gr, "roleManagement/directory/roleAssignmentScheduleRequests/$entity")
				writeJSON(gr.w, http.StatusOK, out)
				return
			}
			continue
		}
		if f.match("principalId", r.PrincipalID) && f.match("roleDefinitionId", r.RoleGUID) &&
			f.match("directoryScopeId", r.DirectoryScopeID) && f.match("status", r.Status) &&
			f.match("action", lowerCamel(r.RequestType)) && f.match("id", r.Name) {
			value = append(value, s.graphRequestJSON(r, ""))
		}
	}
	if len(gr.path) == 4 {
		writeGraphError(gr.w, gr.r, http.StatusNotFound, "Request_ResourceNotFound", fmt.Sprintf(
			"Resource '%s' does not exist or one of its queried reference-property objects are not present.", gr.path[3]))
		return
	}
	writeJSON(gr.w, http.StatusOK, map[string]any{
		"@odata.context": s.graphContext(gr, "roleManagement/directory/roleAssignmentScheduleRequests"), "value": value})
}

// graphRequestJSON renders a unifiedRoleAssignmentScheduleRequest; the
// caller holds s.st.mu.
func (s *Server) graphRequestJSON(r *pimRequest, requestorName string) map[string]any {
	if requestorName == "" {
		if p, ok := s.st.principals[r.RequestorID]; ok {
			requestorName = p.DisplayName
		}
	}
	identity := map[string]any{"displayName": nullable(requestorName), "id": r.RequestorID}
	createdBy := map[string]any{"application": nil, "device": nil, "user": identity}
	if r.RequestorIsApp {
		createdBy = map[string]any{"application": identity, "device": nil, "user": nil}
	}
	var target, approval any
	if r.TargetSchedule != "" {
		target = r.TargetSchedule
	}
	if r.ApprovalID != "" {
		approval = r.ApprovalID
	}
	expiration := map[string]any{"type": lowerCamel(r.ExpirationType), "endDateTime": nil, "duration": nil}
	switch r.ExpirationType {
	case expAfterDuration:
		expiration["duration"] = r.Duration
	case expAfterDateTime:
		expiration["endDateTime"] = pimTime(r.EndDateTime)
	}
	return map[string]any{
		"id":                r.Name,
		"status":            r.Status,
		"createdDateTime":   pimTime(r.CreatedOn),
		"completedDateTime": pimTime(r.CompletedOn),
		"approvalId":        approval,
		"customData":        nil,
		"action":            lowerCamel(r.RequestType),
		"principalId":       r.PrincipalID,
		"roleDefinitionId":  r.RoleGUID,
		"directoryScopeId":  r.DirectoryScopeID,
		"appScopeId":        nil,
		"isValidationOnly":  false,
		"targetScheduleId":  target,
		"justification":     nullable(r.Justification),
		"createdBy":         createdBy,
		"scheduleInfo": map[string]any{
			"startDateTime": pimTime(r.Start), "recurrence": nil, "expiration": expiration,
		},
		"ticketInfo": map[string]any{"ticketNumber": nullable(r.TicketNumber), "ticketSystem": nullable(r.TicketSystem)},
	}
}

// serveGraphEligibilities serves roleEligibilitySchedules list and get.
func (s *Server) serveGraphEligibilities(gr graphRequest) {
	if gr.r.Method != http.MethodGet || len(gr.path) > 4 {
		writeGraphError(gr.w, gr.r, http.StatusMethodNotAllowed, "Request_BadRequest", "The emulator serves only GET for roleEligibilitySchedules.")
		return
	}
	if !s.graphAllowed(gr, graphReadEligibilities) {
		return
	}
	f, err := parseGraphFilter(gr.r.URL.Query().Get("$filter"), "principalId", "roleDefinitionId", "directoryScopeId", "id")
	if err != nil {
		writeGraphError(gr.w, gr.r, http.StatusBadRequest, "BadRequest", fmt.Sprintf("Invalid filter clause: %v.", err))
		return
	}
	now := s.now()
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	value := []map[string]any{}
	for _, e := range s.pim.eligibilities {
		if !e.Directory || (!e.End.IsZero() && !now.Before(e.End)) {
			continue
		}
		out := map[string]any{
			"id": e.Name, "principalId": e.PrincipalID, "roleDefinitionId": e.RoleGUID,
			"directoryScopeId": e.DirectoryScopeID, "appScopeId": nil,
			"createdUsing": e.Name, "createdDateTime": pimTime(e.CreatedOn), "modifiedDateTime": nil,
			"status": statusProvisioned, "memberType": "Direct",
			"scheduleInfo": map[string]any{"startDateTime": pimTime(e.Start), "recurrence": nil,
				"expiration": graphExpiration(e.End)},
		}
		if len(gr.path) == 4 {
			if strings.EqualFold(e.Name, gr.path[3]) {
				out["@odata.context"] = s.graphContext(gr, "roleManagement/directory/roleEligibilitySchedules/$entity")
				writeJSON(gr.w, http.StatusOK, out)
				return
			}
			continue
		}
		if f.match("principalId", e.PrincipalID) && f.match("roleDefinitionId", e.RoleGUID) &&
			f.match("directoryScopeId", e.DirectoryScopeID) && f.match("id", e.Name) {
			value = append(value, out)
		}
	}
	if len(gr.path) == 4 {
		writeGraphError(gr.w, gr.r, http.StatusNotFound, "Request_ResourceNotFound", fmt.Sprintf(
			"Resource '%s' does not exist or one of its queried reference-property objects are not present.", gr.path[3]))
		return
	}
	writeJSON(gr.w, http.StatusOK, map[string]any{
		"@odata.context": s.graphContext(gr, "roleManagement/directory/roleEligibilitySchedules"), "value": value})
}

// graphExpiration renders an end time as Graph's expirationPattern.
func graphExpiration(end time.Time) map[string]any {
	if end.IsZero() {
		return map[string]any{"type": "noExpiration", "endDateTime": nil, "duration": nil}
	}
	return map[string]any{"type": "afterDateTime", "endDateTime": pimTime(end), "duration": nil}
}

// serveGraphInstances serves roleAssignmentScheduleInstances list and
// get: the assignments active now, PIM-made ones only.
func (s *Server) serveGraphInstances(gr graphRequest) {
	if gr.r.Method != http.MethodGet || len(gr.path) > 4 {
		writeGraphError(gr.w, gr.r, http.StatusMethodNotAllowed, "Request_BadRequest", "The emulator serves only GET for roleAssignmentScheduleInstances.")
		return
	}
	if !s.graphAllowed(gr, graphReadAssignments) {
		return
	}
	f, err := parseGraphFilter(gr.r.URL.Query().Get("$filter"), "principalId", "roleDefinitionId", "directoryScopeId", "assignmentType", "id")
	if err != nil {
		writeGraphError(gr.w, gr.r, http.StatusBadRequest, "BadRequest", fmt.Sprintf("Invalid filter clause: %v.", err))
		return
	}
	now := s.now()
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	value := []map[string]any{}
	for _, sc := range s.pim.schedules {
		if !sc.Directory || !sc.activeAt(now) {
			continue
		}
		out := map[string]any{
			"id": sc.InstanceName, "principalId": sc.PrincipalID, "roleDefinitionId": sc.RoleGUID,
			"directoryScopeId": sc.DirectoryScopeID, "appScopeId": nil,
			"startDateTime": pimTime(sc.Start), "endDateTime": pimTime(sc.End),
			"assignmentType": sc.AssignmentType, "memberType": "Direct",
			"roleAssignmentOriginId": sc.InstanceName, "roleAssignmentScheduleId": sc.Name,
		}
		if len(gr.path) == 4 {
			if strings.EqualFold(sc.InstanceName, gr.path[3]) {
				out["@odata.context"] = s.graphContext(gr, "roleManagement/directory/roleAssignmentScheduleInstances/$entity")
				writeJSON(gr.w, http.StatusOK, out)
				return
			}
			continue
		}
		if f.match("principalId", sc.PrincipalID) && f.match("roleDefinitionId", sc.RoleGUID) &&
			f.match("directoryScopeId", sc.DirectoryScopeID) && f.match("assignmentType", sc.AssignmentType) &&
			f.match("id", sc.InstanceName) {
			value = append(value, out)
		}
	}
	if len(gr.path) == 4 {
		writeGraphError(gr.w, gr.r, http.StatusNotFound, "Request_ResourceNotFound", fmt.Sprintf(
			"Resource '%s' does not exist or one of its queried reference-property objects are not present.", gr.path[3]))
		return
	}
	writeJSON(gr.w, http.StatusOK, map[string]any{
		"@odata.context": s.graphContext(gr, "roleManagement/directory/roleAssignmentScheduleInstances"), "value": value})
}
