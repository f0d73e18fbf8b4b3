package github

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// AzureAudience is the audience Microsoft Entra expects in a federated
// assertion from GitHub Actions.
const AzureAudience = "api://AzureADTokenExchange"

// TokenSource fetches the job's OIDC ID token from the Actions runtime. The
// runtime exposes ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN
// to jobs with `permissions: id-token: write`.
type TokenSource struct {
	RequestURL   string
	RequestToken string
	Audience     string
	Client       *http.Client
}

// TokenSourceFromEnv returns a source, or false when the variables are unset.
func TokenSourceFromEnv(getenv func(string) string, client *http.Client) (*TokenSource, bool) {
	u, tok := getenv("ACTIONS_ID_TOKEN_REQUEST_URL"), getenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
	if u == "" || tok == "" {
		return nil, false
	}
	return &TokenSource{RequestURL: u, RequestToken: tok, Audience: AzureAudience, Client: client}, true
}

// Token requests a new ID token. It is called for every token exchange so a
// long wait never presents an expired assertion.
func (s *TokenSource) Token(ctx context.Context) (string, error) {
	u, err := url.Parse(s.RequestURL)
	if err != nil {
		return "", fmt.Errorf("invalid ACTIONS_ID_TOKEN_REQUEST_URL %q: %w", s.RequestURL, err)
	}
	q := u.Query()
	q.Set("audience", s.Audience)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", fmt.Errorf("build OIDC token request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+s.RequestToken)
	req.Header.Set("Accept", "application/json")
	client := s.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("request GitHub OIDC token: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("read GitHub OIDC token response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("request GitHub OIDC token: HTTP %d; check that the job has `permissions: id-token: write`", resp.StatusCode)
	}
	var out struct {
		Value string `json:"value"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return "", fmt.Errorf("decode GitHub OIDC token response: %w", err)
	}
	if out.Value == "" {
		return "", errors.New("GitHub OIDC token response has no value")
	}
	return out.Value, nil
}
