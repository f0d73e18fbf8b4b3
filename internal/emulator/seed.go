package emulator

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Seed is the initial state of an emulator: one tenant with its
// subscriptions, resources, principals, role assignments and locks, and
// the PIM eligibilities and role management policies.
// Field names are lowerCamel in YAML and JSON.
type Seed struct {
	Tenant          Tenant           `json:"tenant" yaml:"tenant"`
	Subscriptions   []Subscription   `json:"subscriptions" yaml:"subscriptions"`
	Principals      []Principal      `json:"principals" yaml:"principals"`
	RoleAssignments []SeedAssignment `json:"roleAssignments" yaml:"roleAssignments"`
	Locks           []Lock           `json:"locks" yaml:"locks"`
	// Eligibilities are PIM eligible assignments, for Azure roles at an ARM
	// scope or for Entra roles at a directory scope.
	Eligibilities []SeedEligibility `json:"eligibilities,omitempty" yaml:"eligibilities,omitempty"`
	// RolePolicies override the emulator's default PIM role management
	// policy for one role at one scope and the scopes below it.
	RolePolicies []SeedRolePolicy `json:"rolePolicies,omitempty" yaml:"rolePolicies,omitempty"`
}

// Tenant is the Entra tenant the emulator issues tokens for.
type Tenant struct {
	ID          string `json:"id" yaml:"id"`
	DisplayName string `json:"displayName" yaml:"displayName"`
}

// Subscription is one subscription, optionally inside a management group.
type Subscription struct {
	ID                string          `json:"id" yaml:"id"`
	DisplayName       string          `json:"displayName" yaml:"displayName"`
	ManagementGroupID string          `json:"managementGroupId,omitempty" yaml:"managementGroupId,omitempty"`
	ResourceGroups    []ResourceGroup `json:"resourceGroups" yaml:"resourceGroups"`
}

// ResourceGroup is one resource group with its resources.
type ResourceGroup struct {
	Name      string     `json:"name" yaml:"name"`
	Location  string     `json:"location" yaml:"location"`
	Resources []Resource `json:"resources" yaml:"resources"`
}

// Resource is one top-level resource. A resource of type
// Microsoft.KeyVault/vaults is an RBAC-enabled Key Vault served on
// NAME.vault.localhost, and only such a resource may carry Secrets.
type Resource struct {
	Type     string       `json:"type" yaml:"type"`
	Name     string       `json:"name" yaml:"name"`
	Location string       `json:"location,omitempty" yaml:"location,omitempty"`
	Secrets  []SeedSecret `json:"secrets,omitempty" yaml:"secrets,omitempty"`
}

// SeedSecret is the initial value of one Key Vault secret.
type SeedSecret struct {
	Name  string            `json:"name" yaml:"name"`
	Value string            `json:"value" yaml:"value"`
	Tags  map[string]string `json:"tags,omitempty" yaml:"tags,omitempty"`
}

// Principal types as ARM and Entra spell them.
const (
	PrincipalServicePrincipal = "ServicePrincipal"
	PrincipalUser             = "User"
	PrincipalGroup            = "Group"
)

// Principal is a directory object that can hold role assignments. Service
// principals sign in with ClientSecret or a federated credential; users and
// groups only receive assignments (and tokens from IssueToken).
type Principal struct {
	ObjectID             string                `json:"objectId" yaml:"objectId"`
	AppID                string                `json:"appId,omitempty" yaml:"appId,omitempty"` // the client id
	DisplayName          string                `json:"displayName" yaml:"displayName"`
	Type                 string                `json:"type" yaml:"type"`
	ClientSecret         string                `json:"clientSecret,omitempty" yaml:"clientSecret,omitempty"`
	FederatedCredentials []FederatedCredential `json:"federatedCredentials,omitempty" yaml:"federatedCredentials,omitempty"`
	// CreatedAt is when the principal appeared in the directory; role
	// assignments for it fail with PrincipalNotFound until CreatedAt +
	// Config.ReplicationDelay. Zero in a seed means long ago.
	CreatedAt time.Time `json:"createdAt,omitzero" yaml:"createdAt,omitempty"`
	// GraphAppRoles are the Microsoft Graph permissions granted to the
	// principal, such as RoleManagement.ReadWrite.Directory. The emulated
	// Graph returns 403 Authorization_RequestDenied when a call needs one
	// the principal lacks.
	GraphAppRoles []string `json:"graphAppRoles,omitempty" yaml:"graphAppRoles,omitempty"`
	// Groups are the group names a user's sign-in ID token carries in its
	// groups claim, from the emulator's OIDC provider.
	Groups []string `json:"groups,omitempty" yaml:"groups,omitempty"`
}

