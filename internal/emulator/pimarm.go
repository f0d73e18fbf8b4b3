package emulator

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"
)

// pimTimeFormat is the layout of PIM times: RFC 3339 in UTC with as many
// fraction digits as needed ("2020-09-09T21:35:27.91Z").
const pimTimeFormat = time.RFC3339Nano

func pimTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(pimTimeFormat)
}

// servePIM routes the PIM resource types of Microsoft.Authorization.
func (s *Server) servePIM(req armRequest, typ string) {
	method, n := req.r.Method, len(req.rest)
	switch {
	case typ == "roleassignmentschedulerequests" && method == http.MethodPut && n == 2:
		s.putScheduleRequest(req)
	case typ == "roleassignmentschedulerequests" && method == http.MethodPost && n == 3 && strings.EqualFold(req.rest[2], "cancel"):
		s.cancelScheduleRequest(req)
	case method != http.MethodGet || n > 2:
		writeARMError(req.w, http.StatusMethodNotAllowed, "MethodNotAllowed", "The requested method is not allowed for "+req.rest[0]+".")
	case typ == "rolemanagementpolicies" || typ == "rolemanagementpolicyassignments":
		s.servePolicies(req, typ)
	default:
		s.listOrGetPIM(req, typ)
	}
}

// pimFilter is a parsed $filter of the PIM list calls.
type pimFilter struct {
	PrincipalID      string // principalId eq or assignedTo()
	RoleDefinitionID string // roleDefinitionId eq, a GUID or full id
	AsTarget         bool
	AsRequestor      bool
	AtScope          bool
}

// parsePIMFilter accepts the filters ARM documents for the PIM lists:
// atScope(), asTarget(), asRequestor(), assignedTo('id'), principalId eq
// and roleDefinitionId eq, joined by "and".
func parsePIMFilter(s string) (pimFilter, error) {
	var f pimFilter
	if strings.TrimSpace(s) == "" {
		return f, nil
	}
	terms, err := parseFilter(s)
	if err != nil {
		return f, err
	}
	for _, t := range terms {
		switch {
		case t.Call && t.Name == "atscope" && t.Value == "":
			f.AtScope = true
		case t.Call && t.Name == "astarget" && t.Value == "":
			f.AsTarget = true
		case t.Call && t.Name == "asrequestor" && t.Value == "":
			f.AsRequestor = true
		case t.Call && t.Name == "assignedto" && t.Value != "":
			f.PrincipalID = strings.ToLower(t.Value)
		case !t.Call && t.Name == "principalid":
			f.PrincipalID = strings.ToLower(t.Value)
		case !t.Call && t.Name == "roledefinitionid":
			f.RoleDefinitionID = t.Value
		default:
			return f, fmt.Errorf("%w %q: unsupported term %q", errInvalidFilter, s, t.Name)
		}
	}
	return f, nil
}

// visibleAt reports whether an object at objScope shows in a list at
// scope: at, above or below it, or only at and above with atScope().
func (s *Server) visibleAt(scope, objScope ResourceID, atScope bool) bool {
	k := objScope.Key()
	if slices.Contains(s.st.ancestors(scope), k) {
		return true
	}
	if atScope {
		return false
	}
	below := scope.Key() + "/"
	if scope.Key() == "/" {
		below = "/"
	}
	return strings.HasPrefix(k, below) || s.st.underManagementGroup(scope, k)
}

// matches reports whether a target passes the filter for caller.
func (f pimFilter) matches(t pimTarget, caller, requestor string) bool {
	if f.PrincipalID != "" && t.PrincipalID != f.PrincipalID {
		return false
	}
	if f.AsTarget && t.PrincipalID != caller {
		return false
	}
	if f.AsRequestor && requestor != caller {
		return false
	}
	if f.RoleDefinitionID != "" {
		if g, ok := roleDefinitionGUID(f.RoleDefinitionID); !ok || g != t.RoleGUID {
			return false
		}
	}
	return true
}

// selfOnly reports whether the filter limits a list to the caller's own
// objects, which any principal may read without a read permission.
func (f pimFilter) selfOnly(caller string) bool {
	return f.AsTarget || f.AsRequestor || (f.PrincipalID != "" && f.PrincipalID == caller)
}

