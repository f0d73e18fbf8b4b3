// Package oidc verifies OpenID Connect ID tokens, such as the GitHub Actions
// OIDC tokens pipelines present to the broker. The verifier is strict: the
// issuer and audience must match the configuration exactly, the algorithm is
// pinned, and keys come only from the issuer's own JWKS.
package oidc

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Errors Verify wraps, so callers can tell a bad token from an outage.
var (
	ErrInvalidToken = errors.New("invalid token")
	ErrExpired      = errors.New("token expired")
	ErrKeyFetch     = errors.New("fetch signing keys")
)

// Config configures a Verifier.
type Config struct {
	// Issuer is the exact iss value, such as https://token.actions.githubusercontent.com.
	Issuer string
	// Audience is the exact aud value the token must carry.
	Audience string
	// Algorithms lists the accepted signing algorithms. Default RS256.
	Algorithms []string
	// Leeway tolerates clock skew on exp, nbf and iat. Default 30s; at most 5m.
	Leeway time.Duration
	// JWKSURL overrides discovery. Default: the jwks_uri of the issuer's
	// /.well-known/openid-configuration.
	JWKSURL string
	// MinRefresh is the least time between key refreshes triggered by an
	// unknown key id, so a flood of bogus kids cannot flood the issuer.
	// Default 30s.
	MinRefresh time.Duration
	Client     *http.Client
	Now        func() time.Time
}

// Verifier checks tokens of one issuer and audience.
type Verifier struct {
	cfg Config

	// mu guards keys and fetchedAt, and is never held across a fetch, so
	// tokens signed with a known key verify while a refresh waits on a
	// slow issuer. fetchMu lets one refresh run at a time.
	mu        sync.RWMutex
	keys      map[string]any // kid -> *rsa.PublicKey or *ecdsa.PublicKey
	fetchedAt time.Time
	fetchMu   sync.Mutex
}

// New checks the configuration and returns a Verifier. Keys are fetched on
// first use.
func New(cfg Config) (*Verifier, error) {
	if !strings.HasPrefix(cfg.Issuer, "https://") {
		return nil, fmt.Errorf("invalid OIDC issuer %q: want an https URL", cfg.Issuer)
	}
	if cfg.Audience == "" {
		return nil, errors.New("missing OIDC audience: set the exact aud value tokens must carry")
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = []string{"RS256"}
	}
	for _, alg := range cfg.Algorithms {
		if alg != "RS256" && alg != "ES256" {
			return nil, fmt.Errorf("invalid OIDC algorithm %q: use RS256 or ES256", alg)
		}
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = 30 * time.Second
	}
	if cfg.Leeway < 0 || cfg.Leeway > 5*time.Minute {
		return nil, fmt.Errorf("invalid OIDC leeway %s: use 0s to 5m", cfg.Leeway)
	}
	if cfg.MinRefresh == 0 {
		cfg.MinRefresh = 30 * time.Second
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Verifier{cfg: cfg}, nil
}

// Claims are a verified token's claims.
type Claims map[string]any

// String returns a string claim, or "".
func (c Claims) String(name string) string {
	s, _ := c[name].(string)
	return s
}

// Verify checks raw and returns its claims. Cheap checks run before any
// network call; an unknown key id refreshes the JWKS at most once per
// MinRefresh.
func (v *Verifier) Verify(ctx context.Context, raw string) (Claims, error) {
	// Shape and header first: three parts, a pinned alg, a key id.
	if strings.Count(raw, ".") != 2 || len(raw) > 16<<10 {
		return nil, fmt.Errorf("%w: not a compact JWS", ErrInvalidToken)
	}
	parser := jwt.NewParser(
		jwt.WithValidMethods(v.cfg.Algorithms),
		jwt.WithIssuer(v.cfg.Issuer),
		jwt.WithAudience(v.cfg.Audience),
		jwt.WithLeeway(v.cfg.Leeway),
		jwt.WithIssuedAt(),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(v.cfg.Now),
	)
	claims := jwt.MapClaims{}
	_, err := parser.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("token header has no kid")
		}
		return v.key(ctx, kid)
	})
	switch {
	case err == nil:
		return Claims(claims), nil
	case errors.Is(err, ErrKeyFetch):
		return nil, err
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, fmt.Errorf("%w: %w", ErrExpired, err)
	default:
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
}

