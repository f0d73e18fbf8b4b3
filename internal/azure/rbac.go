package azure

import (
	"context"
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

// Assignment is an Azure RBAC role assignment.
type Assignment struct {
	ID               string
	Name             string
	Scope            string
	RoleDefinitionID string
	PrincipalID      string
	PrincipalType    string
	Description      string
	Condition        string
	ConditionVersion string
	CreatedOn        time.Time
}

// RoleDefinition is an Azure role with its permissions flattened.
type RoleDefinition struct {
	ID             string
	GUID           string
	Name           string
	Type           string // BuiltInRole or CustomRole
	Actions        []string
	NotActions     []string
	DataActions    []string
	NotDataActions []string
}

// Permissions are a caller's effective actions at one scope.
type Permissions struct {
	Actions, NotActions, DataActions, NotDataActions []string
}

// Resource is what a generic ARM GET returns about a scope.
type Resource struct {
	ID, Name, Type, Location string
}

// Lock is a management lock that applies at a scope.
type Lock struct {
	ID, Name, Level string
}

// RBAC performs the role assignment operations Elevate needs, through the
// armauthorization v2 clients and, for the calls those clients lack, through
// the same ARM pipeline.
type RBAC struct {
	assignments *armauthorization.RoleAssignmentsClient
	definitions *armauthorization.RoleDefinitionsClient
	raw         *arm.Client
}

// NewRBAC builds the clients. The subscription id only fills a constructor
// argument: every call Elevate makes names its scope in full.
func NewRBAC(cred azcore.TokenCredential, opts *arm.ClientOptions) (*RBAC, error) {
	const anySubscription = "00000000-0000-0000-0000-000000000000"
	assignments, err := armauthorization.NewRoleAssignmentsClient(anySubscription, cred, opts)
	if err != nil {
		return nil, fmt.Errorf("create role assignments client: %w", err)
	}
	definitions, err := armauthorization.NewRoleDefinitionsClient(cred, opts)
	if err != nil {
		return nil, fmt.Errorf("create role definitions client: %w", err)
	}
	raw, err := arm.NewClient("elevate", "v0.1.0", cred, opts)
	if err != nil {
		return nil, fmt.Errorf("create ARM client: %w", err)
	}
	return &RBAC{assignments: assignments, definitions: definitions, raw: raw}, nil
}

// CreateAssignment PUTs a role assignment. It returns ErrAssignmentExists when
// the same principal, role and scope are assigned under another name.
func (c *RBAC) CreateAssignment(ctx context.Context, a Assignment) (Assignment, error) {
	props := &armauthorization.RoleAssignmentProperties{
		PrincipalID:      to.Ptr(a.PrincipalID),
		RoleDefinitionID: to.Ptr(a.RoleDefinitionID),
		PrincipalType:    to.Ptr(armauthorization.PrincipalType(a.PrincipalType)),
	}
	if a.Description != "" {
		props.Description = to.Ptr(a.Description)
	}
	resp, err := c.assignments.Create(ctx, a.Scope, a.Name,
		armauthorization.RoleAssignmentCreateParameters{Properties: props}, nil)
	if err != nil {
		return Assignment{}, Classify(err)
	}
	return fromSDKAssignment(resp.RoleAssignment), nil
}

// GetAssignment reads a role assignment by scope and name; ErrNotFound when gone.
func (c *RBAC) GetAssignment(ctx context.Context, scope, name string) (Assignment, error) {
	resp, err := c.assignments.Get(ctx, scope, name, nil)
	if err != nil {
		return Assignment{}, Classify(err)
	}
	return fromSDKAssignment(resp.RoleAssignment), nil
}

// DeleteAssignment removes a role assignment. It returns true when Azure
// deleted it now, and false when it was already gone (204 or 404).
func (c *RBAC) DeleteAssignment(ctx context.Context, scope, name string) (bool, error) {
	resp, err := c.assignments.Delete(ctx, scope, name, nil)
	if err != nil {
		err = Classify(err)
		if isNotFound(err) {
			return false, nil
		}
		return false, err
	}
	return resp.ID != nil, nil
}

// FindAssignment returns the assignment of roleDefinitionID to principalID made
// exactly at scope, or ErrNotFound.
func (c *RBAC) FindAssignment(ctx context.Context, scope, roleDefinitionID, principalID string) (Assignment, error) {
	filter := encodeFilter(fmt.Sprintf("principalId eq '%s'", principalID))
	pager := c.assignments.NewListForScopePager(scope, &armauthorization.RoleAssignmentsClientListForScopeOptions{Filter: &filter})
	wantRole := lastSegment(roleDefinitionID)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return Assignment{}, Classify(err)
		}
		for _, ra := range page.Value {
			a := fromSDKAssignment(*ra)
			if strings.EqualFold(strings.TrimRight(a.Scope, "/"), strings.TrimRight(scope, "/")) &&
				strings.EqualFold(lastSegment(a.RoleDefinitionID), wantRole) &&
				strings.EqualFold(a.PrincipalID, principalID) {
				return a, nil
			}
		}
	}
	return Assignment{}, fmt.Errorf("role %s for principal %s at %s: %w", wantRole, principalID, scope, ErrNotFound)
}

