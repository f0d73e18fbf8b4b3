package emulator

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
)

// definitionJSON is a role definition on the wire.
type definitionJSON struct {
	Properties definitionPropertiesJSON `json:"properties"`
	ID         string                   `json:"id"`
	Type       string                   `json:"type"`
	Name       string                   `json:"name"`
}

type definitionPropertiesJSON struct {
	RoleName         string                `json:"roleName"`
	Type             string                `json:"type"`
	Description      string                `json:"description"`
	AssignableScopes []string              `json:"assignableScopes"`
	Permissions      []map[string][]string `json:"permissions"`
}

func toDefinitionJSON(scope ResourceID, r RoleDefinition) definitionJSON {
	perms := make([]map[string][]string, 0, len(r.Permissions))
	for _, p := range r.Permissions {
		perms = append(perms, permissionJSON(p))
	}
	return definitionJSON{
		ID:   roleDefinitionIDAt(scope, r.Name),
		Type: "Microsoft.Authorization/roleDefinitions",
		Name: r.Name,
		Properties: definitionPropertiesJSON{
			RoleName:         r.RoleName,
			Type:             r.RoleType,
			Description:      r.Description,
			AssignableScopes: r.AssignableScopes,
			Permissions:      perms,
		},
	}
}

// serveRoleDefinitions serves GET by id and list with $filter. Any
// authenticated caller may read role definitions, as in Azure, where
// built-in roles are visible to every principal of the tenant.
func (s *Server) serveRoleDefinitions(req armRequest) {
	if req.r.Method != http.MethodGet || len(req.rest) > 2 {
		writeARMError(req.w, http.StatusMethodNotAllowed, "MethodNotAllowed",
			"The emulator serves only GET for role definitions; custom roles are not supported.")
		return
	}
	if len(req.rest) == 2 {
		guid := strings.ToLower(req.rest[1])
		r, ok := s.st.roles[guid]
		if !ok {
			writeARMError(req.w, http.StatusNotFound, "RoleDefinitionDoesNotExist", fmt.Sprintf(
				"The specified role definition with ID '%s' does not exist.", req.rest[1]))
			return
		}
		writeJSON(req.w, http.StatusOK, toDefinitionJSON(req.scope, r))
		return
	}
	f, err := parseDefinitionFilter(req.r.URL.Query().Get("$filter"))
	if err != nil {
		writeARMError(req.w, http.StatusBadRequest, "InvalidFilter", fmt.Sprintf("The filter is not valid: %v.", err))
		return
	}
	out := []definitionJSON{}
	for _, r := range s.st.roles {
		if f.RoleName != "" && !strings.EqualFold(r.RoleName, f.RoleName) {
			continue
		}
		if f.Type != "" && !strings.EqualFold(r.RoleType, f.Type) {
			continue
		}
		out = append(out, toDefinitionJSON(req.scope, r))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Properties.RoleName < out[j].Properties.RoleName })
	writeJSON(req.w, http.StatusOK, map[string]any{"value": out})
}
