package webui

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/elevate-dev/elevate/internal/oidc"
)

// signInLifetime bounds the time between /login and the callback.
const signInLifetime = 10 * time.Minute

// maxTokenResponse caps the token endpoint's response body.
const maxTokenResponse = 1 << 20

// provider is the OIDC provider people sign in with, through the
// authorization code flow with PKCE (S256). Its endpoints come from the
// issuer's discovery document, fetched on first use and then kept.
type provider struct {
	issuer, clientID, clientSecret, redirectURL, groupsClaim string
	client                                                   *http.Client
	verifier                                                 *oidc.Verifier

	mu        sync.Mutex
	discovery *discovery
}

// discovery holds the fields of /.well-known/openid-configuration the UI
// uses.
type discovery struct {
	Issuer                string `json:"issuer"`
	AuthorizationEndpoint string `json:"authorization_endpoint"`
	TokenEndpoint         string `json:"token_endpoint"`
}

// endpoints returns the provider's discovery document, fetching it once.
func (p *provider) endpoints(ctx context.Context) (discovery, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.discovery != nil {
		return *p.discovery, nil
	}
	u := strings.TrimSuffix(p.issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return discovery{}, fmt.Errorf("discover sign-in provider %s: %w", p.issuer, err)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return discovery{}, fmt.Errorf("discover sign-in provider %s: %w", p.issuer, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return discovery{}, fmt.Errorf("discover sign-in provider %s: status %d", p.issuer, resp.StatusCode)
	}
	var d discovery
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxTokenResponse)).Decode(&d); err != nil {
		return d, fmt.Errorf("decode discovery document of %s: %w", p.issuer, err)
	}
	switch {
	case d.Issuer != p.issuer:
		return d, fmt.Errorf("discovery document of %s names issuer %q: set ui.issuer to the exact issuer", p.issuer, d.Issuer)
	case !strings.HasPrefix(d.AuthorizationEndpoint, "https://"), !strings.HasPrefix(d.TokenEndpoint, "https://"):
		return d, fmt.Errorf("discovery document of %s: authorization and token endpoints must be https URLs", p.issuer)
	}
	p.discovery = &d
	return d, nil
}

// authorizeURL returns where /login sends the browser.
func (p *provider) authorizeURL(d discovery, st signInState) (string, error) {
	u, err := url.Parse(d.AuthorizationEndpoint)
	if err != nil {
		return "", fmt.Errorf("invalid authorization_endpoint %q: %w", d.AuthorizationEndpoint, err)
	}
	q := u.Query()
	q.Set("response_type", "code")
	q.Set("client_id", p.clientID)
	q.Set("redirect_uri", p.redirectURL)
	q.Set("scope", "openid profile email")
	q.Set("state", st.State)
	q.Set("nonce", st.Nonce)
	q.Set("code_challenge", pkceChallenge(st.Verifier))
	q.Set("code_challenge_method", "S256")
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// pkceChallenge is the S256 code challenge of a verifier (RFC 7636).
func pkceChallenge(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// redeem exchanges the code for an ID token and verifies it: signature,
// issuer, audience (the client id), expiry, and the nonce of this sign-in.
func (p *provider) redeem(ctx context.Context, d discovery, code string, st signInState) (oidc.Claims, error) {
	form := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {p.redirectURL},
		"client_id":     {p.clientID},
		"code_verifier": {st.Verifier},
	}
	if p.clientSecret != "" {
		form.Set("client_secret", p.clientSecret)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.TokenEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("token request to %s: %w", d.TokenEndpoint, err)
	}
	defer resp.Body.Close()
	var body struct {
		IDToken     string `json:"id_token"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxTokenResponse)).Decode(&body); err != nil {
		return nil, fmt.Errorf("decode token response (status %d): %w", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK || body.IDToken == "" {
		return nil, fmt.Errorf("token request failed with status %d: %s %s", resp.StatusCode, body.Error, body.Description)
	}
	claims, err := p.verifier.Verify(ctx, body.IDToken)
	if err != nil {
		return nil, fmt.Errorf("verify ID token: %w", err)
	}
	nonce := claims.String("nonce")
	if subtle.ConstantTimeCompare([]byte(nonce), []byte(st.Nonce)) != 1 {
		return nil, errors.New("verify ID token: nonce does not match this sign-in")
	}
	return claims, nil
}

// groups reads the groups claim, a list of strings or one string.
func (p *provider) groups(c oidc.Claims) []string {
	switch v := c[p.groupsClaim].(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, x := range v {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