// ListAssignmentsAssignedTo lists the role assignments that apply to
// principalID at scope: those made at the scope or above it, to the
// principal or to a group it is a transitive member of. Microsoft's page
// "List Azure role assignments using the REST API" documents the filter
// and states that it takes only a user or service principal object id.
func (c *RBAC) ListAssignmentsAssignedTo(ctx context.Context, scope, principalID string) ([]Assignment, error) {
	filter := encodeFilter(fmt.Sprintf("atScope() and assignedTo('%s')", strings.ReplaceAll(principalID, "'", "''")))
	pager := c.assignments.NewListForScopePager(scope, &armauthorization.RoleAssignmentsClientListForScopeOptions{Filter: &filter})
	var out []Assignment
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, Classify(err)
		}
		for _, ra := range page.Value {
			out = append(out, fromSDKAssignment(*ra))
		}
	}
	return out, nil
}

// CountAssignments counts the role assignments visible at a subscription, for
// the quota pre-flight check.
func (c *RBAC) CountAssignments(ctx context.Context, subscriptionScope string) (int, error) {
	pager := c.assignments.NewListForScopePager(subscriptionScope, nil)
	n := 0
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return 0, Classify(err)
		}
		n += len(page.Value)
	}
	return n, nil
}

// GetRoleDefinition reads a role definition by GUID at scope.
func (c *RBAC) GetRoleDefinition(ctx context.Context, scope, guid string) (RoleDefinition, error) {
	resp, err := c.definitions.Get(ctx, scope, guid, nil)
	if err != nil {
		return RoleDefinition{}, Classify(err)
	}
	return fromSDKDefinition(resp.RoleDefinition), nil
}

// FindRoleDefinition looks a role up by its exact display name at scope.
func (c *RBAC) FindRoleDefinition(ctx context.Context, scope, name string) (RoleDefinition, error) {
	filter := fmt.Sprintf("roleName eq '%s'", strings.ReplaceAll(name, "'", "''"))
	pager := c.definitions.NewListPager(scope, &armauthorization.RoleDefinitionsClientListOptions{Filter: &filter})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return RoleDefinition{}, Classify(err)
		}
		for _, rd := range page.Value {
			d := fromSDKDefinition(*rd)
			if strings.EqualFold(d.Name, name) {
				return d, nil
			}
		}
	}
	return RoleDefinition{}, fmt.Errorf("role named %q at %s: %w", name, scope, ErrNotFound)
}

// Permissions returns the caller's effective permissions at scope.
func (c *RBAC) Permissions(ctx context.Context, scope string) (Permissions, error) {
	var body struct {
		Value []struct {
			Actions        []string `json:"actions"`
			NotActions     []string `json:"notActions"`
			DataActions    []string `json:"dataActions"`
			NotDataActions []string `json:"notDataActions"`
		} `json:"value"`
	}
	path := strings.TrimRight(scope, "/") + "/providers/Microsoft.Authorization/permissions"
	if err := c.getJSON(ctx, path, "2022-04-01", &body); err != nil {
		return Permissions{}, err
	}
	var p Permissions
	for _, v := range body.Value {
		p.Actions = append(p.Actions, v.Actions...)
		p.NotActions = append(p.NotActions, v.NotActions...)
		p.DataActions = append(p.DataActions, v.DataActions...)
		p.NotDataActions = append(p.NotDataActions, v.NotDataActions...)
	}
	return p, nil
}