// SeedEligibility is a PIM eligible assignment present at start. Set Scope
// for an Azure role or DirectoryScopeID ("/" for the whole tenant) for an
// Entra role. The role is a role definition id (full id or GUID) or a
// built-in display name. A zero End means the eligibility never expires.
type SeedEligibility struct {
	Name             string    `json:"name,omitempty" yaml:"name,omitempty"` // schedule GUID; default derived from the other fields
	PrincipalID      string    `json:"principalId" yaml:"principalId"`
	Scope            string    `json:"scope,omitempty" yaml:"scope,omitempty"`
	DirectoryScopeID string    `json:"directoryScopeId,omitempty" yaml:"directoryScopeId,omitempty"`
	RoleDefinitionID string    `json:"roleDefinitionId,omitempty" yaml:"roleDefinitionId,omitempty"`
	RoleName         string    `json:"roleName,omitempty" yaml:"roleName,omitempty"`
	Start            time.Time `json:"start,omitzero" yaml:"start,omitempty"` // default: a day before start-up
	End              time.Time `json:"end,omitzero" yaml:"end,omitempty"`
}

// SeedRolePolicy sets the PIM rules for one role at Scope (an Azure role)
// or DirectoryScopeID (an Entra role). Requests at that scope and below
// follow it. An omitted boolean turns its rule off, and an omitted
// duration takes the default given in its comment.
type SeedRolePolicy struct {
	Scope            string `json:"scope,omitempty" yaml:"scope,omitempty"`
	DirectoryScopeID string `json:"directoryScopeId,omitempty" yaml:"directoryScopeId,omitempty"`
	RoleDefinitionID string `json:"roleDefinitionId,omitempty" yaml:"roleDefinitionId,omitempty"`
	RoleName         string `json:"roleName,omitempty" yaml:"roleName,omitempty"`

	// Activation by the principal (Expiration_EndUser_Assignment,
	// Enablement_EndUser_Assignment, Approval_EndUser_Assignment,
	// AuthenticationContext_EndUser_Assignment).
	MaximumDuration      string   `json:"maximumDuration,omitempty" yaml:"maximumDuration,omitempty"` // ISO 8601; default PT8H
	RequireJustification bool     `json:"requireJustification,omitempty" yaml:"requireJustification,omitempty"`
	RequireTicket        bool     `json:"requireTicket,omitempty" yaml:"requireTicket,omitempty"`
	RequireMFA           bool     `json:"requireMFA,omitempty" yaml:"requireMFA,omitempty"`
	RequireApproval      bool     `json:"requireApproval,omitempty" yaml:"requireApproval,omitempty"`
	Approvers            []string `json:"approvers,omitempty" yaml:"approvers,omitempty"` // object ids, shown in the policy only
	// RequireAuthenticationContext turns on AuthenticationContext_EndUser_Assignment
	// with this Conditional Access authentication context claim value, such
	// as "c1": an activation then needs a token whose acrs claim holds it.
	RequireAuthenticationContext string `json:"requireAuthenticationContext,omitempty" yaml:"requireAuthenticationContext,omitempty"`

	// Active assignment by an administrator (Expiration_Admin_Assignment,
	// Enablement_Admin_Assignment).
	AdminMaximumDuration      string `json:"adminMaximumDuration,omitempty" yaml:"adminMaximumDuration,omitempty"` // ISO 8601; default P180D
	AdminRequireExpiration    bool   `json:"adminRequireExpiration,omitempty" yaml:"adminRequireExpiration,omitempty"`
	AdminRequireJustification bool   `json:"adminRequireJustification,omitempty" yaml:"adminRequireJustification,omitempty"`
}

