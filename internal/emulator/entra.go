package emulator

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// accessTokenLifetime is the lifetime of issued access tokens; Entra's
// default is about an hour and it reports expires_in 3599.
const accessTokenLifetime = 3599 * time.Second

// assertionTypeJWTBearer is the only client_assertion_type Entra accepts.
const assertionTypeJWTBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// armAudiences are the token audiences ARM accepts.
var armAudiences = []string{
	"https://management.azure.com",
	"https://management.azure.com/",
	"https://management.core.windows.net",
	"https://management.core.windows.net/",
}

// oidcScopes are the scopes MSAL adds to every request; they name no
// resource, so the token endpoint ignores them.
var oidcScopes = []string{"openid", "profile", "offline_access"}

// isEntraPath reports whether p is one of the Entra endpoints:
// /{tenant}/v2.0/.well-known/openid-configuration,
// /{tenant}/discovery/v2.0/keys or /{tenant}/oauth2/v2.0/token.
func isEntraPath(p string) bool {
	_, ep := splitEntraPath(p)
	return ep != ""
}

func splitEntraPath(p string) (tenant, endpoint string) {
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	if len(parts) != 4 || parts[0] == "" || strings.HasPrefix(parts[0], "_") {
		return "", ""
	}
	switch strings.Join(parts[1:], "/") {
	case "v2.0/.well-known/openid-configuration":
		return parts[0], "openid-configuration"
	case "discovery/v2.0/keys":
		return parts[0], "keys"
	case "oauth2/v2.0/token":
		return parts[0], "token"
	}
	return "", ""
}