// GetResource reads a scope's name, type and location with a generic GET.
func (c *RBAC) GetResource(ctx context.Context, id, apiVersion string) (Resource, error) {
	var r Resource
	var body struct {
		ID       string `json:"id"`
		Name     string `json:"name"`
		Type     string `json:"type"`
		Location string `json:"location"`
	}
	if err := c.getJSON(ctx, id, apiVersion, &body); err != nil {
		return r, err
	}
	return Resource(body), nil
}

// Locks lists the management locks that apply at scope, inherited ones included.
func (c *RBAC) Locks(ctx context.Context, scope string) ([]Lock, error) {
	var body struct {
		Value []struct {
			ID         string `json:"id"`
			Name       string `json:"name"`
			Properties struct {
				Level string `json:"level"`
			} `json:"properties"`
		} `json:"value"`
	}
	path := strings.TrimRight(scope, "/") + "/providers/Microsoft.Authorization/locks"
	if err := c.getJSON(ctx, path, "2016-09-01", &body); err != nil {
		return nil, err
	}
	locks := make([]Lock, 0, len(body.Value))
	for _, v := range body.Value {
		locks = append(locks, Lock{ID: v.ID, Name: v.Name, Level: v.Properties.Level})
	}
	return locks, nil
}

func (c *RBAC) getJSON(ctx context.Context, path, apiVersion string, out any) error {
	req, err := runtime.NewRequest(ctx, http.MethodGet, runtime.JoinPaths(c.raw.Endpoint(), path))
	if err != nil {
		return fmt.Errorf("build request for %q: %w", path, err)
	}
	q := req.Raw().URL.Query()
	q.Set("api-version", apiVersion)
	req.Raw().URL.RawQuery = q.Encode()
	req.Raw().Header.Set("Accept", "application/json")
	resp, err := c.raw.Pipeline().Do(req)
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

func fromSDKAssignment(ra armauthorization.RoleAssignment) Assignment {
	a := Assignment{ID: deref(ra.ID), Name: deref(ra.Name)}
	if p := ra.Properties; p != nil {
		a.Scope = deref(p.Scope)
		a.RoleDefinitionID = deref(p.RoleDefinitionID)
		a.PrincipalID = deref(p.PrincipalID)
		a.Description = deref(p.Description)
		a.Condition = deref(p.Condition)
		a.ConditionVersion = deref(p.ConditionVersion)
		if p.PrincipalType != nil {
			a.PrincipalType = string(*p.PrincipalType)
		}
		if p.CreatedOn != nil {
			a.CreatedOn = *p.CreatedOn
		}
	}
	return a
}

func fromSDKDefinition(rd armauthorization.RoleDefinition) RoleDefinition {
	d := RoleDefinition{ID: deref(rd.ID), GUID: strings.ToLower(deref(rd.Name))}
	if d.GUID == "" {
		d.GUID = strings.ToLower(lastSegment(d.ID))
	}
	if p := rd.Properties; p != nil {
		d.Name = deref(p.RoleName)
		d.Type = deref(p.RoleType)
		for _, perm := range p.Permissions {
			d.Actions = appendStrings(d.Actions, perm.Actions)
			d.NotActions = appendStrings(d.NotActions, perm.NotActions)
			d.DataActions = appendStrings(d.DataActions, perm.DataActions)
			d.NotDataActions = appendStrings(d.NotDataActions, perm.NotDataActions)
		}
	}
	return d
}

func appendStrings(dst []string, src []*string) []string {
	for _, s := range src {
		if s != nil {
			dst = append(dst, *s)
		}
	}
	return dst
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func lastSegment(id string) string {
	id = strings.TrimRight(id, "/")
	return id[strings.LastIndex(id, "/")+1:]
}

// encodeFilter percent-encodes an OData $filter for the role assignment list
// calls. armauthorization v2 (checked at v2.2.0) appends $filter to the query
// without encoding it, so its spaces reach the request line raw, and ARM, like
// any HTTP server, rejects that with 400 "The request is badly formed".
func encodeFilter(filter string) string {
	return strings.ReplaceAll(url.QueryEscape(filter), "+", "%20")
}

func isNotFound(err error) bool {
	return err != nil && errors.Is(err, ErrNotFound)
}
