package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/approval"
	"github.com/elevate-dev/elevate/internal/azure"
)

// Role is a role reference resolved to its definition. Def is empty, and
// Warning says why, when a GUID could not be looked up; the GUID is still
// usable for the grant.
type Role struct {
	GUID    string
	Def     azure.RoleDefinition
	Warning string
}

// Name returns the display name, or the GUID when the lookup failed.
func (r Role) Name() string {
	if r.Def.Name != "" {
		return r.Def.Name
	}
	return r.GUID
}

// ResolveRoles turns GUIDs, role definition ids and built-in role names into
// roles, looked up at lookupScope. A name that matches no role is an error; a
// GUID whose lookup fails is kept with a warning.
func (e *Engine) ResolveRoles(ctx context.Context, refs []access.RoleRef, lookupScope string) ([]Role, error) {
	roles := make([]Role, len(refs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(e.opts.Concurrency)
	for i, ref := range refs {
		g.Go(func() error {
			if ref.GUID == "" {
				def, err := e.arm.FindRoleDefinition(gctx, lookupScope, ref.Name)
				if err != nil {
					return fmt.Errorf("resolve role name %q: %w; pass the role definition GUID instead, or check the spelling with `az role definition list --name`", ref.Name, err)
				}
				roles[i] = Role{GUID: def.GUID, Def: def}
				return nil
			}
			def, err := e.arm.GetRoleDefinition(gctx, lookupScope, ref.GUID)
			if err != nil {
				e.log.WarnContext(gctx, "role definition lookup failed", "role_id", ref.GUID, "error", err)
				roles[i] = Role{GUID: ref.GUID, Warning: "role lookup failed: " + shortError(err)}
				return nil
			}
			roles[i] = Role{GUID: ref.GUID, Def: def}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return roles, nil
}

// LookupScope picks the scope at which roles are looked up: the subscription of
// the first scope, or the management group itself.
func LookupScope(scopes []access.ResourceID) string {
	for _, s := range scopes {
		if sub := s.SubscriptionID(); sub != "" {
			return "/subscriptions/" + sub
		}
	}
	if len(scopes) > 0 {
		return scopes[0].String()
	}
	return ""
}

// RoleDefinitionID returns the id a role assignment at scope must reference.
func RoleDefinitionID(scope access.ResourceID, guid string) string {
	if sub := scope.SubscriptionID(); sub != "" {
		return access.RoleDefinitionID(sub, guid)
	}
	return "/providers/Microsoft.Authorization/roleDefinitions/" + guid
}

// resourceAPIVersions are api-versions for the generic GET of common scope
// types. NOTE: other types use defaultAPIVersion, which some providers reject;
// the row then shows the name parsed from the id and a warning.
var resourceAPIVersions = map[string]string{
	"microsoft.resources/subscriptions":     "2022-12-01",
	"microsoft.resources/resourcegroups":    "2021-04-01",
	"microsoft.management/managementgroups": "2021-04-01",
	"microsoft.keyvault/vaults":             "2023-07-01",
	"microsoft.storage/storageaccounts":     "2023-05-01",
}

const defaultAPIVersion = "2021-04-01"

// Describe looks up the names behind every pair and builds the approval table.
// Lookups run concurrently with a bound; a failed one leaves the id in place
// and a warning in its row, and never fails the table.
func (e *Engine) Describe(ctx context.Context, req access.Request, roles map[string]Role) approval.Table {
	t := approval.Table{
		RequestID:     req.ID,
		PrincipalID:   req.Principal.ID,
		PrincipalType: req.Principal.Type,
		Duration:      req.Duration,
		Justification: req.Justification,
		Ticket:        req.Metadata.Ticket,
		Metadata:      req.Metadata,
		Backend:       "rbac",
		Rows:          make([]approval.Row, len(req.Pairs)),
	}
	resources := e.lookupResources(ctx, req.Pairs)
	for i, p := range req.Pairs {
		role := roles[p.RoleID]
		res := resources[p.Scope.Key()]
		row := approval.Row{
			RoleName:     role.Name(),
			RoleID:       p.RoleID,
			ResourceName: res.Name,
			ResourceType: res.Type,
			ResourceID:   p.Scope.String(),
		}
		row.Warning = strings.Join(nonEmpty(role.Warning, res.Warning), "; ")
		t.Rows[i] = row
	}
	return t
}

type resourceInfo struct {
	Name, Type, Warning string
}

func (e *Engine) lookupResources(ctx context.Context, pairs []access.Pair) map[string]resourceInfo {
	var mu sync.Mutex
	out := make(map[string]resourceInfo)
	var g errgroup.Group
	g.SetLimit(e.opts.Concurrency)
	for _, p := range pairs {
		key := p.Scope.Key()
		mu.Lock()
		_, seen := out[key]
		out[key] = resourceInfo{Name: p.Scope.Name(), Type: p.Scope.Type()}
		mu.Unlock()
		if seen {
			continue
		}
		scope := p.Scope
		g.Go(func() error {
			version := resourceAPIVersions[strings.ToLower(scope.Type())]
			if version == "" {
				version = defaultAPIVersion
			}
			res, err := e.arm.GetResource(ctx, scope.String(), version)
			info := resourceInfo{Name: scope.Name(), Type: scope.Type()}
			switch {
			case err != nil:
				e.log.WarnContext(ctx, "resource lookup failed", "scope", scope.String(), "error", err)
				info.Warning = "resource lookup failed: " + shortError(err)
			default:
				if res.Name != "" {
					info.Name = res.Name
				}
				if res.Type != "" {
					info.Type = res.Type
				}
			}
			mu.Lock()
			out[scope.Key()] = info
			mu.Unlock()
			return nil
		})
	}
	_ = g.Wait() // lookups never fail the table
	return out
}

func nonEmpty(values ...string) []string {
	var out []string
	for _, v := range values {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

// shortError names the Azure error code when there is one, else the message.
func shortError(err error) string {
	if code := azure.ErrorCode(err); code != "" {
		return code
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timed out"
	}
	return err.Error()
}