// key returns the public key with id kid, refreshing the JWKS when the id is
// unknown and the last refresh is older than MinRefresh.
func (v *Verifier) key(ctx context.Context, kid string) (any, error) {
	if k, _, ok := v.cached(kid); ok {
		return k, nil
	}
	v.fetchMu.Lock()
	defer v.fetchMu.Unlock()
	// A refresh that ran while this call waited may have brought the key.
	k, fetchedAt, ok := v.cached(kid)
	if ok {
		return k, nil
	}
	if !fetchedAt.IsZero() && v.cfg.Now().Sub(fetchedAt) < v.cfg.MinRefresh {
		return nil, fmt.Errorf("unknown key id %q", kid)
	}
	keys, err := v.fetchKeys(ctx)
	v.mu.Lock()
	v.fetchedAt = v.cfg.Now()
	if err == nil {
		v.keys = keys
	}
	v.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyFetch, err)
	}
	if k, ok := keys[kid]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("unknown key id %q", kid)
}

// cached returns the key kid from the last refresh, and when that ran.
func (v *Verifier) cached(kid string) (any, time.Time, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	k, ok := v.keys[kid]
	return k, v.fetchedAt, ok
}

func (v *Verifier) fetchKeys(ctx context.Context) (map[string]any, error) {
	jwksURL := v.cfg.JWKSURL
	if jwksURL == "" {
		var doc struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := v.getJSON(ctx, strings.TrimRight(v.cfg.Issuer, "/")+"/.well-known/openid-configuration", &doc); err != nil {
			return nil, err
		}
		if doc.Issuer != v.cfg.Issuer {
			return nil, fmt.Errorf("discovery document names issuer %q, want %q", doc.Issuer, v.cfg.Issuer)
		}
		jwksURL = doc.JWKSURI
	}
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := v.getJSON(ctx, jwksURL, &set); err != nil {
		return nil, err
	}
	keys := make(map[string]any, len(set.Keys))
	for _, k := range set.Keys {
		if k.Kid == "" || (k.Use != "" && k.Use != "sig") {
			continue
		}
		pub, err := k.publicKey()
		if err != nil {
			continue // one bad key must not take the others down
		}
		keys[k.Kid] = pub
	}
	if len(keys) == 0 {
		return nil, errors.New("JWKS holds no usable signing key")
	}
	return keys, nil
}

func (v *Verifier) getJSON(ctx context.Context, url string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := v.cfg.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out); err != nil {
		return fmt.Errorf("decode %s: %w", url, err)
	}
	return nil
}

// jwk is one JSON Web Key; only RSA and P-256 EC signing keys are used.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

func (k jwk) publicKey() (any, error) {
	b64 := base64.RawURLEncoding
	switch k.Kty {
	case "RSA":
		n, err := b64.DecodeString(k.N)
		if err != nil {
			return nil, err
		}
		e, err := b64.DecodeString(k.E)
		if err != nil || len(e) == 0 || len(e) > 4 {
			return nil, errors.New("invalid RSA exponent")
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if pub.N.BitLen() < 2048 {
			return nil, errors.New("RSA key shorter than 2048 bits")
		}
		return pub, nil
	case "EC":
		if k.Crv != "P-256" {
			return nil, fmt.Errorf("unsupported curve %q", k.Crv)
		}
		x, err := b64.DecodeString(k.X)
		if err != nil {
			return nil, err
		}
		y, err := b64.DecodeString(k.Y)
		if err != nil {
			return nil, err
		}
		pub := &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
		if !pub.Curve.IsOnCurve(pub.X, pub.Y) {
			return nil, errors.New("EC point not on curve")
		}
		return pub, nil
	default:
		return nil, fmt.Errorf("unsupported key type %q", k.Kty)
	}
}
