package emulator

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
)

// Supported api-version values per Microsoft.Authorization resource type
// (lower case), as listed in the azure-rest-api-specs authorization folders
// and sent by the Azure SDKs.
var authorizationAPIVersions = map[string][]string{
	"roleassignments": {"2015-07-01", "2017-10-01-preview", "2018-01-01-preview", "2018-09-01-preview",
		"2020-03-01-preview", "2020-04-01-preview", "2020-08-01-preview", "2020-10-01-preview",
		"2022-01-01-preview", "2022-04-01"},
	"roledefinitions": {"2015-07-01", "2018-01-01-preview", "2022-04-01", "2022-05-01-preview"},
	"permissions":     {"2015-07-01", "2018-01-01-preview", "2022-04-01", "2022-05-01-preview"},
	"locks":           {"2015-01-01", "2016-09-01", "2020-05-01"},

	// PIM types, served by servePIM.
	"roleeligibilityschedules":         pimAPIVersions,
	"roleeligibilityscheduleinstances": pimAPIVersions,
	"roleassignmentschedulerequests":   pimAPIVersions,
	"roleassignmentschedules":          pimAPIVersions,
	"roleassignmentscheduleinstances":  pimAPIVersions,
	"rolemanagementpolicies":           pimAPIVersions,
	"rolemanagementpolicyassignments":  pimAPIVersions,
}

// apiVersionFormat is the form of every ARM api-version.
var apiVersionFormat = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}(-preview|-beta|-alpha)?$`)

// armCaller is the authenticated principal of an ARM request.
type armCaller struct {
	bearerClaims
}

// clientName returns how AuthorizationFailed names the caller: the app id
// of a service principal, the UPN of a user.
func (c armCaller) clientName() string {
	if c.AppID != "" {
		return c.AppID
	}
	if c.UPN != "" {
		return c.UPN
	}
	return c.ObjectID
}

// serveARM handles every ARM path: the api-version check, authentication,
// then Microsoft.Authorization extension resources or plain resource reads.
func (s *Server) serveARM(w http.ResponseWriter, r *http.Request) {
	apiVersion := r.URL.Query().Get("api-version")
	if apiVersion == "" {
		writeARMError(w, http.StatusBadRequest, "MissingApiVersionParameter",
			"The api-version query parameter (?api-version=) is required for all requests.")
		return
	}
	caller, ok := s.authenticateARM(w, r)
	if !ok {
		return
	}

	scopePath, rest, isAuthz := splitExtension(r.URL.Path)
	if !isAuthz {
		s.serveResourceRead(w, r, caller, apiVersion)
		return
	}
	var scope ResourceID
	if scopePath != "/" {
		var err error
		if scope, err = ParseResourceID(scopePath); err != nil {
			// NOTE: ARM's exact code for an unparsable scope was not
			// confirmed; InvalidResourceId is a guess.
			writeARMError(w, http.StatusBadRequest, "InvalidResourceId",
				fmt.Sprintf("The scope '%s' is not a valid resource id.", scopePath))
			return
		}
	}
	if len(rest) == 0 {
		writeARMError(w, http.StatusNotFound, "InvalidResourceType", "The resource type '' could not be found in the namespace 'Microsoft.Authorization'.")
		return
	}

	typ := strings.ToLower(rest[0])
	versions, known := authorizationAPIVersions[typ]
	if !known {
		writeARMError(w, http.StatusNotFound, "InvalidResourceType", fmt.Sprintf(
			"The resource type '%s' could not be found in the namespace 'Microsoft.Authorization' for api version '%s'.", rest[0], apiVersion))
		return
	}
	if !slices.Contains(versions, apiVersion) {
		writeARMError(w, http.StatusBadRequest, "InvalidApiVersionParameter", fmt.Sprintf(
			"The api-version '%s' is invalid. The supported versions are '%s'.", apiVersion, strings.Join(versions, ",")))
		return
	}

	s.st.mu.Lock()
	code, msg, exists := s.st.scopeExists(scope)
	s.st.mu.Unlock()
	if !exists {
		writeARMError(w, http.StatusNotFound, code, msg)
		return
	}

	req := armRequest{w: w, r: r, caller: caller, scope: scope, rest: rest}
	switch typ {
	case "roleassignments":
		s.serveRoleAssignments(req)
	case "roledefinitions":
		s.serveRoleDefinitions(req)
	case "permissions":
		s.servePermissions(req)
	case "locks":
		s.serveLocks(req)
	default:
		s.servePIM(req, typ)
	}
}

// armRequest bundles what the Microsoft.Authorization handlers share.
type armRequest struct {
	w      http.ResponseWriter
	r      *http.Request
	caller armCaller
	scope  ResourceID
	rest   []string // path segments after /providers/Microsoft.Authorization/
}

// authenticateARM verifies the bearer token and writes ARM's 401 when it
// is missing or not acceptable.
func (s *Server) authenticateARM(w http.ResponseWriter, r *http.Request) (armCaller, bool) {
	bc, problem := s.verifyBearer(r, armAudiences)
	var code, msg string
	switch problem {
	case tokenValid:
		return armCaller{bc}, true
	case tokenMissing:
		code, msg = "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing."
	case tokenExpired:
		code = "ExpiredAuthenticationToken"
		msg = fmt.Sprintf("The access token expiry UTC time '%s' is earlier than current UTC time '%s'.",
			bc.Expiry.UTC().Format("1/2/2006 3:04:05 PM"), s.now().UTC().Format("1/2/2006 3:04:05 PM"))
	case tokenWrongAudience:
		code = "InvalidAuthenticationTokenAudience"
		msg = fmt.Sprintf("The access token has been obtained for wrong audience or resource '%s'. It should exactly match with one of the allowed audiences '%s'.",
			bc.Audience, strings.Join([]string{"https://management.core.windows.net/", "https://management.core.windows.net", "https://management.azure.com/", "https://management.azure.com"}, "','"))
	default:
		code, msg = "InvalidAuthenticationToken", "The access token is invalid."
	}
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(
		`Bearer authorization_uri="%s/", error="invalid_token", error_description="%s"`, s.url, strings.ReplaceAll(msg, `"`, "'")))
	writeARMError(w, http.StatusUnauthorized, code, msg)
	return armCaller{}, false
}