// FederatedCredential is a trust in an external token: the assertion's iss,
// sub and one of its aud values must equal these exactly, case included.
type FederatedCredential struct {
	Name      string   `json:"name,omitempty" yaml:"name,omitempty"`
	Issuer    string   `json:"issuer" yaml:"issuer"`
	Subject   string   `json:"subject" yaml:"subject"`
	Audiences []string `json:"audiences" yaml:"audiences"`
}

// SeedAssignment is a role assignment present at start. Role names either a
// role definition id (full id or GUID) or a built-in role's display name.
type SeedAssignment struct {
	Name             string `json:"name" yaml:"name"`
	Scope            string `json:"scope" yaml:"scope"`
	RoleDefinitionID string `json:"roleDefinitionId,omitempty" yaml:"roleDefinitionId,omitempty"`
	RoleName         string `json:"roleName,omitempty" yaml:"roleName,omitempty"`
	PrincipalID      string `json:"principalId" yaml:"principalId"`
	PrincipalType    string `json:"principalType,omitempty" yaml:"principalType,omitempty"`
	Condition        string `json:"condition,omitempty" yaml:"condition,omitempty"`
	ConditionVersion string `json:"conditionVersion,omitempty" yaml:"conditionVersion,omitempty"`
	Description      string `json:"description,omitempty" yaml:"description,omitempty"`
}

// Lock levels as ARM spells them.
const (
	LockCanNotDelete = "CanNotDelete"
	LockReadOnly     = "ReadOnly"
)

// Lock is a management lock on a scope.
type Lock struct {
	Scope string `json:"scope" yaml:"scope"`
	Name  string `json:"name" yaml:"name"`
	Level string `json:"level" yaml:"level"`
	Notes string `json:"notes,omitempty" yaml:"notes,omitempty"`
}

// GitHubIssuerPlaceholder in a federated credential's issuer is replaced by
// the emulator's own GitHub OIDC issuer URL at start, because the port is
// known only then.
const GitHubIssuerPlaceholder = "${EMULATOR_GITHUB_ISSUER}"

//go:embed demo.yaml
var demoSeedYAML []byte

// DemoSeedYAML returns the text of the demo seed that DefaultSeed parses;
// examples/emulator/demo.yaml is a copy that a test keeps equal.
func DemoSeedYAML() []byte { return bytes.Clone(demoSeedYAML) }

// DefaultSeed returns the demo tenant: subscription, resource group
// rg-elevate-demo with Key Vault kv-elevate-demo and storage account
// stelevatedemo, the elevate-pipeline service principal with its standing
// RBAC Administrator assignment, and the user approver@contoso.example.
func DefaultSeed() Seed {
	seed, err := parseSeed(demoSeedYAML, ".yaml")
	if err != nil {
		// The file is embedded at build time and TestDefaultSeedValid parses
		// it, so this is a build defect, not bad input.
		panic(fmt.Sprintf("parse embedded demo seed: %v", err))
	}
	return seed
}

// LoadSeed reads a seed from a .yaml, .yml or .json file. Unknown fields are
// errors that name the field, so a typo does not silently drop state.
func LoadSeed(path string) (Seed, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Seed{}, fmt.Errorf("load seed: %w", err)
	}
	seed, err := parseSeed(data, strings.ToLower(filepath.Ext(path)))
	if err != nil {
		return Seed{}, fmt.Errorf("load seed %q: %w", path, err)
	}
	return seed, nil
}

func parseSeed(data []byte, ext string) (Seed, error) {
	var seed Seed
	switch ext {
	case ".yaml", ".yml":
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&seed); err != nil {
			return Seed{}, fmt.Errorf("parse YAML: %w", err)
		}
	case ".json":
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&seed); err != nil {
			return Seed{}, fmt.Errorf("parse JSON: %w", err)
		}
	default:
		return Seed{}, fmt.Errorf("unsupported seed file extension %q; use .yaml, .yml or .json", ext)
	}
	return seed, nil
}

// isZero reports whether the seed is the zero value, which Start replaces
// with DefaultSeed.
func (s Seed) isZero() bool {
	return s.Tenant == (Tenant{}) && len(s.Subscriptions) == 0 && len(s.Principals) == 0 &&
		len(s.RoleAssignments) == 0 && len(s.Locks) == 0 && len(s.Eligibilities) == 0 &&
		len(s.RolePolicies) == 0
}
