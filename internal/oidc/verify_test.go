package oidc_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/elevate-dev/elevate/internal/emulator"
	"github.com/elevate-dev/elevate/internal/oidc"
)

const audience = "https://elevate.example/broker"

func startIssuer(t *testing.T) *emulator.Server {
	t.Helper()
	srv, err := emulator.Start(context.Background(), emulator.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func newVerifier(t *testing.T, srv *emulator.Server, now func() time.Time) *oidc.Verifier {
	t.Helper()
	v, err := oidc.New(oidc.Config{Issuer: srv.GitHubIssuer(), Audience: audience, Client: srv.Client(), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func mint(t *testing.T, srv *emulator.Server, claims map[string]any) string {
	t.Helper()
	base := map[string]any{"aud": audience, "sub": "repo:contoso/payments:environment:production",
		"repository": "contoso/payments", "environment": "production"}
	for k, v := range claims {
		base[k] = v
	}
	tok, err := srv.MintGitHubToken(base)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestVerifyAcceptsIssuerToken(t *testing.T) {
	srv := startIssuer(t)
	v := newVerifier(t, srv, nil)
	claims, err := v.Verify(context.Background(), mint(t, srv, nil))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got := claims.String("repository"); got != "contoso/payments" {
		t.Errorf("repository = %q; want contoso/payments", got)
	}
}

func TestVerifyRejectsBadTokens(t *testing.T) {
	srv := startIssuer(t)
	now := time.Now()
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	good := mint(t, srv, nil)
	parts := strings.Split(good, ".")

	cases := []struct {
		name  string
		token string
		want  error
	}{
		{"wrong issuer", mint(t, srv, map[string]any{"iss": "https://token.actions.githubusercontent.com"}), oidc.ErrInvalidToken},
		{"wrong audience", mint(t, srv, map[string]any{"aud": "api://AzureADTokenExchange"}), oidc.ErrInvalidToken},
		{"audience differs in case", mint(t, srv, map[string]any{"aud": strings.ToUpper(audience)}), oidc.ErrInvalidToken},
		{"expired", mint(t, srv, map[string]any{"exp": now.Add(-2 * time.Minute).Unix(), "iat": now.Add(-7 * time.Minute).Unix(), "nbf": now.Add(-7 * time.Minute).Unix()}), oidc.ErrExpired},
		{"not yet valid", mint(t, srv, map[string]any{"nbf": now.Add(5 * time.Minute).Unix()}), oidc.ErrInvalidToken},
		{"issued in the future", mint(t, srv, map[string]any{"iat": now.Add(5 * time.Minute).Unix()}), oidc.ErrInvalidToken},
		{"no expiry", mintWithout(t, srv, "exp"), oidc.ErrInvalidToken},
		{"alg none", unsignedToken(parts[1]), oidc.ErrInvalidToken},
		{"alg ES256 not allowed", mint(t, srv, map[string]any{"alg": "ES256"}), oidc.ErrInvalidToken},
		{"unknown key id", signedBy(t, otherKey, "not-a-known-kid", parts[1]), oidc.ErrInvalidToken},
		{"known kid, other key", signedBy(t, otherKey, kidOf(t, good), parts[1]), oidc.ErrInvalidToken},
		{"tampered payload", parts[0] + "." + tamper(parts[1]) + "." + parts[2], oidc.ErrInvalidToken},
		{"tampered signature", parts[0] + "." + parts[1] + "." + tamper(parts[2]), oidc.ErrInvalidToken},
		{"not a JWS", "abc.def", oidc.ErrInvalidToken},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := newVerifier(t, srv, nil)
			_, err := v.Verify(context.Background(), tc.token)
			if !errors.Is(err, tc.want) {
				t.Errorf("Verify error = %v; want %v", err, tc.want)
			}
		})
	}
}

func TestVerifyLeewayToleratesSkew(t *testing.T) {
	srv := startIssuer(t)
	now := time.Now()
	// Expired 10 s ago: inside the default 30 s leeway.
	tok := mint(t, srv, map[string]any{"exp": now.Add(-10 * time.Second).Unix(), "iat": now.Add(-5 * time.Minute).Unix()})
	if _, err := newVerifier(t, srv, nil).Verify(context.Background(), tok); err != nil {
		t.Errorf("Verify within leeway: %v", err)
	}
}

func TestUnknownKidRefreshIsRateLimited(t *testing.T) {
	srv := startIssuer(t)
	clock := time.Now()
	v := newVerifier(t, srv, func() time.Time { return clock })
	if _, err := v.Verify(context.Background(), mint(t, srv, nil)); err != nil {
		t.Fatalf("first Verify: %v", err)
	}
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	payload := strings.Split(mint(t, srv, nil), ".")[1]
	// Stop the issuer: a refresh would now fail with ErrKeyFetch. Within
	// MinRefresh no refresh is attempted, so the error is a plain rejection.
	srv.Close()
	_, err = v.Verify(context.Background(), signedBy(t, other, "rotated-kid", payload))
	if errors.Is(err, oidc.ErrKeyFetch) || !errors.Is(err, oidc.ErrInvalidToken) {
		t.Errorf("Verify within MinRefresh error = %v; want ErrInvalidToken without a fetch", err)
	}
	clock = clock.Add(time.Minute)
	_, err = v.Verify(context.Background(), signedBy(t, other, "rotated-kid", payload))
	if !errors.Is(err, oidc.ErrKeyFetch) {
		t.Errorf("Verify after MinRefresh error = %v; want ErrKeyFetch", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	cases := []oidc.Config{
		{Issuer: "http://issuer.example", Audience: "a"},
		{Issuer: "https://issuer.example"},
		{Issuer: "https://issuer.example", Audience: "a", Algorithms: []string{"none"}},
		{Issuer: "https://issuer.example", Audience: "a", Leeway: time.Hour},
	}
	for i, cfg := range cases {
		if _, err := oidc.New(cfg); err == nil {
			t.Errorf("case %d: New succeeded; want an error", i)
		}
	}
}

func mintWithout(t *testing.T, srv *emulator.Server, claim string) string {
	t.Helper()
	// The emulator always sets exp, so send it as JSON null instead.
	return mint(t, srv, map[string]any{claim: nil})
}

func unsignedToken(payload string) string {
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT","kid":"x"}`))
	return header + "." + payload + "."
}

func signedBy(t *testing.T, key *rsa.PrivateKey, kid, payload string) string {
	t.Helper()
	data, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		t.Fatal(err)
	}
	claims := jwt.MapClaims{}
	if err := json.Unmarshal(data, &claims); err != nil {
		t.Fatal(err)
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func kidOf(t *testing.T, token string) string {
	t.Helper()
	tok, _, err := jwt.NewParser().ParseUnverified(token, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := tok.Header["kid"].(string)
	return kid
}

// tamper flips one character in the middle of a base64url segment.
func tamper(seg string) string {
	b := []byte(seg)
	i := len(b) / 2
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

// gatedTransport passes requests on until gate is set; from then on each
// request reports on entered and waits for release.
type gatedTransport struct {
	base    http.RoundTripper
	gate    atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (g *gatedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if g.gate.Load() {
		g.entered <- struct{}{}
		<-g.release
	}
	return g.base.RoundTrip(r)
}

// TestKnownKeyVerifiesDuringRefresh holds a key refresh at a slow issuer
// and checks that a token signed with an already known key still verifies
// meanwhile, instead of queueing behind the refresh.
func TestKnownKeyVerifiesDuringRefresh(t *testing.T) {
	srv := startIssuer(t)
	clock := time.Now()
	var mu sync.Mutex
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	tr := &gatedTransport{base: srv.Client().Transport, entered: make(chan struct{}, 4), release: make(chan struct{})}
	v, err := oidc.New(oidc.Config{Issuer: srv.GitHubIssuer(), Audience: audience, Client: &http.Client{Transport: tr}, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	good := mint(t, srv, nil)
	if _, err := v.Verify(context.Background(), good); err != nil {
		t.Fatalf("first Verify: %v", err)
	}
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	clock = clock.Add(time.Minute)
	mu.Unlock()
	tr.gate.Store(true)
	refreshDone := make(chan struct{})
	go func() {
		defer close(refreshDone)
		_, _ = v.Verify(context.Background(), signedBy(t, other, "rotated-kid", strings.Split(good, ".")[1]))
	}()
	<-tr.entered // the refresh is now waiting at the issuer

	verified := make(chan error, 1)
	go func() {
		_, err := v.Verify(context.Background(), good)
		verified <- err
	}()
	select {
	case err := <-verified:
		if err != nil {
			t.Errorf("Verify with a known key during a refresh: %v", err)
		}
	case <-refreshDone:
		t.Fatal("the refresh finished before it was released")
	case <-time.After(30 * time.Second):
		t.Error("Verify with a known key waited for the refresh at the issuer")
	}
	close(tr.release)
	<-refreshDone
}
