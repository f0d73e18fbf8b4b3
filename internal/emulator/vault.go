package emulator

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/elevate-dev/elevate/internal/emulator/keyvault"
)

// vaultResourceType is the ARM type of Key Vaults.
const vaultResourceType = "Microsoft.KeyVault/vaults"

// SecretVersion is one version of a Key Vault secret.
type SecretVersion = keyvault.SecretVersion

// vaultBackend serves the Key Vault data plane on NAME.vault.localhost.
type vaultBackend interface {
	http.Handler
	SecretVersions(vault, name string) []SecretVersion
}

// newVaultBackend creates the Key Vault data plane with every seeded vault
// and its initial secrets, authorized by s.authorizeVault.
func newVaultBackend(s *Server) (vaultBackend, error) {
	svc := keyvault.New(keyvault.Options{
		Authorize: s.authorizeVault,
		Now:       s.now,
		Logger:    s.log,
	})
	for _, sub := range s.cfg.Seed.Subscriptions {
		for _, rg := range sub.ResourceGroups {
			for _, res := range rg.Resources {
				if !strings.EqualFold(res.Type, vaultResourceType) {
					continue
				}
				id := ResourceID{Subscription: sub.ID, ResourceGroup: rg.Name, Provider: "Microsoft.KeyVault",
					Types: []string{"vaults"}, Names: []string{res.Name}}
				loc := res.Location
				if loc == "" {
					loc = rg.Location
				}
				if err := svc.AddVault(keyvault.Vault{Name: res.Name, ResourceID: id.String(), Location: loc}); err != nil {
					return nil, fmt.Errorf("seed vault %q: %w", res.Name, err)
				}
				for _, sec := range res.Secrets {
					if _, err := svc.SetSecret(res.Name, sec.Name, sec.Value, sec.Tags); err != nil {
						return nil, fmt.Errorf("seed secret %q in vault %q: %w", sec.Name, res.Name, err)
					}
				}
			}
		}
	}
	return svc, nil
}

// SecretVersions returns every version of a secret, oldest first; for tests.
func (s *Server) SecretVersions(vault, name string) []SecretVersion {
	return s.vaults.SecretVersions(vault, name)
}

// authorizeVault is the Key Vault data plane's Authorizer: a bearer token
// for the vault audience, then the data action by RBAC at the vault (or at
// the secret, for the message), honoring the propagation delay.
func (s *Server) authorizeVault(r *http.Request, v keyvault.Vault, dataAction string) error {
	challenge := fmt.Sprintf(`Bearer authorization="%s/%s", resource="%s"`, s.url, s.TenantID(), s.VaultResource())
	bc, problem := s.verifyBearer(r, []string{s.VaultResource(), s.VaultResource() + "/"})
	switch problem {
	case tokenValid:
	case tokenMissing:
		return &keyvault.AuthError{Status: http.StatusUnauthorized, Code: "Unauthorized",
			Message: "AKV10000: Request is missing a Bearer or PoP token.", Challenge: challenge}
	case tokenWrongAudience:
		return &keyvault.AuthError{Status: http.StatusUnauthorized, Code: "Unauthorized",
			Message: fmt.Sprintf("AKV10022: Invalid audience. Expected %s, found: %s.", s.VaultResource(), bc.Audience), Challenge: challenge}
	case tokenExpired:
		return &keyvault.AuthError{Status: http.StatusUnauthorized, Code: "Unauthorized",
			Message: "The access token is expired.", Challenge: challenge}
	default:
		return &keyvault.AuthError{Status: http.StatusUnauthorized, Code: "Unauthorized",
			Message: "The access token is invalid.", Challenge: challenge}
	}

	vaultID, err := ParseResourceID(v.ResourceID)
	if err != nil {
		return fmt.Errorf("authorize vault %q: %w", v.Name, err)
	}
	s.st.mu.Lock()
	ok := s.st.allowed(bc.ObjectID, dataAction, true, vaultID, s.now(), s.propagationDelay())
	s.st.mu.Unlock()
	if ok {
		return nil
	}
	resource := strings.ToLower(v.ResourceID)
	if name, found := secretNameFromPath(r.URL.Path); found {
		resource += "/secrets/" + name
	}
	return &keyvault.AuthError{Status: http.StatusForbidden, Code: "Forbidden", Message: fmt.Sprintf(
		"Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\nCaller: appid=%s;oid=%s;iss=%s\r\nAction: '%s'\r\nResource: '%s'\r\nAssignment: (not found)\r\nDenyAssignmentId: null\r\nDecisionReason: 'DeniedWithNoValidRBAC' \r\nVault: %s;location=%s\r\n",
		bc.AppID, bc.ObjectID, s.entra.url, dataAction, resource, v.Name, v.Location)}
}

// secretNameFromPath returns NAME from /secrets/NAME[/...] or
// /deletedsecrets/NAME[/...].
func secretNameFromPath(p string) (string, bool) {
	parts := strings.Split(strings.Trim(p, "/"), "/")
	if len(parts) < 2 || (parts[0] != "secrets" && parts[0] != "deletedsecrets") || parts[1] == "" {
		return "", false
	}
	return parts[1], true
}