// authorize checks an ARM action for the caller at scope and writes 403
// AuthorizationFailed naming target (the full id the request addressed).
func (s *Server) authorize(req armRequest, action string, scope ResourceID, target string) bool {
	s.st.mu.Lock()
	ok := s.st.allowed(req.caller.ObjectID, action, false, scope, s.now(), s.propagationDelay())
	s.st.mu.Unlock()
	if ok {
		return true
	}
	writeARMError(req.w, http.StatusForbidden, "AuthorizationFailed", fmt.Sprintf(
		"The client '%s' with object id '%s' does not have authorization to perform action '%s' over scope '%s' or the scope is invalid. If access was recently granted, please refresh your credentials.",
		req.caller.clientName(), req.caller.ObjectID, action, target))
	return false
}

// servePermissions returns the caller's effective permissions at the scope,
// one entry per role of an effective assignment, as armauthorization's
// PermissionsClient reads them. Any authenticated caller may ask.
func (s *Server) servePermissions(req armRequest) {
	if req.r.Method != http.MethodGet || len(req.rest) != 1 {
		writeARMError(req.w, http.StatusMethodNotAllowed, "MethodNotAllowed", "The requested method is not allowed.")
		return
	}
	s.st.mu.Lock()
	perms := s.st.permissionsAt(req.caller.ObjectID, req.scope, s.now(), s.propagationDelay())
	s.st.mu.Unlock()
	out := make([]map[string][]string, 0, len(perms))
	for _, p := range perms {
		out = append(out, permissionJSON(p))
	}
	writeJSON(req.w, http.StatusOK, map[string]any{"value": out})
}

// permissionJSON writes all four lists, empty rather than null, as ARM does.
func permissionJSON(p Permission) map[string][]string {
	nonNil := func(v []string) []string {
		if v == nil {
			return []string{}
		}
		return v
	}
	return map[string][]string{
		"actions":        nonNil(p.Actions),
		"notActions":     nonNil(p.NotActions),
		"dataActions":    nonNil(p.DataActions),
		"notDataActions": nonNil(p.NotDataActions),
	}
}

// serveLocks lists the management locks at, above and below the scope, so a
// caller can tell which locks would block a delete.
func (s *Server) serveLocks(req armRequest) {
	if req.r.Method != http.MethodGet || len(req.rest) != 1 {
		writeARMError(req.w, http.StatusMethodNotAllowed, "MethodNotAllowed", "The requested method is not allowed.")
		return
	}
	if !s.authorize(req, "Microsoft.Authorization/locks/read", req.scope, req.scope.String()) {
		return
	}
	s.st.mu.Lock()
	keys := s.st.ancestors(req.scope)
	prefix := req.scope.Key() + "/"
	var out []map[string]any
	for _, l := range s.st.locks {
		k := l.ScopeID.Key()
		if !slices.Contains(keys, k) && !strings.HasPrefix(k, prefix) && req.scope.Key() != "/" {
			continue
		}
		props := map[string]any{"level": l.Level}
		if l.Notes != "" {
			props["notes"] = l.Notes
		}
		scopePrefix := l.ScopeID.String()
		if scopePrefix == "/" {
			scopePrefix = ""
		}
		out = append(out, map[string]any{
			"id":         scopePrefix + "/providers/Microsoft.Authorization/locks/" + l.Name,
			"type":       "Microsoft.Authorization/locks",
			"name":       l.Name,
			"properties": props,
		})
	}
	s.st.mu.Unlock()
	if out == nil {
		out = []map[string]any{}
	}
	writeJSON(req.w, http.StatusOK, map[string]any{"value": out})
}

