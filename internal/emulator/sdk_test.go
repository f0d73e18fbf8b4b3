package emulator

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/authorization/armauthorization/v2"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"
)

// TestSDKGrantUseRevoke runs Elevate's core flow with the official clients:
// sign in, grant a Key Vault role, wait out propagation, use the secret,
// revoke.
func TestSDKGrantUseRevoke(t *testing.T) {
	s := startServer(t, Config{PropagationDelay: 50 * time.Millisecond})
	ctx := context.Background()
	cred := pipelineCredential(t, s)

	tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{"https://management.azure.com/.default"}})
	if err != nil {
		t.Fatalf("GetToken: %v", err)
	}
	if tok.Token == "" {
		t.Fatalf("got empty token; want a JWT")
	}

	assignments, err := armauthorization.NewRoleAssignmentsClient(demoSubscription, cred, armOptions(s))
	if err != nil {
		t.Fatalf("NewRoleAssignmentsClient: %v", err)
	}
	name := "0f6b8b7e-7c47-4d6f-9d0e-3a1c2b4d5e6f"
	roleID := "/subscriptions/" + demoSubscription + "/providers/Microsoft.Authorization/roleDefinitions/" + RoleKeyVaultSecretsOfficer
	created, err := assignments.Create(ctx, demoVault, name, armauthorization.RoleAssignmentCreateParameters{
		Properties: &armauthorization.RoleAssignmentProperties{
			PrincipalID:      to.Ptr(demoPipelineOID),
			RoleDefinitionID: to.Ptr(roleID),
			PrincipalType:    to.Ptr(armauthorization.PrincipalTypeServicePrincipal),
		},
	}, nil)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if got := *created.Name; got != name {
		t.Errorf("created name: got %q; want %q", got, name)
	}

	// Wait until the permission shows as effective, as Elevate polls.
	perms, err := armauthorization.NewPermissionsClient(demoSubscription, cred, armOptions(s))
	if err != nil {
		t.Fatalf("NewPermissionsClient: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if hasDataAction(t, perms, "Microsoft.KeyVault/vaults/secrets/setSecret/action") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("permission not effective after 5 s; want effective after 50 ms")
		}
		time.Sleep(10 * time.Millisecond)
	}

	secrets, err := azsecrets.NewClient(s.VaultURL("kv-elevate-demo"), cred, &azsecrets.ClientOptions{ClientOptions: clientOptions(s)})
	if err != nil {
		t.Fatalf("azsecrets.NewClient: %v", err)
	}
	if _, err := secrets.SetSecret(ctx, "app-db-password", azsecrets.SetSecretParameters{Value: to.Ptr("rotated")}, nil); err != nil {
		t.Fatalf("SetSecret: %v", err)
	}
	got, err := secrets.GetSecret(ctx, "app-db-password", "", nil)
	if err != nil {
		t.Fatalf("GetSecret: %v", err)
	}
	if *got.Value != "rotated" {
		t.Errorf("secret value: got %q; want %q", *got.Value, "rotated")
	}
	pager := secrets.NewListSecretPropertiesVersionsPager("app-db-password", nil)
	versions := 0
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatalf("list versions: %v", err)
		}
		versions += len(page.Value)
	}
	if versions != 2 {
		t.Errorf("versions: got %d; want 2", versions)
	}

	if _, err := assignments.Delete(ctx, demoVault, name, nil); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	for _, a := range s.RoleAssignments() {
		if a.Name == name {
			t.Errorf("assignment %s still live after delete", name)
		}
	}
}

// hasDataAction reports whether the permissions list at the demo vault
// grants action.
func hasDataAction(t *testing.T, c *armauthorization.PermissionsClient, action string) bool {
	t.Helper()
	pager := c.NewListForResourcePager("rg-elevate-demo", "Microsoft.KeyVault", "", "vaults", "kv-elevate-demo", nil)
	for pager.More() {
		page, err := pager.NextPage(context.Background())
		if err != nil {
			t.Fatalf("list permissions: %v", err)
		}
		for _, p := range page.Value {
			for _, a := range p.DataActions {
				if actionMatches(*a, action) {
					return true
				}
			}
		}
	}
	return false
}

