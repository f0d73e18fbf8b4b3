package emulator

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// gitHubTokenLifetime matches the lifetime of GitHub Actions OIDC tokens
// (exp - iat is 300 s in GitHub's documented example token).
const gitHubTokenLifetime = 5 * time.Minute

// AzureTokenExchangeAudience is the audience Azure federated credentials
// expect in a GitHub token.
const AzureTokenExchangeAudience = "api://AzureADTokenExchange"

// serveGitHub serves the issuer's discovery document and JWKS under
// URL()/github, and the Actions token request endpoint under
// URL()/github/_actions/token.
func (s *Server) serveGitHub(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	iss := s.GitHubIssuer()
	switch r.URL.Path {
	case actionsTokenPath:
		s.serveActionsToken(w, r)
	case "/github/.well-known/openid-configuration":
		writeJSON(w, http.StatusOK, map[string]any{
			"issuer":                                iss,
			"jwks_uri":                              iss + "/.well-known/jwks",
			"subject_types_supported":               []string{"public", "pairwise"},
			"response_types_supported":              []string{"id_token"},
			"claims_supported":                      []string{"sub", "aud", "exp", "iat", "iss", "jti", "nbf", "ref", "sha", "repository", "repository_id", "repository_owner", "repository_owner_id", "run_id", "run_number", "run_attempt", "actor", "actor_id", "workflow", "workflow_ref", "workflow_sha", "head_ref", "base_ref", "event_name", "ref_type", "ref_protected", "environment", "job_workflow_ref", "job_workflow_sha", "repository_visibility", "runner_environment"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
			"scopes_supported":                      []string{"openid"},
		})
	case "/github/.well-known/jwks":
		writeJSON(w, http.StatusOK, s.github.jwks())
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"message": "Not Found"})
	}
}

// MintGitHubToken returns a GitHub Actions OIDC token signed by the
// emulator's GitHub issuer. Claims override the defaults: iss
// GitHubIssuer(), aud api://AzureADTokenExchange, iat and nbf now, exp five
// minutes later, and a random jti. An "alg" entry of "ES256" selects the
// P-256 key instead of RS256 and is not kept as a claim.
func (s *Server) MintGitHubToken(claims map[string]any) (string, error) {
	now := s.now()
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", fmt.Errorf("mint GitHub token: %w", err)
	}
	c := jwt.MapClaims{
		"iss": s.GitHubIssuer(),
		"aud": AzureTokenExchangeAudience,
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(gitHubTokenLifetime).Unix(),
		"jti": hex.EncodeToString(jti),
	}
	alg := "RS256"
	for k, v := range claims {
		if k == "alg" {
			if a, ok := v.(string); ok {
				alg = a
			}
			continue
		}
		c[k] = v
	}
	if alg != "RS256" && alg != "ES256" {
		return "", fmt.Errorf("mint GitHub token: unsupported alg %q; use RS256 or ES256", alg)
	}
	return s.github.sign(c, alg)
}
