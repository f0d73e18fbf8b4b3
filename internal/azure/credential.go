package azure

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// Credential kinds accepted by ELEVATE_CREDENTIAL.
const (
	CredentialAuto            = "auto"
	CredentialSecret          = "client-secret"
	CredentialWorkload        = "workload-identity"
	CredentialGitHub          = "github-oidc"
	CredentialManagedIdentity = "managed-identity"
	CredentialAzureCLI        = "azure-cli"
)

// AssertionFunc returns a fresh client assertion, such as a GitHub Actions OIDC
// token, for each token exchange so that long waits never present an expired one.
type AssertionFunc func(ctx context.Context) (string, error)

// CredentialConfig selects and configures the credential.
type CredentialConfig struct {
	// Kind is one of the Credential* constants; "" means auto.
	Kind string
	// Getenv reads the variables that the Azure login action and azidentity use:
	// AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, AZURE_FEDERATED_TOKEN_FILE.
	Getenv func(string) string
	// GitHubAssertion is used for the github-oidc kind, and by auto when set.
	GitHubAssertion AssertionFunc
}

// NewCredential builds the credential that kind names. Auto picks, in order: a
// client secret, a federated token file, a GitHub Actions OIDC token, then the
// Azure CLI. Managed identity is only used when asked for, because probing for
// it contacts the instance metadata address outside Azure.
func NewCredential(env Environment, client *http.Client, cfg CredentialConfig) (azcore.TokenCredential, string, error) {
	get := cfg.Getenv
	tenant, clientID := get("AZURE_TENANT_ID"), get("AZURE_CLIENT_ID")
	opts := azcore.ClientOptions{Cloud: env.Cloud(), Transport: client}
	kind := cfg.Kind
	if kind == "" || kind == CredentialAuto {
		kind = pickCredential(get, cfg.GitHubAssertion != nil)
	}
	if kind != CredentialAzureCLI && kind != CredentialManagedIdentity {
		if err := requireIDs(tenant, clientID); err != nil {
			return nil, kind, fmt.Errorf("%s credential: %w", kind, err)
		}
	}
	var cred azcore.TokenCredential
	var err error
	switch kind {
	case CredentialSecret:
		cred, err = azidentity.NewClientSecretCredential(tenant, clientID, get("AZURE_CLIENT_SECRET"),
			&azidentity.ClientSecretCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: env.DisableInstanceDiscovery})
	case CredentialWorkload:
		cred, err = azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
			ClientOptions: opts, TenantID: tenant, ClientID: clientID,
			TokenFilePath: get("AZURE_FEDERATED_TOKEN_FILE"), DisableInstanceDiscovery: env.DisableInstanceDiscovery,
		})
	case CredentialGitHub:
		if cfg.GitHubAssertion == nil {
			return nil, kind, errors.New("github-oidc credential: ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN are not set; add `permissions: id-token: write` to the job")
		}
		cred, err = azidentity.NewClientAssertionCredential(tenant, clientID, cfg.GitHubAssertion,
			&azidentity.ClientAssertionCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: env.DisableInstanceDiscovery})
	case CredentialManagedIdentity:
		var id azidentity.ManagedIDKind
		if clientID != "" {
			id = azidentity.ClientID(clientID)
		}
		cred, err = azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{ClientOptions: opts, ID: id})
	case CredentialAzureCLI:
		cred, err = azidentity.NewAzureCLICredential(&azidentity.AzureCLICredentialOptions{TenantID: tenant})
	default:
		return nil, kind, fmt.Errorf("invalid ELEVATE_CREDENTIAL %q: use one of auto, %s, %s, %s, %s, %s",
			kind, CredentialSecret, CredentialWorkload, CredentialGitHub, CredentialManagedIdentity, CredentialAzureCLI)
	}
	if err != nil {
		return nil, kind, fmt.Errorf("%s credential: %w", kind, err)
	}
	return cred, kind, nil
}

func pickCredential(get func(string) string, github bool) string {
	switch {
	case get("AZURE_CLIENT_SECRET") != "":
		return CredentialSecret
	case get("AZURE_FEDERATED_TOKEN_FILE") != "":
		return CredentialWorkload
	case github:
		return CredentialGitHub
	default:
		return CredentialAzureCLI
	}
}

func requireIDs(tenant, clientID string) error {
	switch {
	case tenant == "":
		return errors.New("AZURE_TENANT_ID is not set: export the directory (tenant) id")
	case clientID == "":
		return errors.New("AZURE_CLIENT_ID is not set: export the application (client) id of the pipeline identity")
	}
	return nil
}

// Caller is the identity behind a credential, read from the claims of its own
// ARM access token. The claims are not verified here: the token came straight
// from the authority and is only used to name the caller.
type Caller struct {
	ObjectID string // oid
	TenantID string // tid
	AppID    string // appid or azp
	Type     string // ServicePrincipal or User
}

// WhoAmI requests an ARM token and reads the caller's ids from it.
func WhoAmI(ctx context.Context, cred azcore.TokenCredential, env Environment) (Caller, error) {
	tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{strings.TrimRight(env.ARMAudience, "/") + "/.default"}})
	if err != nil {
		return Caller{}, fmt.Errorf("get ARM token: %w", err)
	}
	return parseCaller(tok.Token)
}

func parseCaller(token string) (Caller, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return Caller{}, errors.New("read access token claims: token is not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return Caller{}, fmt.Errorf("read access token claims: %w", err)
	}
	var claims struct {
		OID    string `json:"oid"`
		TID    string `json:"tid"`
		AppID  string `json:"appid"`
		AZP    string `json:"azp"`
		IDType string `json:"idtyp"`
		UPN    string `json:"upn"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return Caller{}, fmt.Errorf("read access token claims: %w", err)
	}
	if claims.OID == "" {
		return Caller{}, errors.New("read access token claims: no oid claim")
	}
	c := Caller{ObjectID: claims.OID, TenantID: claims.TID, AppID: claims.AppID, Type: "ServicePrincipal"}
	if c.AppID == "" {
		c.AppID = claims.AZP
	}
	if claims.IDType == "user" || claims.UPN != "" {
		c.Type = "User"
	}
	return c, nil
}
