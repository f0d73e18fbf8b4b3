package emulator

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// RoleAssignment is one role assignment as ARM stores it. DeletedOn is zero
// while the assignment is live; a deleted assignment is kept so that it can
// go on granting access for the propagation delay, as in Azure.
type RoleAssignment struct {
	Name             string    `json:"name"`
	ID               string    `json:"id"`
	Scope            string    `json:"scope"`
	RoleDefinitionID string    `json:"roleDefinitionId"`
	PrincipalID      string    `json:"principalId"`
	PrincipalType    string    `json:"principalType"`
	Condition        string    `json:"condition,omitempty"`
	ConditionVersion string    `json:"conditionVersion,omitempty"`
	Description      string    `json:"description,omitempty"`
	CreatedOn        time.Time `json:"createdOn"`
	UpdatedOn        time.Time `json:"updatedOn"`
	CreatedBy        string    `json:"createdBy,omitempty"`
	UpdatedBy        string    `json:"updatedBy,omitempty"`
	DeletedOn        time.Time `json:"deletedOn,omitzero"`
}

// resourceInfo is a seeded subscription, resource group or resource.
type resourceInfo struct {
	ID       ResourceID
	Location string
	Vault    bool
}

// lockInfo is a management lock with its parsed scope.
type lockInfo struct {
	Lock
	ScopeID ResourceID
}

// state is the emulator's directory and ARM data. One mutex guards all of
// it; every request touches little data, so contention is not a concern.
type state struct {
	mu          sync.Mutex
	tenant      Tenant
	subs        map[string]Subscription // by lower-case id
	resources   map[string]resourceInfo // by ResourceID.Key(): subscriptions, groups, resources
	principals  map[string]*Principal   // by lower-case object id
	apps        map[string]*Principal   // by lower-case app (client) id
	roles       map[string]RoleDefinition
	assignments []*RoleAssignment // live and deleted, in creation order
	locks       []lockInfo
}

// newState builds the state from a seed, checking every reference.
// githubIssuer replaces GitHubIssuerPlaceholder in federated credentials.
func newState(seed Seed, githubIssuer string, now time.Time) (*state, error) {
	st := &state{
		tenant:     seed.Tenant,
		subs:       map[string]Subscription{},
		resources:  map[string]resourceInfo{},
		principals: map[string]*Principal{},
		apps:       map[string]*Principal{},
		roles:      map[string]RoleDefinition{},
	}
	if !isGUID(seed.Tenant.ID) {
		return nil, fmt.Errorf("seed tenant: invalid id %q; want a GUID", seed.Tenant.ID)
	}
	for _, r := range BuiltinRoles() {
		st.roles[strings.ToLower(r.Name)] = r
	}
	if err := st.addSubscriptions(seed.Subscriptions); err != nil {
		return nil, err
	}
	for _, p := range seed.Principals {
		for i, fc := range p.FederatedCredentials {
			p.FederatedCredentials[i].Issuer = strings.ReplaceAll(fc.Issuer, GitHubIssuerPlaceholder, githubIssuer)
		}
		if err := st.addPrincipal(p); err != nil {
			return nil, fmt.Errorf("seed principal %q: %w", p.DisplayName, err)
		}
	}
	for _, a := range seed.RoleAssignments {
		if err := st.addSeedAssignment(a, now); err != nil {
			return nil, fmt.Errorf("seed role assignment %q: %w", a.Name, err)
		}
	}
	for _, l := range seed.Locks {
		if err := st.addLock(l); err != nil {
			return nil, fmt.Errorf("seed lock %q: %w", l.Name, err)
		}
	}
	return st, nil
}

