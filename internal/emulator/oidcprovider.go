package emulator

import (
	"cmp"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The emulator's user sign-in provider: a minimal OpenID Connect provider
// for the authorization code flow with PKCE, so a web UI under test signs
// people in for real. The sign-in page lists the directory's current users,
// including those added after start; choosing one signs in as that user with
// no password. It accepts any client id and only redirect URIs on loopback.

// authCodeLifetime bounds how long an authorization code can be redeemed.
const authCodeLifetime = time.Minute

// OIDCIssuer returns the issuer URL of the sign-in provider.
func (s *Server) OIDCIssuer() string { return s.url + "/oidc" }

type authCode struct {
	clientID, redirectURI, challenge, nonce string
	user                                    Principal
	expires                                 time.Time
}

// authCodes holds issued, unredeemed authorization codes.
type authCodes struct {
	mu    sync.Mutex
	codes map[string]authCode
}

func (a *authCodes) put(code string, c authCode) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.codes == nil {
		a.codes = map[string]authCode{}
	}
	a.codes[code] = c
}

// take returns and deletes a code, so each code is redeemed at most once.
func (a *authCodes) take(code string) (authCode, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.codes[code]
	delete(a.codes, code)
	return c, ok
}

func (s *Server) serveOIDC(w http.ResponseWriter, r *http.Request) {
	iss := s.OIDCIssuer()
	switch r.URL.Path {
	case "/oidc/.well-known/openid-configuration":
		writeJSON(w, http.StatusOK, map[string]any{
			"issuer":                                iss,
			"authorization_endpoint":                iss + "/authorize",
			"token_endpoint":                        iss + "/token",
			"jwks_uri":                              iss + "/jwks",
			"response_types_supported":              []string{"code"},
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
			"code_challenge_methods_supported":      []string{"S256"},
			"scopes_supported":                      []string{"openid", "profile", "email"},
			"grant_types_supported":                 []string{"authorization_code"},
		})
	case "/oidc/jwks":
		writeJSON(w, http.StatusOK, s.signin.jwks())
	case "/oidc/authorize":
		s.serveAuthorize(w, r)
	case "/oidc/token":
		s.serveOIDCToken(w, r)
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found"})
	}
}

var signInPage = template.Must(template.New("signin").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in: Elevate emulator</title></head>
<body><h1>Sign in to the Azure emulator</h1>
<p>Choose a user of the emulated tenant. No password is asked: this provider exists for tests.</p>
<form method="post">
{{range $k, $v := .Params}}<input type="hidden" name="{{$k}}" value="{{$v}}">
{{end}}{{range .Users}}<button type="submit" name="user" value="{{.ObjectID}}" id="user-{{.ObjectID}}">{{.DisplayName}}</button>
{{end}}</form></body></html>
`))

// serveAuthorize shows the user list (GET) and issues a code for the chosen
// user (POST), redirecting back to the client.
func (s *Server) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "invalid form", http.StatusBadRequest)
		return
	}
	q := r.Form
	redirect := q.Get("redirect_uri")
	if !loopbackRedirect(redirect) {
		http.Error(w, "invalid_request: redirect_uri must be an absolute URL on loopback", http.StatusBadRequest)
		return
	}
	switch {
	case q.Get("response_type") != "code":
		oidcRedirectError(w, r, redirect, q.Get("state"), "unsupported_response_type")
		return
	case q.Get("client_id") == "":
		oidcRedirectError(w, r, redirect, q.Get("state"), "invalid_request")
		return
	case q.Get("code_challenge") == "" || q.Get("code_challenge_method") != "S256":
		// PKCE with S256 is required, as OAuth 2.1 requires for public clients.
		oidcRedirectError(w, r, redirect, q.Get("state"), "invalid_request")
		return
	}
	users := s.users()
	if r.Method == http.MethodGet {
		params := map[string]string{}
		for _, k := range []string{"response_type", "client_id", "redirect_uri", "scope", "state", "nonce", "code_challenge", "code_challenge_method"} {
			params[k] = q.Get(k)
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = signInPage.Execute(w, map[string]any{"Params": params, "Users": users})
		return
	}
	var chosen *Principal
	for i := range users {
		if strings.EqualFold(users[i].ObjectID, q.Get("user")) {
			chosen = &users[i]
		}
	}
	if chosen == nil {
		oidcRedirectError(w, r, redirect, q.Get("state"), "access_denied")
		return
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		http.Error(w, "server_error", http.StatusInternalServerError)
		return
	}
	code := hex.EncodeToString(b)
	s.codes.put(code, authCode{clientID: q.Get("client_id"), redirectURI: redirect, challenge: q.Get("code_challenge"),
		nonce: q.Get("nonce"), user: *chosen, expires: s.now().Add(authCodeLifetime)})
	u, _ := url.Parse(redirect)
	v := u.Query()
	v.Set("code", code)
	if st := q.Get("state"); st != "" {
		v.Set("state", st)
	}
	u.RawQuery = v.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// serveOIDCToken redeems a code for an ID token, checking the client, the
// redirect URI and the PKCE verifier.
func (s *Server) serveOIDCToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.ParseForm() != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
		return
	}
	if r.PostForm.Get("grant_type") != "authorization_code" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type"})
		return
	}
	c, ok := s.codes.take(r.PostForm.Get("code"))
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	switch {
	case !ok || s.now().After(c.expires):
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant", "error_description": "unknown, used or expired code"})
		return
	case c.clientID != r.PostForm.Get("client_id") || c.redirectURI != r.PostForm.Get("redirect_uri"):
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant", "error_description": "client or redirect_uri does not match the authorization request"})
		return
	case base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge:
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant", "error_description": "PKCE verification failed"})
		return
	}
	now := s.now()
	claims := jwt.MapClaims{
		"iss": s.OIDCIssuer(), "sub": c.user.ObjectID, "aud": c.clientID,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"preferred_username": c.user.DisplayName, "email": c.user.DisplayName, "name": c.user.DisplayName,
		"oid": c.user.ObjectID, "tid": s.TenantID(), "groups": append([]string{}, c.user.Groups...),
	}
	if c.nonce != "" {
		claims["nonce"] = c.nonce
	}
	idToken, err := s.signin.sign(claims, "RS256")
	if err != nil {
		s.log.Error("sign ID token failed", "error", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"token_type": "Bearer", "expires_in": 3600, "id_token": idToken, "access_token": idToken})
}

// users returns the directory's current principals of type User, seeded
// or added later with AddPrincipal, sorted by display name.
func (s *Server) users() []Principal {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	var out []Principal
	for _, p := range s.st.principals {
		if p.Type == PrincipalUser {
			user := *p
			user.Groups = slices.Clone(p.Groups)
			user.GraphAppRoles = slices.Clone(p.GraphAppRoles)
			user.FederatedCredentials = slices.Clone(p.FederatedCredentials)
			out = append(out, user)
		}
	}
	slices.SortFunc(out, func(a, b Principal) int {
		return cmp.Or(strings.Compare(a.DisplayName, b.DisplayName), strings.Compare(a.ObjectID, b.ObjectID))
	})
	return out
}

// loopbackRedirect accepts absolute http or https URLs whose host is a
// loopback address or localhost.
func loopbackRedirect(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Fragment != "" {
		return false
	}
	host := u.Hostname()
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func oidcRedirectError(w http.ResponseWriter, r *http.Request, redirect, state, code string) {
	u, _ := url.Parse(redirect)
	v := u.Query()
	v.Set("error", code)
	if state != "" {
		v.Set("state", state)
	}
	u.RawQuery = v.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}