func (s *Server) serveEntra(w http.ResponseWriter, r *http.Request) {
	tenant, endpoint := splitEntraPath(r.URL.Path)
	correlation := r.Header.Get("client-request-id")
	if !strings.EqualFold(tenant, s.TenantID()) {
		writeEntraError(w, http.StatusBadRequest, "invalid_tenant", 90002, fmt.Sprintf(
			"Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.", tenant), correlation)
		return
	}
	switch endpoint {
	case "openid-configuration":
		if r.Method != http.MethodGet {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		writeJSON(w, http.StatusOK, s.openIDConfiguration())
	case "keys":
		if r.Method != http.MethodGet {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		writeJSON(w, http.StatusOK, s.entra.jwks())
	case "token":
		if r.Method != http.MethodPost {
			writeEntraError(w, http.StatusMethodNotAllowed, "invalid_request", 900561,
				"The endpoint only accepts POST requests.", correlation)
			return
		}
		s.serveToken(w, r, correlation)
	}
}

// openIDConfiguration returns the tenant's discovery document. MSAL reads
// authorization_endpoint, token_endpoint and issuer, and requires the
// issuer's host to equal the authority host.
func (s *Server) openIDConfiguration() map[string]any {
	base := s.url + "/" + s.TenantID()
	return map[string]any{
		"issuer":                                base + "/v2.0",
		"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
		"token_endpoint":                        base + "/oauth2/v2.0/token",
		"jwks_uri":                              base + "/discovery/v2.0/keys",
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"response_modes_supported":              []string{"query", "fragment", "form_post"},
		"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
		"subject_types_supported":               []string{"pairwise"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"claims_supported":                      []string{"sub", "iss", "aud", "exp", "iat", "nbf", "oid", "tid", "appid"},
		"request_uri_parameter_supported":       false,
		"tenant_region_scope":                   "EU",
		"cloud_instance_name":                   "localhost",
	}
}

// tokenError is a token endpoint failure: HTTP status, OAuth error code,
// AADSTS number and message.
type tokenError struct {
	status  int
	oauth   string
	aadsts  int
	message string
}

func (e *tokenError) Error() string { return fmt.Sprintf("AADSTS%d: %s", e.aadsts, e.message) }

func missingParameter(name string) *tokenError {
	return &tokenError{http.StatusBadRequest, "invalid_request", 900144,
		fmt.Sprintf("The request body must contain the following parameter: '%s'.", name)}
}

// serveToken runs the client credentials grant with a client secret or a
// federated client assertion.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request, correlation string) {
	token, err := s.exchange(r)
	if err != nil {
		var te *tokenError
		if !errors.As(err, &te) {
			te = &tokenError{http.StatusBadRequest, "invalid_request", 900144, err.Error()}
		}
		s.log.Info("token request rejected", "client_id", r.PostForm.Get("client_id"), "error", te.Error())
		writeEntraError(w, te.status, te.oauth, te.aadsts, te.message, correlation)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type":     "Bearer",
		"expires_in":     int(accessTokenLifetime.Seconds()),
		"ext_expires_in": int(accessTokenLifetime.Seconds()),
		"access_token":   token,
	})
}

// exchange checks the token request step by step, in the order Entra
// reports problems, and returns a signed access token.
func (s *Server) exchange(r *http.Request) (string, error) {
	// Form: a body over the size limit or not form-encoded is invalid.
	if err := r.ParseForm(); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return "", &tokenError{http.StatusRequestEntityTooLarge, "invalid_request", 90015, "The request body is too large."}
		}
		return "", &tokenError{http.StatusBadRequest, "invalid_request", 900144, "The request body could not be parsed as a form."}
	}
	form := r.PostForm

	// Grant type: only client credentials are emulated.
	grant := form.Get("grant_type")
	if grant == "" {
		return "", missingParameter("grant_type")
	}
	if grant != "client_credentials" {
		return "", &tokenError{http.StatusBadRequest, "unsupported_grant_type", 70003,
			fmt.Sprintf("The app requested an unsupported grant type '%s'.", grant)}
	}

	// Client: the app id must belong to a service principal.
	clientID := form.Get("client_id")
	if clientID == "" {
		return "", missingParameter("client_id")
	}
	s.st.mu.Lock()
	app, ok := s.st.apps[strings.ToLower(clientID)]
	var p Principal
	if ok {
		p = *app
		p.FederatedCredentials = slices.Clone(app.FederatedCredentials)
	}
	s.st.mu.Unlock()
	if !ok {
		return "", &tokenError{http.StatusBadRequest, "unauthorized_client", 700016, fmt.Sprintf(
			"Application with identifier '%s' was not found in the directory '%s'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
			clientID, s.cfg.Seed.Tenant.DisplayName)}
	}

	// Scope: exactly one resource, as RESOURCE/.default.
	resource, err := s.scopeResource(form.Get("scope"))
	if err != nil {
		return "", err
	}

	// Credential: a client secret or a federated assertion.
	var acr string
	switch {
	case form.Has("client_secret"):
		if p.ClientSecret == "" || subtle.ConstantTimeCompare([]byte(form.Get("client_secret")), []byte(p.ClientSecret)) != 1 {
			return "", &tokenError{http.StatusUnauthorized, "invalid_client", 7000215, fmt.Sprintf(
				"Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.", p.AppID)}
		}
		acr = "1"
	case form.Has("client_assertion"):
		if t := form.Get("client_assertion_type"); t != assertionTypeJWTBearer {
			if t == "" {
				return "", missingParameter("client_assertion_type")
			}
			return "", &tokenError{http.StatusBadRequest, "invalid_request", 7000219,
				fmt.Sprintf("The client_assertion_type '%s' is not supported; use '%s'.", t, assertionTypeJWTBearer)}
		}
		if err := s.checkFederatedAssertion(p, form.Get("client_assertion")); err != nil {
			return "", err
		}
		acr = "2"
	default:
		return "", &tokenError{http.StatusUnauthorized, "invalid_client", 7000218,
			"The request body must contain the following parameter: 'client_assertion' or 'client_secret'."}
	}
	return s.signAccessToken(p, resource, acr, accessTokenLifetime)
}

