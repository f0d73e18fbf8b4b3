package cli

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/github"
)

func init() { commands = append(commands, newBootstrapCommand) }

// RBACAdministratorRoleID is the built-in Role Based Access Control
// Administrator role, which may manage role assignments but not resources.
const RBACAdministratorRoleID = "f58310d9-a9f6-439a-9e8d-f62e7b41a168"

// GitHubIssuer is the issuer of GitHub Actions OIDC tokens on github.com.
const GitHubIssuer = "https://token.actions.githubusercontent.com"

type bootstrapOptions struct {
	PrincipalID string
	AppID       string
	Roles       []string
	Scopes      []string
	Repo        string
	Environment string
	Output      string
}

// bootstrapResult is the JSON form of what bootstrap prints.
type bootstrapResult struct {
	FederatedCredential federatedCredential `json:"federated_credential"`
	Delegations         []delegation        `json:"delegations"`
	AzCLI               []string            `json:"az_cli"`
	Bicep               string              `json:"bicep"`
}

type federatedCredential struct {
	Name      string   `json:"name"`
	Issuer    string   `json:"issuer"`
	Subject   string   `json:"subject"`
	Audiences []string `json:"audiences"`
}

type delegation struct {
	Scope            string `json:"scope"`
	RoleDefinitionID string `json:"role_definition_id"`
	PrincipalID      string `json:"principal_id"`
	Condition        string `json:"condition"`
	ConditionVersion string `json:"condition_version"`
}