// pimReadAction is the RBAC action that lets a caller read other
// principals' objects of a PIM type.
func pimReadAction(typ string) string {
	names := map[string]string{
		"roleeligibilityschedules":         "roleEligibilitySchedules",
		"roleeligibilityscheduleinstances": "roleEligibilityScheduleInstances",
		"roleassignmentschedulerequests":   "roleAssignmentScheduleRequests",
		"roleassignmentschedules":          "roleAssignmentSchedules",
		"roleassignmentscheduleinstances":  "roleAssignmentScheduleInstances",
		"rolemanagementpolicies":           "roleManagementPolicies",
		"rolemanagementpolicyassignments":  "roleManagementPolicyAssignments",
	}
	return "Microsoft.Authorization/" + names[typ] + "/read"
}

// canRead reports whether the caller holds the read action at scope.
func (s *Server) canRead(req armRequest, typ string) bool {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	return s.st.allowed(req.caller.ObjectID, pimReadAction(typ), false, req.scope, s.now(), s.propagationDelay())
}

// listOrGetPIM serves list and get of eligibility schedules and instances,
// assignment schedules and instances, and schedule requests. A caller
// reads its own objects freely and others' with the type's read action.
func (s *Server) listOrGetPIM(req armRequest, typ string) {
	caller := strings.ToLower(req.caller.ObjectID)
	f, err := parsePIMFilter(req.r.URL.Query().Get("$filter"))
	if err != nil {
		writeARMError(req.w, http.StatusBadRequest, "InvalidFilter", fmt.Sprintf("The filter is not valid: %v.", err))
		return
	}
	readAll := s.canRead(req, typ)
	if len(req.rest) == 1 && !readAll && !f.selfOnly(caller) {
		s.authorize(req, pimReadAction(typ), req.scope, req.scope.String()) // writes the 403
		return
	}

	s.st.mu.Lock()
	objs := s.pimObjects(typ)
	s.st.mu.Unlock()

	if len(req.rest) == 2 {
		name := strings.ToLower(req.rest[1])
		for _, o := range objs {
			if o.name == name && o.target.Scope.Key() == req.scope.Key() && (readAll || o.target.PrincipalID == caller || o.requestor == caller) {
				writeJSON(req.w, http.StatusOK, o.body)
				return
			}
		}
		writeARMError(req.w, http.StatusNotFound, codeNotFound, fmt.Sprintf("The %s '%s' was not found at scope '%s'.", req.rest[0], req.rest[1], req.scope))
		return
	}
	out := []any{}
	for _, o := range objs {
		if !s.visibleAt(req.scope, o.target.Scope, f.AtScope) || !f.matches(o.target, caller, o.requestor) {
			continue
		}
		if readAll || o.target.PrincipalID == caller || o.requestor == caller {
			out = append(out, o.body)
		}
	}
	writeJSON(req.w, http.StatusOK, map[string]any{"value": out})
}

// pimObject is one listed PIM object with what filters look at.
type pimObject struct {
	name      string
	target    pimTarget
	requestor string
	body      any
}

// pimObjects renders the ARM objects of a type; s.st.mu must be held.
func (s *Server) pimObjects(typ string) []pimObject {
	now := s.now()
	var out []pimObject
	switch typ {
	case "roleeligibilityschedules", "roleeligibilityscheduleinstances":
		for _, e := range s.pim.eligibilities {
			if e.Directory || (!e.End.IsZero() && !now.Before(e.End)) {
				continue
			}
			name, body := e.Name, s.eligibilityScheduleJSON(e)
			if typ == "roleeligibilityscheduleinstances" {
				name, body = e.InstanceName, s.eligibilityInstanceJSON(e)
			}
			out = append(out, pimObject{name: name, target: e.pimTarget, body: body})
		}
	case "roleassignmentschedules", "roleassignmentscheduleinstances":
		for _, sc := range s.pim.schedules {
			if sc.Directory || !sc.EndedOn.IsZero() {
				continue
			}
			if typ == "roleassignmentscheduleinstances" {
				if !sc.activeAt(now) {
					continue
				}
				out = append(out, pimObject{name: sc.InstanceName, target: sc.pimTarget, body: s.assignmentInstanceJSON(sc)})
				continue
			}
			out = append(out, pimObject{name: sc.Name, target: sc.pimTarget, body: s.assignmentScheduleJSON(sc)})
		}
	case "roleassignmentschedulerequests":
		for _, r := range s.pim.requests {
			if !r.Directory {
				out = append(out, pimObject{name: r.Name, target: r.pimTarget, requestor: r.RequestorID, body: s.scheduleRequestJSON(r)})
			}
		}
	}
	return out
}

