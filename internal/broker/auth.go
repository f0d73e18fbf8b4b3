package broker

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/elevate-dev/elevate/internal/oidc"
)

// ErrUnauthenticated wraps every reason a bearer token is not accepted. The
// API responds 401 with a fixed message and logs the wrapped detail.
var ErrUnauthenticated = errors.New("unauthenticated")

// Authenticator turns the bearer token of an API call into an Identity:
// a pipeline's OIDC token, a reviewer's OIDC ID token, or a static token.
type Authenticator struct {
	pipeline     *oidc.Verifier
	pipelineIss  string
	repositories []string // lower case owner/name; empty allows any

	approver    *oidc.Verifier
	approverIss string
	groupsClaim string
	adminGroups []string

	static []staticEntry
}

// staticEntry is one configured static token, by the SHA-256 of its value.
type staticEntry struct {
	digest   []byte
	identity Identity
}

// AuthConfig holds the settings and dependencies of an Authenticator.
type AuthConfig struct {
	Pipeline PipelineAuthConfig
	Approver ApproverAuthConfig
	// Client fetches the issuers' signing keys. Default: a client with a
	// 10 s timeout and the system roots.
	Client *http.Client
	Now    func() time.Time
}

// NewAuthenticator builds the verifiers. Signing keys are fetched on first
// use, so an issuer that is down at start does not stop the broker.
func NewAuthenticator(cfg AuthConfig) (*Authenticator, error) {
	if err := cfg.Pipeline.check(); err != nil {
		return nil, err
	}
	if err := cfg.Approver.check(); err != nil {
		return nil, err
	}
	a := &Authenticator{pipelineIss: cfg.Pipeline.Issuer, adminGroups: cfg.Approver.AdminGroups}
	for _, r := range cfg.Pipeline.AllowedRepositories {
		a.repositories = append(a.repositories, strings.ToLower(r))
	}
	var err error
	a.pipeline, err = oidc.New(oidc.Config{Issuer: cfg.Pipeline.Issuer, Audience: cfg.Pipeline.Audience,
		Client: cfg.Client, Now: cfg.Now})
	if err != nil {
		return nil, fmt.Errorf("pipeline_auth: %w", err)
	}
	if o := cfg.Approver.OIDC; o != nil {
		a.approverIss, a.groupsClaim = o.Issuer, o.GroupsClaim
		a.approver, err = oidc.New(oidc.Config{Issuer: o.Issuer, Audience: o.Audience, Client: cfg.Client, Now: cfg.Now})
		if err != nil {
			return nil, fmt.Errorf("approver_auth.oidc: %w", err)
		}
	}
	for digest, id := range cfg.Approver.StaticTokens {
		raw, _ := hex.DecodeString(digest) // check() validated the digest
		ident := Identity{Subject: id.Subject, Groups: id.Groups, Admin: id.Admin}
		ident.Admin = ident.Admin || overlaps(id.Groups, a.adminGroups)
		a.static = append(a.static, staticEntry{digest: raw, identity: ident})
	}
	return a, nil
}

// Authenticate checks the Authorization header. A JWT goes to the verifier
// of the issuer it names (pipeline or approver); any other token is compared
// with the static tokens. Failures wrap ErrUnauthenticated, except an
// outage of an issuer's key endpoint, which wraps oidc.ErrKeyFetch.
func (a *Authenticator) Authenticate(ctx context.Context, header string) (Identity, error) {
	// The scheme name is case-insensitive (RFC 9110, section 11.1).
	scheme, raw, _ := strings.Cut(strings.TrimSpace(header), " ")
	raw = strings.TrimSpace(raw)
	if !strings.EqualFold(scheme, "Bearer") || raw == "" {
		return Identity{}, fmt.Errorf("%w: missing bearer token", ErrUnauthenticated)
	}
	if strings.Count(raw, ".") != 2 {
		return a.staticIdentity(raw)
	}
	// The issuer is read before verification only to pick the verifier;
	// the chosen verifier checks it again against its configuration.
	iss := unverifiedIssuer(raw)
	var errs []error
	if iss == a.pipelineIss {
		id, err := a.pipelineIdentity(ctx, raw)
		if err == nil {
			return id, nil
		}
		errs = append(errs, err)
	}
	if a.approver != nil && iss == a.approverIss {
		id, err := a.approverIdentity(ctx, raw)
		if err == nil {
			return id, nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return Identity{}, fmt.Errorf("%w: token issuer %q is not configured", ErrUnauthenticated, prefix(iss, 100))
	}
	err := errors.Join(errs...)
	if errors.Is(err, oidc.ErrKeyFetch) {
		return Identity{}, err
	}
	return Identity{}, fmt.Errorf("%w: %w", ErrUnauthenticated, err)
}

func (a *Authenticator) pipelineIdentity(ctx context.Context, raw string) (Identity, error) {
	claims, err := a.pipeline.Verify(ctx, raw)
	if err != nil {
		return Identity{}, fmt.Errorf("pipeline token: %w", err)
	}
	sub := claims.String("sub")
	if sub == "" {
		return Identity{}, errors.New("pipeline token has no sub claim")
	}
	repo := strings.ToLower(claims.String("repository"))
	if len(a.repositories) > 0 && !slices.Contains(a.repositories, repo) {
		return Identity{}, fmt.Errorf("pipeline token of repository %q: not in pipeline_auth.allowed_repositories", repo)
	}
	return Identity{Subject: sub, Pipeline: true, Claims: stringClaims(claims)}, nil
}

func (a *Authenticator) approverIdentity(ctx context.Context, raw string) (Identity, error) {
	claims, err := a.approver.Verify(ctx, raw)
	if err != nil {
		return Identity{}, fmt.Errorf("approver token: %w", err)
	}
	name := claims.String("preferred_username")
	if name == "" {
		name = claims.String("email")
	}
	if name == "" {
		name = claims.String("sub")
	}
	if name == "" {
		return Identity{}, errors.New("approver token has no preferred_username, email or sub claim")
	}
	groups := listClaim(claims[a.groupsClaim])
	return Identity{Subject: "user:" + name, Claims: stringClaims(claims), Groups: groups,
		Admin: overlaps(groups, a.adminGroups)}, nil
}

// staticIdentity compares the token's SHA-256 with every configured digest
// in constant time, so timing reveals nothing about which digest is near.
func (a *Authenticator) staticIdentity(raw string) (Identity, error) {
	sum := sha256.Sum256([]byte(raw))
	found := -1
	for i, e := range a.static {
		if subtle.ConstantTimeCompare(sum[:], e.digest) == 1 {
			found = i
		}
	}
	if found < 0 {
		return Identity{}, fmt.Errorf("%w: unknown static token", ErrUnauthenticated)
	}
	return a.static[found].identity, nil
}

// unverifiedIssuer returns the iss claim of a compact JWS without checking
// anything, or "" when the payload does not decode.
func unverifiedIssuer(raw string) string {
	parts := strings.Split(raw, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var claims struct {
		Issuer string `json:"iss"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return ""
	}
	return claims.Issuer
}

// stringClaims keeps a token's string claims, the ones policy matches on.
func stringClaims(c oidc.Claims) map[string]string {
	out := make(map[string]string, len(c))
	for k, v := range c {
		if s, ok := v.(string); ok {
			out[k] = s
		}
	}
	return out
}

// listClaim reads a claim that is a list of strings or a single string.
func listClaim(v any) []string {
	switch t := v.(type) {
	case string:
		return []string{t}
	case []any:
		var out []string
		for _, x := range t {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
