package emulator

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// signIn runs the authorization code flow as a browser would, choosing
// userID on the sign-in page, and returns the token response.
func signIn(t *testing.T, s *Server, userID, verifier string, edit func(url.Values)) (int, map[string]any) {
	t.Helper()
	client := s.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{
		"response_type": {"code"}, "client_id": {"elevate-ui"}, "redirect_uri": {"http://127.0.0.1:9/callback"},
		"scope": {"openid profile"}, "state": {"st-1"}, "nonce": {"n-1"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
	}
	page, err := client.Get(s.OIDCIssuer() + "/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(page.Body)
	page.Body.Close()
	if !strings.Contains(string(body), "approver@contoso.example") {
		t.Fatalf("sign-in page lacks the seeded user:\n%s", body)
	}
	q.Set("user", userID)
	resp, err := client.PostForm(s.OIDCIssuer()+"/authorize", q)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" {
		t.Fatalf("authorize redirect = %q; want a code", resp.Header.Get("Location"))
	}
	if loc.Query().Get("state") != "st-1" {
		t.Errorf("state = %q; want st-1", loc.Query().Get("state"))
	}
	form := url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")},
		"client_id": {"elevate-ui"}, "redirect_uri": {"http://127.0.0.1:9/callback"}, "code_verifier": {verifier}}
	if edit != nil {
		edit(form)
	}
	tok, err := client.PostForm(s.OIDCIssuer()+"/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(tok.Body).Decode(&out)
	return tok.StatusCode, out
}

func TestOIDCCodeFlowIssuesIDToken(t *testing.T) {
	s := startServer(t, Config{})
	status, out := signIn(t, s, "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c03", "verifier-0123456789-0123456789-0123456789", nil)
	if status != http.StatusOK {
		t.Fatalf("token status = %d (%v); want 200", status, out)
	}
	raw, _ := out["id_token"].(string)
	claims, err := s.signin.parse(raw)
	if err != nil {
		t.Fatalf("parse ID token: %v", err)
	}
	for k, want := range map[string]string{"iss": s.OIDCIssuer(), "aud": "elevate-ui", "nonce": "n-1", "preferred_username": "approver@contoso.example"} {
		if got := claimString(claims, k); got != want {
			t.Errorf("claim %s = %q; want %q", k, got, want)
		}
	}
}

func TestOIDCTokenRejectsBadRedemption(t *testing.T) {
	s := startServer(t, Config{})
	const user, verifier = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c03", "verifier-0123456789-0123456789-0123456789"
	cases := []struct {
		name string
		edit func(url.Values)
	}{
		{"wrong verifier", func(v url.Values) { v.Set("code_verifier", "another-verifier-0123456789-0123456789") }},
		{"other client", func(v url.Values) { v.Set("client_id", "someone-else") }},
		{"other redirect", func(v url.Values) { v.Set("redirect_uri", "http://127.0.0.1:9/other") }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, out := signIn(t, s, user, verifier, tc.edit)
			if status != http.StatusBadRequest || out["error"] != "invalid_grant" {
				t.Errorf("token answer = %d %v; want 400 invalid_grant", status, out)
			}
		})
	}
}

func TestOIDCAuthorizeRejectsForeignRedirect(t *testing.T) {
	s := startServer(t, Config{})
	q := url.Values{"response_type": {"code"}, "client_id": {"x"}, "redirect_uri": {"https://evil.example/cb"},
		"code_challenge": {"abc"}, "code_challenge_method": {"S256"}}
	resp, err := s.Client().Get(s.OIDCIssuer() + "/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("status = %d; want 400 for a non-loopback redirect", resp.StatusCode)
	}
}

func TestOIDCSignInListsAddedUser(t *testing.T) {
	s := startServer(t, Config{})
	const added = "c0ffee00-0000-4000-8000-00000000ad01"
	if err := s.AddPrincipal(Principal{ObjectID: added, DisplayName: "admin@contoso.example", Type: PrincipalUser, Groups: []string{"elevate-admins"}}); err != nil {
		t.Fatal(err)
	}

	q := url.Values{"response_type": {"code"}, "client_id": {"elevate-ui"}, "redirect_uri": {"http://127.0.0.1:9/callback"},
		"code_challenge": {"abc"}, "code_challenge_method": {"S256"}}
	page, err := s.Client().Get(s.OIDCIssuer() + "/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(page.Body)
	page.Body.Close()
	if !strings.Contains(string(body), `id="user-`+added+`"`) {
		t.Errorf("sign-in page lacks the user added after start:\n%s", body)
	}

	status, out := signIn(t, s, added, "verifier-0123456789-0123456789-0123456789", nil)
	if status != http.StatusOK {
		t.Fatalf("token status = %d (%v); want 200 for a user added with AddPrincipal", status, out)
	}
	claims, err := s.signin.parse(out["id_token"].(string))
	if err != nil {
		t.Fatalf("parse ID token: %v", err)
	}
	if got := claimString(claims, "preferred_username"); got != "admin@contoso.example" {
		t.Errorf("preferred_username = %q; want admin@contoso.example", got)
	}
	if groups, _ := claims["groups"].([]any); len(groups) != 1 || groups[0] != "elevate-admins" {
		t.Errorf("groups claim = %v; want [elevate-admins]", claims["groups"])
	}
}