func newBootstrapCommand(streams Streams) *cobra.Command {
	var o bootstrapOptions
	cmd := &cobra.Command{
		Use:   "bootstrap --principal-id ID --scope SCOPE --role ROLE... --repo OWNER/NAME [flags]",
		Short: "Print the one-time set-up: federated credential and constrained delegation",
		Long: `Print what an administrator sets up once for a pipeline identity: the
federated credential that lets the repository's environment sign in without a
secret, and, per scope, a Role Based Access Control Administrator assignment
whose ABAC condition allows writing and deleting only the listed roles, only
for that identity. Printed as az CLI commands and as Bicep; nothing is changed.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			res, err := o.build()
			if err != nil {
				return err
			}
			if o.Output == "json" {
				enc := json.NewEncoder(streams.Out)
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			printBootstrap(streams, res)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.PrincipalID, "principal-id", "", "object id of the pipeline's service principal or managed identity (required)")
	fs.StringVar(&o.AppID, "app-id", "", "application (client) id of the pipeline identity, for the az command (default: a placeholder)")
	fs.StringArrayVar(&o.Roles, "role", nil, "role the pipeline may grant itself: a GUID or a built-in role name (repeatable)")
	fs.StringArrayVar(&o.Scopes, "scope", nil, "scope where it may grant them (repeatable)")
	fs.StringVar(&o.Repo, "repo", "OWNER/REPO", "GitHub repository that runs the workflow")
	fs.StringVar(&o.Environment, "environment", "production", "GitHub environment whose approval gate guards apply")
	fs.StringVarP(&o.Output, "output", "o", "text", "text or json")
	return cmd
}

func (o *bootstrapOptions) build() (bootstrapResult, error) {
	var res bootstrapResult
	if o.Output != "text" && o.Output != "json" {
		return res, &UsageError{fmt.Errorf("invalid --output %q: use text or json", o.Output)}
	}
	if !access.IsGUID(o.PrincipalID) {
		return res, &UsageError{fmt.Errorf("invalid --principal-id %q: want the object id (a GUID) of the pipeline identity", o.PrincipalID)}
	}
	if len(o.Roles) == 0 || len(o.Scopes) == 0 {
		return res, &UsageError{fmt.Errorf("missing --role or --scope: name the roles the pipeline may grant and where")}
	}
	if owner, name, ok := strings.Cut(o.Repo, "/"); !ok || owner == "" || name == "" || strings.ContainsAny(o.Repo, " :") {
		return res, &UsageError{fmt.Errorf("invalid --repo %q: use OWNER/NAME", o.Repo)}
	}
	if o.Environment == "" || strings.ContainsAny(o.Environment, ":\n") {
		return res, &UsageError{fmt.Errorf("invalid --environment %q: name the GitHub environment, such as production", o.Environment)}
	}
	guids, err := bootstrapRoleGUIDs(o.Roles)
	if err != nil {
		return res, err
	}
	cred := federatedCredential{
		Name:      strings.NewReplacer("/", "-", ".", "-").Replace(o.Repo) + "-" + o.Environment,
		Issuer:    GitHubIssuer,
		Subject:   "repo:" + o.Repo + ":environment:" + o.Environment,
		Audiences: []string{github.AzureAudience},
	}
	res.FederatedCredential = cred
	condition := DelegationCondition(guids, o.PrincipalID)
	appID := o.AppID
	if appID == "" {
		appID = "<APP_ID>"
	}
	params, _ := json.Marshal(cred)
	res.AzCLI = append(res.AzCLI, fmt.Sprintf("az ad app federated-credential create --id %s --parameters %s", appID, shellQuote(string(params))))
	for _, s := range o.Scopes {
		scope, err := access.ParseResourceID(s)
		if err != nil {
			return res, err
		}
		res.Delegations = append(res.Delegations, delegation{
			Scope: scope.String(), RoleDefinitionID: RBACAdministratorRoleID, PrincipalID: o.PrincipalID,
			Condition: condition, ConditionVersion: "2.0",
		})
		res.AzCLI = append(res.AzCLI, fmt.Sprintf(
			"az role assignment create --assignee-object-id %s --assignee-principal-type ServicePrincipal --role %s --scope %s --condition-version 2.0 --condition %s --description %s",
			o.PrincipalID, RBACAdministratorRoleID, shellQuote(scope.String()), shellQuote(condition),
			shellQuote("Elevate: may grant only "+strings.Join(guids, ", ")+" to itself")))
	}
	res.Bicep = delegationBicep(guids, o.PrincipalID)
	return res, nil
}

func bootstrapRoleGUIDs(roles []string) ([]string, error) {
	var guids []string
	seen := map[string]bool{}
	for _, r := range roles {
		ref, err := access.ParseRoleRef(r)
		if err != nil {
			return nil, err
		}
		guid := ref.GUID
		if guid == "" {
			var ok bool
			if guid, ok = access.BuiltinRoleGUID(ref.Name); !ok {
				return nil, &UsageError{fmt.Errorf("invalid --role %q: bootstrap runs offline and knows only common built-in names; pass the role definition GUID", r)}
			}
		}
		if strings.EqualFold(guid, RBACAdministratorRoleID) || strings.EqualFold(guid, "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9") || strings.EqualFold(guid, "8e3af657-a8ff-443c-a75c-2fe8c4bcb635") {
			return nil, &UsageError{fmt.Errorf("invalid --role %q: a role that can itself write role assignments would let the pipeline escape the condition", r)}
		}
		if !seen[guid] {
			seen[guid] = true
			guids = append(guids, guid)
		}
	}
	return guids, nil
}

// DelegationCondition returns the ABAC condition (version 2.0) that lets the
// holder write and delete role assignments only for the given role GUIDs and
// only for principalID. Other actions of the role are unaffected, and it has
// no other action that changes access.
func DelegationCondition(roleGUIDs []string, principalID string) string {
	roles := strings.Join(roleGUIDs, ", ")
	clause := func(action, source string) string {
		return fmt.Sprintf("((!(ActionMatches{'%s'})) OR "+
			"(@%s[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {%s} AND "+
			"@%s[Microsoft.Authorization/roleAssignments:PrincipalId] ForAnyOfAnyValues:GuidEquals {%s}))",
			action, source, roles, source, principalID)
	}
	return clause("Microsoft.Authorization/roleAssignments/write", "Request") + " AND " +
		clause("Microsoft.Authorization/roleAssignments/delete", "Resource")
}

func delegationBicep(roleGUIDs []string, principalID string) string {
	return fmt.Sprintf(`// Deploy at the scope the pipeline may grant in (here: a resource group).
param pipelinePrincipalId string = '%s'
var allowedRoleIds = '%s'

resource elevateDelegation 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, pipelinePrincipalId, 'elevate-delegation')
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '%s')
    principalId: pipelinePrincipalId
    principalType: 'ServicePrincipal'
    description: 'Elevate: may grant only ${allowedRoleIds} to itself'
    conditionVersion: '2.0'
    condition: '%s'
  }
}
`, principalID, strings.Join(roleGUIDs, ", "), RBACAdministratorRoleID,
		strings.ReplaceAll(DelegationCondition(roleGUIDs, "${pipelinePrincipalId}"), "'", `\'`))
}

func printBootstrap(streams Streams, res bootstrapResult) {
	w := streams.Out
	fc := res.FederatedCredential
	fmt.Fprintf(w, "1. Federated credential on the pipeline identity (no secret stored in GitHub):\n")
	fmt.Fprintf(w, "   issuer   %s\n   subject  %s\n   audience %s\n\n", fc.Issuer, fc.Subject, strings.Join(fc.Audiences, ", "))
	fmt.Fprintf(w, "2. Constrained delegation, per scope: Role Based Access Control Administrator with this condition:\n   %s\n\n", res.Delegations[0].Condition)
	fmt.Fprintf(w, "az CLI:\n")
	for _, c := range res.AzCLI {
		fmt.Fprintf(w, "  %s\n", c)
	}
	fmt.Fprintf(w, "\nBicep:\n%s", res.Bicep)
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