// TestSDKErrorCodes checks the ARM error codes an SDK caller sees as
// *azcore.ResponseError.
func TestSDKErrorCodes(t *testing.T) {
	s := startServer(t, Config{Seed: unconditionedDemoSeed()})
	ctx := context.Background()
	cred := pipelineCredential(t, s)
	client, err := armauthorization.NewRoleAssignmentsClient(demoSubscription, cred, armOptions(s))
	if err != nil {
		t.Fatalf("NewRoleAssignmentsClient: %v", err)
	}
	params := func(role, principal string) armauthorization.RoleAssignmentCreateParameters {
		return armauthorization.RoleAssignmentCreateParameters{Properties: &armauthorization.RoleAssignmentProperties{
			PrincipalID:      to.Ptr(principal),
			RoleDefinitionID: to.Ptr("/subscriptions/" + demoSubscription + "/providers/Microsoft.Authorization/roleDefinitions/" + role),
			PrincipalType:    to.Ptr(armauthorization.PrincipalTypeServicePrincipal),
		}}
	}
	first := "11111111-1111-4111-8111-111111111111"
	if _, err := client.Create(ctx, demoRG, first, params(RoleReader, demoPipelineOID), nil); err != nil {
		t.Fatalf("Create first: %v", err)
	}
	tests := []struct {
		name       string
		scope      string
		assignment string
		params     armauthorization.RoleAssignmentCreateParameters
		status     int
		code       string
	}{
		{"duplicate under another name", demoRG, "22222222-2222-4222-8222-222222222222", params(RoleReader, demoPipelineOID), 409, "RoleAssignmentExists"},
		{"same name other role", demoRG, first, params(RoleContributor, demoPipelineOID), 400, "RoleAssignmentUpdateNotPermitted"},
		{"unknown principal", demoRG, "33333333-3333-4333-8333-333333333333", params(RoleReader, "99999999-9999-4999-8999-999999999999"), 400, "PrincipalNotFound"},
		{"unknown role definition", demoRG, "44444444-4444-4444-8444-444444444444", params("99999999-9999-4999-8999-999999999999", demoPipelineOID), 400, "InvalidRoleDefinitionId"},
		{"scope outside delegation", "/subscriptions/" + demoSubscription, "55555555-5555-4555-8555-555555555555", params(RoleReader, demoPipelineOID), 403, "AuthorizationFailed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := client.Create(ctx, tc.scope, tc.assignment, tc.params, nil)
			var re *azcore.ResponseError
			if !errors.As(err, &re) {
				t.Fatalf("got error %v; want *azcore.ResponseError", err)
			}
			if re.StatusCode != tc.status {
				t.Errorf("status: got %d; want %d", re.StatusCode, tc.status)
			}
			if re.ErrorCode != tc.code {
				t.Errorf("code: got %q; want %q", re.ErrorCode, tc.code)
			}
		})
	}
}

// TestSDKFederatedAssertion signs in with a GitHub token from the
// emulator's issuer through ClientAssertionCredential.
func TestSDKFederatedAssertion(t *testing.T) {
	s := startServer(t, Config{})
	tests := []struct {
		name    string
		subject string
		aud     string
		wantErr bool
	}{
		{"matching environment subject", "repo:contoso/payments:environment:production", AzureTokenExchangeAudience, false},
		{"subject differs in case", "repo:Contoso/payments:environment:production", AzureTokenExchangeAudience, true},
		{"other branch subject", "repo:contoso/payments:ref:refs/heads/main", AzureTokenExchangeAudience, true},
		{"wrong audience", "repo:contoso/payments:environment:production", "https://github.com/contoso", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assertion := func(context.Context) (string, error) {
				return s.MintGitHubToken(map[string]any{"sub": tc.subject, "aud": tc.aud, "repository": "contoso/payments"})
			}
			cred, err := azidentity.NewClientAssertionCredential(demoTenant, demoPipelineApp, assertion,
				&azidentity.ClientAssertionCredentialOptions{ClientOptions: clientOptions(s), DisableInstanceDiscovery: true})
			if err != nil {
				t.Fatalf("NewClientAssertionCredential: %v", err)
			}
			_, err = cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{"https://management.azure.com/.default"}})
			if gotErr := err != nil; gotErr != tc.wantErr {
				t.Fatalf("GetToken error: got %v; want error %v", err, tc.wantErr)
			}
		})
	}
}