func (st *state) addSubscriptions(subs []Subscription) error {
	for _, sub := range subs {
		if !isGUID(sub.ID) {
			return fmt.Errorf("seed subscription %q: invalid id %q; want a GUID", sub.DisplayName, sub.ID)
		}
		key := strings.ToLower(sub.ID)
		if _, dup := st.subs[key]; dup {
			return fmt.Errorf("seed subscription %q: duplicate id", sub.ID)
		}
		st.subs[key] = sub
		subID := ResourceID{Subscription: sub.ID}
		st.resources[subID.Key()] = resourceInfo{ID: subID}
		for _, rg := range sub.ResourceGroups {
			if rg.Name == "" || rg.Location == "" {
				return fmt.Errorf("seed resource group %q in subscription %q: name and location are required", rg.Name, sub.ID)
			}
			rgID := ResourceID{Subscription: sub.ID, ResourceGroup: rg.Name}
			st.resources[rgID.Key()] = resourceInfo{ID: rgID, Location: rg.Location}
			for _, res := range rg.Resources {
				if err := st.addResource(rgID, rg.Location, res); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (st *state) addResource(rg ResourceID, rgLocation string, res Resource) error {
	ns, typ, ok := strings.Cut(res.Type, "/")
	if !ok || ns == "" || typ == "" || strings.Contains(typ, "/") || res.Name == "" {
		return fmt.Errorf("seed resource %q of type %q: want type Namespace/type and a name", res.Name, res.Type)
	}
	id := rg
	id.Provider, id.Types, id.Names = ns, []string{typ}, []string{res.Name}
	vault := strings.EqualFold(res.Type, vaultResourceType)
	if len(res.Secrets) > 0 && !vault {
		return fmt.Errorf("seed resource %q: only %s resources may have secrets", res.Name, vaultResourceType)
	}
	if _, dup := st.resources[id.Key()]; dup {
		return fmt.Errorf("seed resource %q: duplicate id %s", res.Name, id)
	}
	loc := res.Location
	if loc == "" {
		loc = rgLocation
	}
	st.resources[id.Key()] = resourceInfo{ID: id, Location: loc, Vault: vault}
	return nil
}

// addPrincipal validates p and adds it to the directory.
func (st *state) addPrincipal(p Principal) error {
	if !isGUID(p.ObjectID) {
		return fmt.Errorf("invalid objectId %q; want a GUID", p.ObjectID)
	}
	switch p.Type {
	case PrincipalServicePrincipal, PrincipalUser, PrincipalGroup:
	default:
		return fmt.Errorf("invalid type %q; use ServicePrincipal, User or Group", p.Type)
	}
	if p.AppID != "" && !isGUID(p.AppID) {
		return fmt.Errorf("invalid appId %q; want a GUID", p.AppID)
	}
	if p.Type != PrincipalServicePrincipal && (p.AppID != "" || p.ClientSecret != "" || len(p.FederatedCredentials) > 0) {
		return fmt.Errorf("principal of type %s cannot have appId, clientSecret or federatedCredentials", p.Type)
	}
	if p.Type == PrincipalServicePrincipal && p.AppID == "" {
		return fmt.Errorf("service principal needs an appId (its client id)")
	}
	for i, fc := range p.FederatedCredentials {
		if fc.Issuer == "" || fc.Subject == "" || len(fc.Audiences) == 0 {
			return fmt.Errorf("federated credential %d: issuer, subject and audiences are required", i)
		}
	}
	key := strings.ToLower(p.ObjectID)
	if _, dup := st.principals[key]; dup {
		return fmt.Errorf("duplicate objectId %q", p.ObjectID)
	}
	if p.AppID != "" {
		if _, dup := st.apps[strings.ToLower(p.AppID)]; dup {
			return fmt.Errorf("duplicate appId %q", p.AppID)
		}
	}
	stored := p
	stored.FederatedCredentials = slices.Clone(p.FederatedCredentials)
	st.principals[key] = &stored
	if p.AppID != "" {
		st.apps[strings.ToLower(p.AppID)] = &stored
	}
	return nil
}

func (st *state) addSeedAssignment(a SeedAssignment, now time.Time) error {
	if !isGUID(a.Name) {
		return fmt.Errorf("invalid name %q; want a GUID", a.Name)
	}
	scope, err := ParseResourceID(a.Scope)
	if err != nil {
		return fmt.Errorf("scope: %w", err)
	}
	roleGUID, err := st.resolveRole(a.RoleDefinitionID, a.RoleName)
	if err != nil {
		return err
	}
	p, ok := st.principals[strings.ToLower(a.PrincipalID)]
	if !ok {
		return fmt.Errorf("principal %q is not in the seed's principals", a.PrincipalID)
	}
	ptype := a.PrincipalType
	if ptype == "" {
		ptype = p.Type
	}
	st.assignments = append(st.assignments, &RoleAssignment{
		Name:             strings.ToLower(a.Name),
		ID:               assignmentID(scope, a.Name),
		Scope:            scope.String(),
		RoleDefinitionID: roleDefinitionIDAt(scope, roleGUID),
		PrincipalID:      strings.ToLower(a.PrincipalID),
		PrincipalType:    ptype,
		Condition:        a.Condition,
		ConditionVersion: a.ConditionVersion,
		Description:      a.Description,
		// Seeded assignments count as created long ago, so the propagation
		// delay does not hide them at start.
		CreatedOn: now.Add(-24 * time.Hour),
		UpdatedOn: now.Add(-24 * time.Hour),
	})
	return nil
}

// resolveRole returns the GUID of a role given by id or by built-in name.
func (st *state) resolveRole(id, name string) (string, error) {
	switch {
	case id != "" && name != "":
		return "", fmt.Errorf("set roleDefinitionId or roleName, not both")
	case id != "":
		guid, ok := roleDefinitionGUID(id)
		if !ok {
			return "", fmt.Errorf("invalid roleDefinitionId %q", id)
		}
		if _, ok := st.roles[guid]; !ok {
			return "", fmt.Errorf("unknown role definition %q; the emulator knows only the built-in roles it embeds", id)
		}
		return guid, nil
	case name != "":
		for guid, r := range st.roles {
			if strings.EqualFold(r.RoleName, name) {
				return guid, nil
			}
		}
		return "", fmt.Errorf("unknown role name %q", name)
	default:
		return "", fmt.Errorf("roleDefinitionId or roleName is required")
	}
}

func (st *state) addLock(l Lock) error {
	id, err := ParseResourceID(l.Scope)
	if err != nil {
		return fmt.Errorf("scope: %w", err)
	}
	if l.Level != LockCanNotDelete && l.Level != LockReadOnly {
		return fmt.Errorf("invalid level %q; use CanNotDelete or ReadOnly", l.Level)
	}
	if l.Name == "" {
		return fmt.Errorf("name is required")
	}
	st.locks = append(st.locks, lockInfo{Lock: l, ScopeID: id})
	return nil
}

// assignmentID returns the ARM id of a role assignment at scope.
func assignmentID(scope ResourceID, name string) string {
	prefix := scope.String()
	if prefix == "/" {
		prefix = ""
	}
	return prefix + "/providers/Microsoft.Authorization/roleAssignments/" + strings.ToLower(name)
}

// roleDefinitionIDAt returns the role definition id as ARM writes it for an
// assignment at scope: subscription-qualified inside a subscription.
func roleDefinitionIDAt(scope ResourceID, guid string) string {
	if scope.Subscription != "" {
		return "/subscriptions/" + scope.Subscription + roleDefinitionsProviderPrefix + guid
	}
	return roleDefinitionsProviderPrefix + guid
}

// ancestors returns the keys of scope and every scope above it, nearest
// first, ending with the tenant root "/". A subscription's management group
// comes from the seed.
func (st *state) ancestors(scope ResourceID) []string {
	var keys []string
	id := scope
	for {
		keys = append(keys, id.Key())
		if id.Subscription != "" && id.ResourceGroup == "" {
			if sub, ok := st.subs[strings.ToLower(id.Subscription)]; ok && sub.ManagementGroupID != "" {
				keys = append(keys, ResourceID{ManagementGroup: sub.ManagementGroupID}.Key())
			}
		}
		parent, ok := id.Parent()
		if !ok {
			return keys
		}
		id = parent
	}
}

// isAtOrAbove reports whether the assignment scope key covers target.
func (st *state) isAtOrAbove(scopeKey string, target ResourceID) bool {
	return slices.Contains(st.ancestors(target), scopeKey)
}

// effective reports whether a grants access at now: it takes effect delay
// after creation and keeps granting delay after deletion.
func (a *RoleAssignment) effective(now time.Time, delay time.Duration) bool {
	if now.Before(a.CreatedOn.Add(delay)) {
		return false
	}
	return a.DeletedOn.IsZero() || now.Before(a.DeletedOn.Add(delay))
}

// permissionsAt returns the permission blocks of every assignment of the
// principal that is effective at scope, one entry per assignment's role.
func (st *state) permissionsAt(principalID string, scope ResourceID, now time.Time, delay time.Duration) []Permission {
	principalID = strings.ToLower(principalID)
	keys := st.ancestors(scope)
	var perms []Permission
	for _, a := range st.assignments {
		if a.PrincipalID != principalID || !a.effective(now, delay) {
			continue
		}
		if !slices.Contains(keys, strings.ToLower(a.Scope)) {
			continue
		}
		guid, _ := roleDefinitionGUID(a.RoleDefinitionID)
		perms = append(perms, st.roles[guid].Permissions...)
	}
	return perms
}

// allowed reports whether the principal may perform action (a data action
// when data is true) at scope.
// NOTE: group membership is not modeled, so assignments to groups grant
// nothing to their members.
func (st *state) allowed(principalID, action string, data bool, scope ResourceID, now time.Time, delay time.Duration) bool {
	for _, p := range st.permissionsAt(principalID, scope, now, delay) {
		if p.allows(action, data) {
			return true
		}
	}
	return false
}

// liveAssignments returns copies of the assignments not deleted.
func (st *state) liveAssignments() []RoleAssignment {
	var out []RoleAssignment
	for _, a := range st.assignments {
		if a.DeletedOn.IsZero() {
			out = append(out, *a)
		}
	}
	return out
}

// findAssignment returns the live assignment with name at scope.
func (st *state) findAssignment(scope ResourceID, name string) *RoleAssignment {
	id := strings.ToLower(assignmentID(scope, name))
	for _, a := range st.assignments {
		if a.DeletedOn.IsZero() && strings.ToLower(a.ID) == id {
			return a
		}
	}
	return nil
}

// locksCovering returns the locks at or above scope.
func (st *state) locksCovering(scope ResourceID) []lockInfo {
	keys := st.ancestors(scope)
	var out []lockInfo
	for _, l := range st.locks {
		if slices.Contains(keys, l.ScopeID.Key()) {
			out = append(out, l)
		}
	}
	return out
}

// scopeExists reports whether every seeded part of scope exists: the
// subscription, the resource group and the top-level resource. Child
// resources below a seeded resource are accepted as they are not modeled.
func (st *state) scopeExists(scope ResourceID) (code, message string, ok bool) {
	if scope.ManagementGroup != "" || scope.Subscription == "" {
		return "", "", true
	}
	if _, ok := st.subs[strings.ToLower(scope.Subscription)]; !ok {
		return "SubscriptionNotFound", fmt.Sprintf("The subscription '%s' could not be found.", scope.Subscription), false
	}
	if scope.ResourceGroup == "" {
		return "", "", true
	}
	rg := ResourceID{Subscription: scope.Subscription, ResourceGroup: scope.ResourceGroup}
	if _, ok := st.resources[rg.Key()]; !ok {
		return "ResourceGroupNotFound", fmt.Sprintf("Resource group '%s' could not be found.", scope.ResourceGroup), false
	}
	if !scope.IsResource() {
		return "", "", true
	}
	top := scope
	top.Types, top.Names = scope.Types[:1], scope.Names[:1]
	if _, ok := st.resources[top.Key()]; !ok {
		return "ResourceNotFound", fmt.Sprintf("The Resource '%s/%s' under resource group '%s' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
			top.Type(), top.Name(), scope.ResourceGroup), false
	}
	return "", "", true
}