// serveResourceRead serves GET of a subscription, resource group or
// resource by id, with the read action of its type.
func (s *Server) serveResourceRead(w http.ResponseWriter, r *http.Request, caller armCaller, apiVersion string) {
	id, err := ParseResourceID(r.URL.Path)
	if err != nil || id.Subscription == "" {
		writeARMError(w, http.StatusBadRequest, "InvalidResourceId",
			fmt.Sprintf("The resource id '%s' is not valid.", r.URL.Path))
		return
	}
	if !apiVersionFormat.MatchString(apiVersion) {
		writeARMError(w, http.StatusBadRequest, "InvalidApiVersionParameter",
			fmt.Sprintf("The api-version '%s' is invalid.", apiVersion))
		return
	}
	if r.Method != http.MethodGet {
		writeARMError(w, http.StatusMethodNotAllowed, "MethodNotAllowed",
			"The emulator serves only GET for resources other than Microsoft.Authorization ones.")
		return
	}

	s.st.mu.Lock()
	code, msg, exists := s.st.scopeExists(id)
	info, seeded := s.st.resources[id.Key()]
	sub := s.st.subs[strings.ToLower(id.Subscription)]
	s.st.mu.Unlock()
	if exists && !seeded {
		code, msg, exists = "ResourceNotFound", fmt.Sprintf("The Resource '%s/%s' under resource group '%s' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
			id.Type(), id.Name(), id.ResourceGroup), false
	}
	if !exists {
		writeARMError(w, http.StatusNotFound, code, msg)
		return
	}

	req := armRequest{w: w, r: r, caller: caller, scope: id}
	switch {
	case id.ResourceGroup == "":
		// ARM lets any principal with access anywhere in a subscription
		// read the subscription itself.
		if !s.hasAccessWithin(caller.ObjectID, id) && !s.authorize(req, "Microsoft.Resources/subscriptions/read", id, id.String()) {
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"id":                   id.String(),
			"subscriptionId":       sub.ID,
			"displayName":          sub.DisplayName,
			"tenantId":             s.TenantID(),
			"state":                "Enabled",
			"authorizationSource":  "RoleBased",
			"subscriptionPolicies": map[string]any{"locationPlacementId": "Public_2014-09-01", "quotaId": "PayAsYouGo_2014-09-01", "spendingLimit": "Off"},
		})
	case !id.IsResource():
		if !s.authorize(req, "Microsoft.Resources/subscriptions/resourceGroups/read", id, id.String()) {
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"id":         id.String(),
			"name":       id.ResourceGroup,
			"type":       "Microsoft.Resources/resourceGroups",
			"location":   info.Location,
			"properties": map[string]any{"provisioningState": "Succeeded"},
		})
	default:
		if !s.authorize(req, id.Type()+"/read", id, id.String()) {
			return
		}
		props := map[string]any{"provisioningState": "Succeeded"}
		if info.Vault {
			props = map[string]any{
				"tenantId":                  s.TenantID(),
				"vaultUri":                  s.VaultURL(id.Name()),
				"enableRbacAuthorization":   true,
				"enableSoftDelete":          true,
				"softDeleteRetentionInDays": 90,
				"sku":                       map[string]any{"family": "A", "name": "standard"},
				"provisioningState":         "Succeeded",
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"id":         id.String(),
			"name":       id.Name(),
			"type":       id.Type(),
			"location":   info.Location,
			"properties": props,
		})
	}
}

// hasAccessWithin reports whether the principal holds an effective
// assignment at, above or below the subscription.
func (s *Server) hasAccessWithin(principalID string, sub ResourceID) bool {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	now, delay := s.now(), s.propagationDelay()
	prefix := sub.Key()
	for _, a := range s.st.assignments {
		if !strings.EqualFold(a.PrincipalID, principalID) || !a.effective(now, delay) {
			continue
		}
		k := strings.ToLower(a.Scope)
		if k == prefix || strings.HasPrefix(k, prefix+"/") || slices.Contains(s.st.ancestors(sub), k) {
			return true
		}
	}
	return false
}