// scopeResource returns the resource of a client credentials scope such as
// "https://management.azure.com/.default openid profile offline_access".
func (s *Server) scopeResource(scope string) (string, error) {
	if strings.TrimSpace(scope) == "" {
		return "", missingParameter("scope")
	}
	var resources []string
	for _, sc := range strings.Fields(scope) {
		if !slices.Contains(oidcScopes, sc) {
			resources = append(resources, sc)
		}
	}
	invalid := &tokenError{http.StatusBadRequest, "invalid_scope", 70011, fmt.Sprintf(
		"The provided value for the input parameter 'scope' is not valid. The scope %s is not valid.", scope)}
	if len(resources) != 1 || !strings.HasSuffix(resources[0], "/.default") {
		return "", invalid
	}
	resource := strings.TrimSuffix(resources[0], "/.default")
	known := append(slices.Clone(armAudiences), s.VaultResource(), s.VaultResource()+"/")
	known = append(known, s.graphAudiences()...)
	if !slices.Contains(known, resource) {
		return "", &tokenError{http.StatusBadRequest, "invalid_resource", 500011, fmt.Sprintf(
			"The resource principal named %s was not found in the tenant named %s. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.",
			resource, s.cfg.Seed.Tenant.DisplayName)}
	}
	return resource, nil
}

// checkFederatedAssertion verifies an external token against the
// principal's federated credentials: signature by the emulator's GitHub
// issuer, validity window, then issuer, subject and audience compared
// exactly and case-sensitively, as Entra does.
func (s *Server) checkFederatedAssertion(p Principal, raw string) error {
	// Read iss before verifying, to pick the issuer's keys as Entra does.
	unverified := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(raw, unverified); err != nil {
		return &tokenError{http.StatusBadRequest, "invalid_request", 50027,
			"JWT token is invalid or malformed."}
	}
	iss := claimString(unverified, "iss")
	var byIssuer []FederatedCredential
	for _, fc := range p.FederatedCredentials {
		if fc.Issuer == iss {
			byIssuer = append(byIssuer, fc)
		}
	}
	if len(byIssuer) == 0 || iss != s.GitHubIssuer() {
		return &tokenError{http.StatusUnauthorized, "invalid_client", 700211, fmt.Sprintf(
			"No matching federated identity record found for presented assertion issuer '%s'. Check your federated identity credential Subject, Audience and Issuer against the presented assertion.", iss)}
	}

	// Signature: only the emulator's own GitHub issuer keys are trusted.
	claims, err := s.github.parse(raw)
	if err != nil {
		return &tokenError{http.StatusUnauthorized, "invalid_client", 700027,
			"Client assertion failed signature validation."}
	}

	// Validity window: nbf <= now < exp, without clock skew allowance.
	now := s.now()
	nbf, hasNBF := claimTime(claims, "nbf")
	exp, hasExp := claimTime(claims, "exp")
	if !hasExp || !now.Before(exp) || (hasNBF && now.Before(nbf)) {
		return &tokenError{http.StatusUnauthorized, "invalid_client", 700024, fmt.Sprintf(
			"Client assertion is not within its valid time range. Current time: %s, assertion valid from %s, expiry time of assertion %s.",
			now.UTC().Format(time.RFC3339), nbf.UTC().Format(time.RFC3339), exp.UTC().Format(time.RFC3339))}
	}

	// Subject, then audience, each compared exactly.
	sub := claimString(claims, "sub")
	var bySubject []FederatedCredential
	foldMatch := false
	for _, fc := range byIssuer {
		if fc.Subject == sub {
			bySubject = append(bySubject, fc)
		} else if strings.EqualFold(fc.Subject, sub) {
			foldMatch = true
		}
	}
	if len(bySubject) == 0 {
		if foldMatch {
			return &tokenError{http.StatusUnauthorized, "invalid_client", 7002138, fmt.Sprintf(
				"No matching federated identity record found for presented assertion subject '%s'. The subject matches with case-insensitive comparison, but not with case-sensitive comparison. Check your federated identity credential Subject, Audience and Issuer against the presented assertion.", sub)}
		}
		return &tokenError{http.StatusUnauthorized, "invalid_client", 700213, fmt.Sprintf(
			"No matching federated identity record found for presented assertion subject '%s'. Check your federated identity credential Subject, Audience and Issuer against the presented assertion.", sub)}
	}
	auds := claimAudiences(claims)
	for _, fc := range bySubject {
		for _, a := range auds {
			if slices.Contains(fc.Audiences, a) {
				return nil
			}
		}
	}
	return &tokenError{http.StatusUnauthorized, "invalid_client", 700212, fmt.Sprintf(
		"No matching federated identity record found for presented assertion audience '%s'. Check your federated identity credential Subject, Audience and Issuer against the presented assertion.", strings.Join(auds, ","))}
}