// scheduleRequestBody is the body of a roleAssignmentScheduleRequests PUT.
type scheduleRequestBody struct {
	Properties *struct {
		PrincipalID                     string `json:"principalId"`
		RoleDefinitionID                string `json:"roleDefinitionId"`
		RequestType                     string `json:"requestType"`
		LinkedRoleEligibilityScheduleID string `json:"linkedRoleEligibilityScheduleId"`
		Justification                   string `json:"justification"`
		Condition                       string `json:"condition"`
		ConditionVersion                string `json:"conditionVersion"`
		ScheduleInfo                    *struct {
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
	} `json:"properties"`
}

// putScheduleRequest creates a role assignment schedule request (201).
func (s *Server) putScheduleRequest(req armRequest) {
	name := strings.ToLower(req.rest[1])
	if !isGUID(name) {
		writeARMError(req.w, http.StatusBadRequest, codeBadRequest, fmt.Sprintf("The role assignment schedule request name '%s' is not valid; it must be a GUID.", req.rest[1]))
		return
	}
	var body scheduleRequestBody
	if !readJSON(req.w, req.r, &body) {
		return
	}
	if body.Properties == nil {
		writeARMError(req.w, http.StatusBadRequest, "InvalidRequestContent",
			"The request content was invalid and could not be deserialized: 'properties' is required.")
		return
	}
	p := body.Properties
	if !slices.Contains(requestTypes, p.RequestType) {
		writeARMError(req.w, http.StatusBadRequest, "InvalidRequestContent", fmt.Sprintf(
			"The request content was invalid and could not be deserialized: requestType '%s' is not one of %s.", p.RequestType, strings.Join(requestTypes, ", ")))
		return
	}
	guid, ok := roleDefinitionGUID(p.RoleDefinitionID)
	if !ok || isGUID(p.RoleDefinitionID) {
		writeARMError(req.w, http.StatusBadRequest, "InvalidRoleDefinitionId", fmt.Sprintf("The role definition ID '%s' is not valid.", p.RoleDefinitionID))
		return
	}
	if !isGUID(p.PrincipalID) {
		writeARMError(req.w, http.StatusBadRequest, "InvalidPrincipalId", "A valid principal ID must be provided for role assignment.")
		return
	}
	r := &pimRequest{
		pimTarget:   pimTarget{Scope: req.scope, RoleGUID: guid, PrincipalID: strings.ToLower(p.PrincipalID)},
		Name:        name,
		RequestType: p.RequestType, Justification: p.Justification,
		LinkedEligibility: strings.ToLower(lastPathSegment(p.LinkedRoleEligibilityScheduleID)),
		Condition:         p.Condition, ConditionVersion: p.ConditionVersion,
	}
	if si := p.ScheduleInfo; si != nil {
		if si.StartDateTime != nil {
			r.Start = *si.StartDateTime
		}
		if e := si.Expiration; e != nil {
			r.ExpirationType = canonicalExpiration(e.Type)
			if e.Duration != nil {
				r.Duration = *e.Duration
			}
			if e.EndDateTime != nil {
				r.EndDateTime = *e.EndDateTime
			}
		}
	}
	if r.ExpirationType == "" {
		r.ExpirationType = expNoExpiration
	}
	if t := p.TicketInfo; t != nil {
		r.TicketNumber, r.TicketSystem = derefString(t.TicketNumber), derefString(t.TicketSystem)
	}

	// Admin requests need the right to write role assignments at the scope.
	if strings.HasPrefix(r.RequestType, "Admin") &&
		!s.authorize(req, "Microsoft.Authorization/roleAssignments/write", req.scope, req.scope.String()+"/providers/Microsoft.Authorization/roleAssignmentScheduleRequests/"+name) {
		return
	}
	caller := pimCaller{ObjectID: req.caller.ObjectID, IsApp: req.caller.AppID != "", MFA: s.tokenHasMFA(req.r),
		ACRS: s.tokenClaimList(req.r, "acrs")}
	if perr := s.submitPIMRequest(caller, r); perr != nil {
		writeARMError(req.w, perr.status, perr.code, perr.message)
		return
	}
	s.st.mu.Lock()
	out := s.scheduleRequestJSON(r)
	s.st.mu.Unlock()
	writeJSON(req.w, http.StatusCreated, out)
}

// cancelScheduleRequest serves POST .../{name}/cancel: 200 with no body.
func (s *Server) cancelScheduleRequest(req armRequest) {
	s.st.mu.Lock()
	admin := s.st.allowed(req.caller.ObjectID, "Microsoft.Authorization/roleAssignmentScheduleRequests/cancel/action",
		false, req.scope, s.now(), s.propagationDelay())
	s.st.mu.Unlock()
	caller := pimCaller{ObjectID: req.caller.ObjectID, IsApp: req.caller.AppID != ""}
	if perr := s.cancelPIMRequest(caller, req.rest[1], false, admin); perr != nil {
		writeARMError(req.w, perr.status, perr.code, perr.message)
		return
	}
	req.w.WriteHeader(http.StatusOK)
}

// tokenHasMFA reports whether the request's bearer token records a
// multi-factor sign-in (amr contains "mfa"). The emulator's token endpoint
// never issues such a token, as no workload identity can satisfy MFA.
func (s *Server) tokenHasMFA(r *http.Request) bool {
	return slices.Contains(s.tokenClaimList(r, "amr"), "mfa")
}

// tokenClaimList returns the string values of a list claim of the
// request's bearer token, such as amr or acrs; nil when it has none. The
// emulator's token endpoint never sets acrs, because Conditional Access
// authentication contexts apply to user sign-ins only.
func (s *Server) tokenClaimList(r *http.Request, name string) []string {
	_, raw, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	claims, err := s.entra.parse(strings.TrimSpace(raw))
	if err != nil {
		return nil
	}
	values, _ := claims[name].([]any)
	var out []string
	for _, v := range values {
		if s, ok := v.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func derefString(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func lastPathSegment(id string) string {
	id = strings.TrimRight(id, "/")
	return id[strings.LastIndex(id, "/")+1:]
}

// pimResourceID returns the ARM id of a PIM object; the type segment is
// capitalized as ARM writes it (".../RoleEligibilitySchedules/NAME").
func pimResourceID(scope ResourceID, typ, name string) string {
	prefix := scope.String()
	if prefix == "/" {
		prefix = ""
	}
	return prefix + "/providers/Microsoft.Authorization/" + typ + "/" + name
}

// expandedProperties describes scope, role and principal by name, as ARM
// adds them to every PIM object.
func (s *Server) expandedProperties(t pimTarget) map[string]any {
	scopeType, scopeName := "subscription", ""
	switch {
	case t.Scope.IsResource():
		scopeType, scopeName = "resource", t.Scope.Name()
	case t.Scope.ResourceGroup != "":
		scopeType, scopeName = "resourcegroup", t.Scope.ResourceGroup
	case t.Scope.Subscription != "":
		scopeName = s.st.subs[strings.ToLower(t.Scope.Subscription)].DisplayName
	default:
		scopeType, scopeName = "managementgroup", t.Scope.ManagementGroup
	}
	principal := map[string]any{"id": t.PrincipalID, "displayName": "", "email": nil, "type": t.PrincipalType}
	if p, ok := s.st.principals[t.PrincipalID]; ok {
		principal["displayName"] = p.DisplayName
		if p.Type == PrincipalUser {
			principal["email"] = p.DisplayName
		}
	}
	role := s.st.roles[t.RoleGUID]
	return map[string]any{
		"scope":          map[string]any{"id": t.Scope.String(), "displayName": scopeName, "type": scopeType},
		"roleDefinition": map[string]any{"id": roleDefinitionIDAt(t.Scope, t.RoleGUID), "displayName": role.RoleName, "type": role.RoleType},
		"principal":      principal,
	}
}

// expirationJSON writes ARM's scheduleInfo.expiration, null fields kept.
func expirationJSON(typ, duration string, end time.Time) map[string]any {
	out := map[string]any{"type": typ, "endDateTime": nil, "duration": nil}
	switch typ {
	case expAfterDuration:
		out["duration"] = duration
	case expAfterDateTime:
		out["endDateTime"] = pimTime(end)
	}
	return out
}

func (s *Server) scheduleRequestJSON(r *pimRequest) map[string]any {
	var target, instance any
	if r.TargetSchedule != "" {
		target = pimResourceID(r.Scope, "roleAssignmentSchedules", r.TargetSchedule)
		instance = pimResourceID(r.Scope, "roleAssignmentScheduleInstances", r.TargetInstance)
	}
	var linked, approval any
	if r.LinkedEligibility != "" {
		linked = pimResourceID(r.Scope, "roleEligibilitySchedules", r.LinkedEligibility)
	}
	if r.ApprovalID != "" {
		approval = r.ApprovalID
	}
	props := map[string]any{
		"targetRoleAssignmentScheduleId":         target,
		"targetRoleAssignmentScheduleInstanceId": instance,
		"linkedRoleEligibilityScheduleId":        linked,
		"scope":                                  r.Scope.String(),
		"roleDefinitionId":                       roleDefinitionIDAt(r.Scope, r.RoleGUID),
		"principalId":                            r.PrincipalID,
		"principalType":                          r.PrincipalType,
		"requestType":                            r.RequestType,
		"status":                                 r.Status,
		"approvalId":                             approval,
		"scheduleInfo": map[string]any{
			"startDateTime": pimTime(r.Start),
			"expiration":    expirationJSON(r.ExpirationType, r.Duration, r.EndDateTime),
		},
		"ticketInfo":         map[string]any{"ticketNumber": nullable(r.TicketNumber), "ticketSystem": nullable(r.TicketSystem)},
		"justification":      nullable(r.Justification),
		"requestorId":        r.RequestorID,
		"createdOn":          pimTime(r.CreatedOn),
		"condition":          nullable(r.Condition),
		"conditionVersion":   nullable(r.ConditionVersion),
		"expandedProperties": s.expandedProperties(r.pimTarget),
	}
	return map[string]any{
		"properties": props,
		"name":       r.Name,
		"id":         pimResourceID(r.Scope, "RoleAssignmentScheduleRequests", r.Name),
		"type":       "Microsoft.Authorization/RoleAssignmentScheduleRequests",
	}
}

func (s *Server) eligibilityScheduleJSON(e *pimEligibility) map[string]any {
	return map[string]any{
		"properties": map[string]any{
			"scope": e.Scope.String(), "roleDefinitionId": roleDefinitionIDAt(e.Scope, e.RoleGUID),
			"principalId": e.PrincipalID, "principalType": e.PrincipalType, "status": statusProvisioned,
			"roleEligibilityScheduleRequestId": nil,
			"startDateTime":                    pimTime(e.Start), "endDateTime": pimTime(e.End),
			"memberType": "Direct", "createdOn": pimTime(e.CreatedOn), "updatedOn": pimTime(e.CreatedOn),
			"condition": nil, "conditionVersion": nil,
			"expandedProperties": s.expandedProperties(e.pimTarget),
		},
		"name": e.Name,
		"id":   pimResourceID(e.Scope, "RoleEligibilitySchedules", e.Name),
		"type": "Microsoft.Authorization/RoleEligibilitySchedules",
	}
}

func (s *Server) eligibilityInstanceJSON(e *pimEligibility) map[string]any {
	return map[string]any{
		"properties": map[string]any{
			"scope": e.Scope.String(), "roleDefinitionId": roleDefinitionIDAt(e.Scope, e.RoleGUID),
			"principalId": e.PrincipalID, "principalType": e.PrincipalType, "status": statusProvisioned,
			"roleEligibilityScheduleId": pimResourceID(e.Scope, "RoleEligibilitySchedules", e.Name),
			"startDateTime":             pimTime(e.Start), "endDateTime": pimTime(e.End),
			"memberType": "Direct", "createdOn": pimTime(e.CreatedOn),
			"condition": nil, "conditionVersion": nil,
			"expandedProperties": s.expandedProperties(e.pimTarget),
		},
		"name": e.InstanceName,
		"id":   pimResourceID(e.Scope, "RoleEligibilityScheduleInstances", e.InstanceName),
		"type": "Microsoft.Authorization/RoleEligibilityScheduleInstances",
	}
}

func (s *Server) assignmentScheduleJSON(sc *pimSchedule) map[string]any {
	props := s.assignmentCommonJSON(sc)
	props["roleAssignmentScheduleRequestId"] = pimResourceID(sc.Scope, "RoleAssignmentScheduleRequests", sc.RequestName)
	props["updatedOn"] = pimTime(sc.CreatedOn)
	return map[string]any{
		"properties": props,
		"name":       sc.Name,
		"id":         pimResourceID(sc.Scope, "RoleAssignmentSchedules", sc.Name),
		"type":       "Microsoft.Authorization/RoleAssignmentSchedules",
	}
}

func (s *Server) assignmentInstanceJSON(sc *pimSchedule) map[string]any {
	props := s.assignmentCommonJSON(sc)
	props["roleAssignmentScheduleId"] = pimResourceID(sc.Scope, "RoleAssignmentSchedules", sc.Name)
	var origin any
	if sc.Assignment != nil {
		origin = sc.Assignment.ID
	}
	props["originRoleAssignmentId"] = origin
	props["linkedRoleEligibilityScheduleInstanceId"] = nil
	if sc.LinkedEligibility != "" {
		for _, e := range s.pim.eligibilities {
			if e.Name == sc.LinkedEligibility {
				props["linkedRoleEligibilityScheduleInstanceId"] = pimResourceID(e.Scope, "RoleEligibilityScheduleInstances", e.InstanceName)
			}
		}
	}
	return map[string]any{
		"properties": props,
		"name":       sc.InstanceName,
		"id":         pimResourceID(sc.Scope, "RoleAssignmentScheduleInstances", sc.InstanceName),
		"type":       "Microsoft.Authorization/RoleAssignmentScheduleInstances",
	}
}

func (s *Server) assignmentCommonJSON(sc *pimSchedule) map[string]any {
	var linked any
	if sc.LinkedEligibility != "" {
		linked = pimResourceID(sc.Scope, "RoleEligibilitySchedules", sc.LinkedEligibility)
	}
	return map[string]any{
		"scope": sc.Scope.String(), "roleDefinitionId": roleDefinitionIDAt(sc.Scope, sc.RoleGUID),
		"principalId": sc.PrincipalID, "principalType": sc.PrincipalType,
		"linkedRoleEligibilityScheduleId": linked,
		"assignmentType":                  sc.AssignmentType, "memberType": "Direct", "status": statusProvisioned,
		"startDateTime": pimTime(sc.Start), "endDateTime": pimTime(sc.End),
		"condition": nullable(conditionOf(sc)), "conditionVersion": nullable(conditionVersionOf(sc)),
		"createdOn":          pimTime(sc.CreatedOn),
		"expandedProperties": s.expandedProperties(sc.pimTarget),
	}
}

func conditionOf(sc *pimSchedule) string {
	if sc.Assignment == nil {
		return ""
	}
	return sc.Assignment.Condition
}

func conditionVersionOf(sc *pimSchedule) string {
	if sc.Assignment == nil {
		return ""
	}
	return sc.Assignment.ConditionVersion
}

// servePolicies serves role management policies and their assignments.
// Every built-in role has a policy at every scope, named by policyName;
// reading them needs the type's read action.
func (s *Server) servePolicies(req armRequest, typ string) {
	if !s.authorize(req, pimReadAction(typ), req.scope, req.scope.String()) {
		return
	}
	f, err := parsePIMFilter(req.r.URL.Query().Get("$filter"))
	if err != nil || f.PrincipalID != "" || f.AsTarget || f.AsRequestor {
		writeARMError(req.w, http.StatusBadRequest, "InvalidFilter", fmt.Sprintf("The filter '%s' is not valid; use roleDefinitionId eq '{id}'.", req.r.URL.Query().Get("$filter")))
		return
	}
	s.st.mu.Lock()
	guids := make([]string, 0, len(s.st.roles))
	for g := range s.st.roles {
		guids = append(guids, g)
	}
	sort.Strings(guids)
	var out []map[string]any
	for _, g := range guids {
		t := pimTarget{Scope: req.scope, RoleGUID: g}
		if !f.matches(t, "", "") {
			continue
		}
		pol := s.policyFor(t)
		if typ == "rolemanagementpolicies" {
			out = append(out, s.policyJSON(req.scope, g, pol))
		} else {
			out = append(out, s.policyAssignmentJSON(req.scope, g, pol))
		}
	}
	s.st.mu.Unlock()

	if len(req.rest) == 2 {
		for _, o := range out {
			if strings.EqualFold(o["name"].(string), req.rest[1]) {
				writeJSON(req.w, http.StatusOK, o)
				return
			}
		}
		writeARMError(req.w, http.StatusNotFound, codeNotFound, fmt.Sprintf("The %s '%s' was not found at scope '%s'.", req.rest[0], req.rest[1], req.scope))
		return
	}
	if out == nil {
		out = []map[string]any{}
	}
	writeJSON(req.w, http.StatusOK, map[string]any{"value": out})
}

func (s *Server) policyJSON(scope ResourceID, roleGUID string, p pimPolicy) map[string]any {
	name := policyName(scope.Key(), roleGUID)
	rules := p.rules()
	return map[string]any{
		"properties": map[string]any{
			"scope": scope.String(), "displayName": nil, "description": nil,
			"isOrganizationDefault": !p.Seeded,
			"lastModifiedBy":        map[string]any{"id": nil, "displayName": "Admin", "type": nil, "email": nil},
			"lastModifiedDateTime":  nil,
			"rules":                 rules,
			"effectiveRules":        rules,
			"policyProperties":      map[string]any{"scope": s.expandedProperties(pimTarget{Scope: scope, RoleGUID: roleGUID})["scope"]},
		},
		"name": name,
		"id":   pimResourceID(scope, "roleManagementPolicies", name),
		"type": "Microsoft.Authorization/RoleManagementPolicies",
	}
}

func (s *Server) policyAssignmentJSON(scope ResourceID, roleGUID string, p pimPolicy) map[string]any {
	policy := policyName(scope.Key(), roleGUID)
	name := policy + "_" + roleGUID
	expanded := s.expandedProperties(pimTarget{Scope: scope, RoleGUID: roleGUID})
	policyID := pimResourceID(scope, "roleManagementPolicies", policy)
	return map[string]any{
		"properties": map[string]any{
			"scope": scope.String(), "roleDefinitionId": roleDefinitionIDAt(scope, roleGUID),
			"policyId": policyID, "effectiveRules": p.rules(),
			"policyAssignmentProperties": map[string]any{
				"scope": expanded["scope"], "roleDefinition": expanded["roleDefinition"],
				"policy": map[string]any{"id": policyID,
					"lastModifiedBy":       map[string]any{"id": nil, "displayName": "Admin", "type": nil, "email": nil},
					"lastModifiedDateTime": nil},
			},
		},
		"name": name,
		"id":   pimResourceID(scope, "roleManagementPolicyAssignments", name),
		"type": "Microsoft.Authorization/RoleManagementPolicyAssignment",
	}
}

// servePIMAdmin serves POST /_emulator/pim/approve/{name} and
// /_emulator/pim/deny/{name}, which act as the approver of a request that
// waits for approval, for ARM and Graph requests alike.
func (s *Server) servePIMAdmin(w http.ResponseWriter, r *http.Request) {
	if !s.checkAdminToken(w, r) {
		return
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/_emulator/pim/"), "/")
	if r.Method != http.MethodPost || len(parts) != 2 || (parts[0] != "approve" && parts[0] != "deny") {
		writeARMError(w, http.StatusNotFound, codeNotFound, "Unknown PIM admin endpoint; use POST /_emulator/pim/approve/{requestName} or /_emulator/pim/deny/{requestName}.")
		return
	}
	req, perr := s.decidePIMRequest(parts[1], parts[0] == "approve")
	if perr != nil {
		writeARMError(w, perr.status, perr.code, perr.message)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": req.Name, "status": req.Status})
}

// ApprovePIMRequest approves a request waiting for approval, as POST
// /_emulator/pim/approve/{name} does, and returns its new status.
func (s *Server) ApprovePIMRequest(name string) (string, error) {
	r, perr := s.decidePIMRequest(name, true)
	if perr != nil {
		return "", fmt.Errorf("approve PIM request %q: %w", name, perr)
	}
	return r.Status, nil
}

// checkAdminToken writes 401 unless the request carries the admin token.
func (s *Server) checkAdminToken(w http.ResponseWriter, r *http.Request) bool {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if ok && subtle.ConstantTimeCompare([]byte(token), []byte(s.adminToken)) == 1 {
		return true
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="elevate-emulator"`)
	writeARMError(w, http.StatusUnauthorized, "Unauthorized", "The admin endpoints need the emulator's admin token as a bearer token.")
	return false
}
