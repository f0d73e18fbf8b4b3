package emulator

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// graphAppID is Microsoft Graph's application id, which Entra writes as
// the aud of v1 Graph tokens.
const graphAppID = "00000003-0000-0000-c000-000000000000"

// graphAudiences are the token audiences the emulated Graph accepts: the
// public Graph resource, its app id, and the emulator's own URL, which is
// the resource a client asks for when it is given URL() as Graph endpoint.
func (s *Server) graphAudiences() []string {
	return []string{"https://graph.microsoft.com", "https://graph.microsoft.com/", graphAppID, s.url, s.url + "/"}
}

// GraphEndpoint returns the base URL of the emulated Microsoft Graph; the
// versions follow it ("/v1.0/...", "/beta/...").
func (s *Server) GraphEndpoint() string { return s.url }

// Graph application permissions by operation. A caller needs one of the
// listed app roles (seeded per principal as graphAppRoles).
var (
	graphReadDirectory   = []string{"Directory.Read.All", "Directory.ReadWrite.All"}
	graphReadRoles       = []string{"RoleManagement.Read.Directory", "RoleManagement.Read.All", "RoleManagement.ReadWrite.Directory", "Directory.Read.All"}
	graphReadAssignments = []string{"RoleManagement.Read.Directory", "RoleManagement.Read.All", "RoleManagement.ReadWrite.Directory",
		"RoleAssignmentSchedule.Read.Directory", "RoleAssignmentSchedule.ReadWrite.Directory"}
	graphReadEligibilities = []string{"RoleManagement.Read.Directory", "RoleManagement.Read.All", "RoleManagement.ReadWrite.Directory",
		"RoleEligibilitySchedule.Read.Directory", "RoleEligibilitySchedule.ReadWrite.Directory"}
	graphWriteAssignments = []string{"RoleManagement.ReadWrite.Directory", "RoleAssignmentSchedule.ReadWrite.Directory"}
)

// graphRequest bundles what the Graph handlers share.
type graphRequest struct {
	w       http.ResponseWriter
	r       *http.Request
	caller  bearerClaims
	version string   // "v1.0" or "beta"
	path    []string // segments after the version, as sent
}

// writeGraphError writes Graph's error envelope with its innerError.
func writeGraphError(w http.ResponseWriter, r *http.Request, status int, code, message string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{
		"code":    code,
		"message": message,
		"innerError": map[string]any{
			"date":              time.Now().UTC().Format("2006-01-02T15:04:05"),
			"request-id":        uuid.NewString(),
			"client-request-id": r.Header.Get("client-request-id"),
		},
	}})
}