// signAccessToken issues an access token for the principal. acr is Entra's
// appidacr: "1" for a client secret, "2" for an assertion, "0" for none.
func (s *Server) signAccessToken(p Principal, audience, acr string, ttl time.Duration) (string, error) {
	now := s.now()
	claims := jwt.MapClaims{
		"aud":      audience,
		"iss":      s.entra.url,
		"iat":      now.Unix(),
		"nbf":      now.Unix(),
		"exp":      now.Add(ttl).Unix(),
		"oid":      p.ObjectID,
		"sub":      p.ObjectID,
		"tid":      s.TenantID(),
		"ver":      "1.0",
		"appidacr": acr,
	}
	if p.AppID != "" {
		claims["appid"] = p.AppID
		claims["azp"] = p.AppID
		claims["idtyp"] = "app"
	} else {
		claims["upn"] = p.DisplayName
		claims["idtyp"] = "user"
	}
	return s.entra.sign(claims, "RS256")
}

// IssueToken returns an access token for a principal in the directory, as
// if it had signed in; a test helper that skips the token endpoint.
func (s *Server) IssueToken(principalObjectID, audience string, ttl time.Duration) (string, error) {
	s.st.mu.Lock()
	p, ok := s.st.principals[strings.ToLower(principalObjectID)]
	var copied Principal
	if ok {
		copied = *p
	}
	s.st.mu.Unlock()
	if !ok {
		return "", fmt.Errorf("issue token: principal %q not found; add it to the seed or with AddPrincipal", principalObjectID)
	}
	if ttl <= 0 {
		ttl = accessTokenLifetime
	}
	return s.signAccessToken(copied, audience, "0", ttl)
}

// tokenProblem is why a bearer token was not accepted.
type tokenProblem int

const (
	tokenValid tokenProblem = iota
	tokenMissing
	tokenInvalid // malformed, bad signature, or wrong issuer or tenant
	tokenExpired
	tokenNotYetValid
	tokenWrongAudience
)

// bearerClaims are the verified claims the emulator uses.
type bearerClaims struct {
	ObjectID string
	AppID    string
	UPN      string
	TenantID string
	Audience string
	Expiry   time.Time
}

// verifyBearer checks the request's bearer token: signature by the
// emulator's Entra keys, issuer, tenant, validity window and audience.
func (s *Server) verifyBearer(r *http.Request, audiences []string) (bearerClaims, tokenProblem) {
	var bc bearerClaims
	h := r.Header.Get("Authorization")
	scheme, raw, ok := strings.Cut(h, " ")
	if h == "" || !ok || !strings.EqualFold(scheme, "Bearer") {
		if h == "" {
			return bc, tokenMissing
		}
		return bc, tokenInvalid
	}
	claims, err := s.entra.parse(strings.TrimSpace(raw))
	if err != nil {
		return bc, tokenInvalid
	}
	if claimString(claims, "iss") != s.entra.url || !strings.EqualFold(claimString(claims, "tid"), s.TenantID()) {
		return bc, tokenInvalid
	}
	bc = bearerClaims{
		ObjectID: claimString(claims, "oid"),
		AppID:    claimString(claims, "appid"),
		UPN:      claimString(claims, "upn"),
		TenantID: claimString(claims, "tid"),
	}
	auds := claimAudiences(claims)
	if len(auds) > 0 {
		bc.Audience = auds[0]
	}
	now := s.now()
	exp, hasExp := claimTime(claims, "exp")
	bc.Expiry = exp
	if !hasExp || !now.Before(exp) {
		return bc, tokenExpired
	}
	if nbf, ok := claimTime(claims, "nbf"); ok && now.Before(nbf) {
		return bc, tokenNotYetValid
	}
	for _, a := range auds {
		if slices.Contains(audiences, a) {
			return bc, tokenValid
		}
	}
	return bc, tokenWrongAudience
}