// serveGraph handles /v1.0/... and /beta/.... Both versions are served
// alike: every field Elevate reads exists in v1.0, so beta adds nothing
// here.
func (s *Server) serveGraph(w http.ResponseWriter, r *http.Request) {
	version, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	var path []string
	for _, seg := range strings.Split(rest, "/") {
		if seg != "" {
			path = append(path, seg)
		}
	}
	bc, problem := s.verifyBearer(r, s.graphAudiences())
	switch problem {
	case tokenValid:
	case tokenMissing:
		writeGraphError(w, r, http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token is empty.")
		return
	case tokenExpired:
		writeGraphError(w, r, http.StatusUnauthorized, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
		return
	case tokenWrongAudience:
		writeGraphError(w, r, http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.")
		return
	default:
		writeGraphError(w, r, http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token validation failure.")
		return
	}
	gr := graphRequest{w: w, r: r, caller: bc, version: version, path: path}
	lower := strings.ToLower(strings.Join(path, "/"))
	switch {
	case len(path) == 2 && strings.EqualFold(path[0], "directoryObjects"):
		s.getDirectoryObject(gr)
	case strings.HasPrefix(lower, "rolemanagement/directory/roledefinitions"):
		s.serveDirectoryRoleDefinitions(gr)
	case strings.HasPrefix(lower, "rolemanagement/directory/roleassignmentschedulerequests"):
		s.serveGraphScheduleRequests(gr)
	case lower == "rolemanagement/directory/roleeligibilityschedules" || strings.HasPrefix(lower, "rolemanagement/directory/roleeligibilityschedules/"):
		s.serveGraphEligibilities(gr)
	case lower == "rolemanagement/directory/roleassignmentscheduleinstances" || strings.HasPrefix(lower, "rolemanagement/directory/roleassignmentscheduleinstances/"):
		s.serveGraphInstances(gr)
	case lower == "policies/rolemanagementpolicyassignments":
		s.serveGraphPolicyAssignments(gr)
	default:
		writeGraphError(w, r, http.StatusBadRequest, "BadRequest", fmt.Sprintf("Resource not found for the segment '%s'.", strings.Join(path, "/")))
	}
}

// graphAllowed writes 403 Authorization_RequestDenied unless the caller
// holds one of the app roles.
func (s *Server) graphAllowed(gr graphRequest, roles []string) bool {
	s.st.mu.Lock()
	p, ok := s.st.principals[strings.ToLower(gr.caller.ObjectID)]
	var granted []string
	if ok {
		granted = p.GraphAppRoles
	}
	s.st.mu.Unlock()
	for _, g := range granted {
		if slices.ContainsFunc(roles, func(r string) bool { return strings.EqualFold(r, g) }) {
			return true
		}
	}
	writeGraphError(gr.w, gr.r, http.StatusForbidden, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
	return false
}

// graphContext returns the @odata.context of a response.
func (s *Server) graphContext(gr graphRequest, fragment string) string {
	return s.url + "/" + gr.version + "/$metadata#" + fragment
}

// getDirectoryObject returns a user, group or service principal with its
// @odata.type, which callers use to learn a principal's kind.
func (s *Server) getDirectoryObject(gr graphRequest) {
	if gr.r.Method != http.MethodGet {
		writeGraphError(gr.w, gr.r, http.StatusMethodNotAllowed, "Request_BadRequest", "The emulator serves only GET for directoryObjects.")
		return
	}
	if !s.graphAllowed(gr, graphReadDirectory) {
		return
	}

	id := gr.path[1]
	now := s.now()
	s.st.mu.Lock()
	p, ok := s.st.principals[strings.ToLower(id)]
	var found Principal
	if ok {
		found = *p
	}
	s.st.mu.Unlock()
	if !ok || now.Before(found.CreatedAt.Add(s.cfg.ReplicationDelay)) {
		writeGraphError(gr.w, gr.r, http.StatusNotFound, "Request_ResourceNotFound", fmt.Sprintf(
			"Resource '%s' does not exist or one of its queried reference-property objects are not present.", id))
		return
	}

	out := map[string]any{
		"@odata.context":  s.graphContext(gr, "directoryObjects/$entity"),
		"id":              found.ObjectID,
		"deletedDateTime": nil,
		"displayName":     found.DisplayName,
	}
	switch found.Type {
	case PrincipalServicePrincipal:
		out["@odata.type"] = "#microsoft.graph.servicePrincipal"
		out["appId"] = found.AppID
		out["servicePrincipalType"] = "Application"
	case PrincipalUser:
		out["@odata.type"] = "#microsoft.graph.user"
		out["userPrincipalName"] = found.DisplayName
	case PrincipalGroup:
		out["@odata.type"] = "#microsoft.graph.group"
		out["securityEnabled"] = true
		out["mailEnabled"] = false
	}
	writeJSON(gr.w, http.StatusOK, out)
}

// directoryRole is a built-in Entra role definition, by template id.
type directoryRole struct {
	ID          string
	DisplayName string
	Description string
}

// builtinDirectoryRoles are Entra built-in roles with their template ids
// from the Microsoft Entra built-in roles reference.
// NOTE: rolePermissions are served empty; the emulator does not model what
// an Entra role allows.
var builtinDirectoryRoles = []directoryRole{
	{"62e90394-69f5-4237-9190-012177145e10", "Global Administrator", "Can manage all aspects of Microsoft Entra ID and Microsoft services that use Microsoft Entra identities."},
	{"f2ef992c-3afb-46b9-b7cf-a126ee74c451", "Global Reader", "Can read everything that a Global Administrator can, but not update anything."},
	{"9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3", "Application Administrator", "Can create and manage all aspects of app registrations and enterprise apps."},
	{"e8611ab8-c189-46e8-94e1-60213ab1f814", "Privileged Role Administrator", "Can manage role assignments in Microsoft Entra ID, and all aspects of Privileged Identity Management."},
	{"fdd7a751-b60b-444a-984c-02652fe8fa1c", "Groups Administrator", "Members of this role can create/manage groups, create/manage groups settings like naming and expiration policies, and view groups activity and audit reports."},
	{"31392ffb-586c-42d1-9346-e59415a2cc4e", "Exchange Recipient Administrator", "Can create or update Exchange Online recipients within the Exchange Online organization."},
	{"8424c6f0-a189-499e-bbd0-26c1753c96d4", "Attribute Definition Administrator", "Define and manage the definition of custom security attributes."},
	{"fe930be7-5e62-47db-91af-98c3a49a38b1", "User Administrator", "Can manage all aspects of users and groups, including resetting passwords for limited admins."},
}

// resolveDirectoryRole finds an Entra role by template id or display name.
func (ps *pimStore) resolveDirectoryRole(id, name string) (directoryRole, error) {
	switch {
	case id != "" && name != "":
		return directoryRole{}, fmt.Errorf("set roleDefinitionId or roleName, not both")
	case id != "":
		if r, ok := ps.directoryRoles[strings.ToLower(id)]; ok {
			return r, nil
		}
		return directoryRole{}, fmt.Errorf("unknown Entra role template id %q; the emulator knows only its built-in list", id)
	case name != "":
		for _, r := range ps.directoryRoles {
			if strings.EqualFold(r.DisplayName, name) {
				return r, nil
			}
		}
		return directoryRole{}, fmt.Errorf("unknown Entra role name %q", name)
	}
	return directoryRole{}, fmt.Errorf("roleDefinitionId or roleName is required")
}

func (s *Server) serveDirectoryRoleDefinitions(gr graphRequest) {
	if gr.r.Method != http.MethodGet || len(gr.path) > 4 {
		writeGraphError(gr.w, gr.r, http.StatusMethodNotAllowed, "Request_BadRequest", "The emulator serves only GET for roleDefinitions.")
		return
	}
	if !s.graphAllowed(gr, graphReadRoles) {
		return
	}
	toJSON := func(r directoryRole) map[string]any {
		return map[string]any{
			"id": r.ID, "description": r.Description, "displayName": r.DisplayName,
			"isBuiltIn": true, "isEnabled": true, "resourceScopes": []string{"/"},
			"templateId": r.ID, "version": "1",
			"rolePermissions": []map[string]any{{"allowedResourceActions": []string{}, "condition": nil}},
		}
	}
	if len(gr.path) == 4 {
		r, ok := s.pim.directoryRoles[strings.ToLower(gr.path[3])]
		if !ok {
			writeGraphError(gr.w, gr.r, http.StatusNotFound, "Request_ResourceNotFound", fmt.Sprintf(
				"Resource '%s' does not exist or one of its queried reference-property objects are not present.", gr.path[3]))
			return
		}
		out := toJSON(r)
		out["@odata.context"] = s.graphContext(gr, "roleManagement/directory/roleDefinitions/$entity")
		writeJSON(gr.w, http.StatusOK, out)
		return
	}
	value := []map[string]any{}
	for _, r := range builtinDirectoryRoles {
		value = append(value, toJSON(r))
	}
	writeJSON(gr.w, http.StatusOK, map[string]any{
		"@odata.context": s.graphContext(gr, "roleManagement/directory/roleDefinitions"), "value": value})
}

// graphFilter is a parsed Graph $filter: property eq 'value' terms joined
// by "and", by lower-case property name.
type graphFilter map[string]string

// parseGraphFilter parses the subset of OData $filter the emulated Graph
// lists accept: equality on the allowed properties, joined by "and".
func parseGraphFilter(s string, allowed ...string) (graphFilter, error) {
	f := graphFilter{}
	if strings.TrimSpace(s) == "" {
		return f, nil
	}
	terms, err := parseFilter(s)
	if err != nil {
		return nil, err
	}
	for _, t := range terms {
		if t.Call || !slices.ContainsFunc(allowed, func(a string) bool { return strings.EqualFold(a, t.Name) }) {
			return nil, fmt.Errorf("%w %q: unsupported term %q; filter on %s with eq", errInvalidFilter, s, t.Name, strings.Join(allowed, ", "))
		}
		if _, dup := f[t.Name]; dup {
			return nil, fmt.Errorf("%w %q: %q appears twice", errInvalidFilter, s, t.Name)
		}
		f[t.Name] = t.Value
	}
	return f, nil
}

// match reports whether the named property value passes the filter;
// values compare case-insensitively, as Graph compares ids.
func (f graphFilter) match(property, value string) bool {
	want, ok := f[strings.ToLower(property)]
	return !ok || strings.EqualFold(want, value)
}
