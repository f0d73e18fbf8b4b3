package oidc_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/elevate-dev/elevate/internal/oidc"
)

// The fuzz targets verify tokens of the GitHub Actions issuer against a
// fixed key set served from loopback: one RSA key for RS256 and one P-256
// key for ES256. The keys are derived from fixed seeds, so every fuzz
// worker process has the same keys and the seed tokens verify in each.
const (
	fuzzIssuer   = "https://token.actions.githubusercontent.com"
	fuzzAudience = "https://elevate.example/broker"
	fuzzRSAKid   = "fuzz-rsa"
	fuzzECKid    = "fuzz-ec"
	fuzzLeeway   = 30 * time.Second
)

// fuzzNow is the verifier's fixed clock. With a fixed clock MinRefresh never
// passes, so each process fetches the key set once.
var fuzzNow = time.Date(2026, 5, 4, 12, 0, 0, 0, time.UTC)

var (
	fuzzKeysOnce sync.Once
	fuzzRSA      *rsa.PrivateKey
	fuzzEC       *ecdsa.PrivateKey
	fuzzKeysErr  error
)

// fuzzKeys returns the fixed signing keys.
func fuzzKeys(t testing.TB) (*rsa.PrivateKey, *ecdsa.PrivateKey) {
	t.Helper()
	fuzzKeysOnce.Do(func() {
		fuzzRSA, fuzzKeysErr = deterministicRSAKey([32]byte{'e', 'l', 'e', 'v', 'a', 't', 'e'})
		if fuzzKeysErr != nil {
			return
		}
		d := sha256.Sum256([]byte("elevate oidc fuzz P-256 key"))
		fuzzEC, fuzzKeysErr = ecdsa.ParseRawPrivateKey(elliptic.P256(), d[:])
	})
	if fuzzKeysErr != nil {
		t.Fatalf("derive fuzz keys: %v", fuzzKeysErr)
	}
	return fuzzRSA, fuzzEC
}

// deterministicRSAKey builds a 2048-bit RSA key from two primes found
// from a ChaCha8 stream. Since Go 1.26 rsa.GenerateKey ignores its random
// reader, so it cannot give the same key in two processes.
func deterministicRSAKey(seed [32]byte) (*rsa.PrivateKey, error) {
	rng := rand.New(rand.NewChaCha8(seed))
	e := big.NewInt(65537)
	one := big.NewInt(1)
	for {
		p, q := nextPrime(rng), nextPrime(rng)
		phi := new(big.Int).Mul(new(big.Int).Sub(p, one), new(big.Int).Sub(q, one))
		d := new(big.Int).ModInverse(e, phi)
		if d == nil || p.Cmp(q) == 0 {
			continue
		}
		key := &rsa.PrivateKey{
			PublicKey: rsa.PublicKey{N: new(big.Int).Mul(p, q), E: int(e.Int64())},
			D:         d,
			Primes:    []*big.Int{p, q},
		}
		key.Precompute()
		return key, key.Validate()
	}
}

// nextPrime returns the first prime at or above a random odd 1024-bit
// number whose two top bits are set, so a product of two is 2048 bits.
func nextPrime(rng *rand.Rand) *big.Int {
	b := make([]byte, 128)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	b[0] |= 0xC0
	b[len(b)-1] |= 1
	n := new(big.Int).SetBytes(b)
	for !n.ProbablyPrime(20) {
		n.Add(n, big.NewInt(2))
	}
	return n
}

// fuzzVerifier returns a verifier that reads the fixed key set from an
// HTTP server on loopback.
func fuzzVerifier(f *testing.F) *oidc.Verifier {
	f.Helper()
	rsaKey, ecKey := fuzzKeys(f)
	b64 := base64.RawURLEncoding
	point, err := ecKey.PublicKey.Bytes() // 0x04 || X || Y
	if err != nil {
		f.Fatal(err)
	}

	set := map[string]any{"keys": []map[string]string{
		{"kty": "RSA", "kid": fuzzRSAKid, "use": "sig", "n": b64.EncodeToString(rsaKey.N.Bytes()),
			"e": b64.EncodeToString(big.NewInt(int64(rsaKey.E)).Bytes())},
		{"kty": "EC", "kid": fuzzECKid, "use": "sig", "crv": "P-256",
			"x": b64.EncodeToString(point[1:33]), "y": b64.EncodeToString(point[33:])},
	}}
	body, err := json.Marshal(set)
	if err != nil {
		f.Fatal(err)
	}

	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	f.Cleanup(jwks.Close)

	v, err := oidc.New(oidc.Config{
		Issuer: fuzzIssuer, Audience: fuzzAudience, Algorithms: []string{"RS256", "ES256"},
		Leeway: fuzzLeeway, JWKSURL: jwks.URL, Client: jwks.Client(),
		Now: func() time.Time { return fuzzNow },
	})
	if err != nil {
		f.Fatal(err)
	}
	return v
}

// fuzzClaims returns the claims of a real GitHub Actions token, from the
// shared fixtures when they are beside the clone, with the issuer,
// audience and times the fuzz verifier accepts.
func fuzzClaims() map[string]any {
	claims := map[string]any{
		"sub": "repo:contoso/payments:environment:production", "repository": "contoso/payments",
		"environment": "production", "ref": "refs/heads/main", "run_id": "32291736541",
	}
	if data, err := os.ReadFile("../../../shared/fixtures/github/oidc/real-claims-output-oidc-claims-action.json"); err == nil {
		_ = json.Unmarshal(data, &claims) // a broken fixture leaves the claims above
	}
	claims["iss"] = fuzzIssuer
	claims["aud"] = fuzzAudience
	claims["iat"] = fuzzNow.Add(-time.Minute).Unix()
	claims["nbf"] = fuzzNow.Add(-time.Minute).Unix()
	claims["exp"] = fuzzNow.Add(5 * time.Minute).Unix()
	return claims
}

// signJWS signs the base64url encoding of header and payload exactly as
// given, so the fuzzer controls every byte the signature covers.
func signJWS(t testing.TB, header, payload []byte, es256 bool) string {
	t.Helper()
	rsaKey, ecKey := fuzzKeys(t)
	b64 := base64.RawURLEncoding
	input := b64.EncodeToString(header) + "." + b64.EncodeToString(payload)
	var sig []byte
	var err error
	if es256 {
		sig, err = jwt.SigningMethodES256.Sign(input, ecKey)
	} else {
		sig, err = jwt.SigningMethodRS256.Sign(input, rsaKey)
	}
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return input + "." + b64.EncodeToString(sig)
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// FuzzVerify checks that Verify never panics on a raw token and accepts
// one only if the fixed key signed it and its claims pass every check.
func FuzzVerify(f *testing.F) {
	v := fuzzVerifier(f)
	claims := mustJSON(f, fuzzClaims())
	rsaHeader := []byte(`{"typ":"JWT","alg":"RS256","kid":"` + fuzzRSAKid + `"}`)
	ecHeader := []byte(`{"typ":"JWT","alg":"ES256","kid":"` + fuzzECKid + `"}`)
	good := signJWS(f, rsaHeader, claims, false)
	parts := strings.Split(good, ".")
	b64 := base64.RawURLEncoding

	// The harness is only worth running if a well-formed token passes.
	for _, tok := range []string{good, signJWS(f, ecHeader, claims, true)} {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			f.Fatalf("Verify of a seed token signed by the fixed key: %v", err)
		}
		f.Add(tok)
	}
	// Hostile cases: no signature, an HMAC keyed with the public key, a
	// key id of the other key type, a signature of other bytes, padding.
	f.Add(b64.EncodeToString([]byte(`{"alg":"none","kid":"`+fuzzRSAKid+`"}`)) + "." + parts[1] + ".")
	f.Add(hmacToken(f, parts[0], parts[1]))
	f.Add(signJWS(f, []byte(`{"alg":"ES256","kid":"`+fuzzRSAKid+`"}`), claims, true))
	f.Add(signJWS(f, []byte(`{"alg":"RS256","kid":"`+fuzzECKid+`"}`), claims, false))
	f.Add(parts[0] + "." + b64.EncodeToString(append(bytes.Clone(claims), ' ')) + "." + parts[2])
	f.Add(good + "=")
	f.Add(parts[0] + "." + parts[1] + "." + parts[2] + "==")
	f.Add(parts[0] + ".." + parts[2])
	f.Add("..")
	f.Add("")
	f.Add(strings.Repeat("A", 100) + "." + strings.Repeat("B", 100) + "." + strings.Repeat("C", 100))

	f.Fuzz(func(t *testing.T, raw string) {
		got, err := v.Verify(context.Background(), raw)
		if err != nil {
			if !errors.Is(err, oidc.ErrInvalidToken) && !errors.Is(err, oidc.ErrExpired) {
				t.Fatalf("Verify error %v wraps neither ErrInvalidToken nor ErrExpired", err)
			}
			return
		}
		checkSignedByFixedKey(t, raw)
		checkAcceptedClaims(t, got)
	})
}

// FuzzVerifySignedClaims signs any header and payload with the fixed keys,
// so the fuzzer reaches the claim checks past the signature, and checks
// that an accepted token carries the issuer, audience and times required.
func FuzzVerifySignedClaims(f *testing.F) {
	v := fuzzVerifier(f)
	claims := fuzzClaims()
	header := []byte(`{"typ":"JWT","alg":"RS256","kid":"` + fuzzRSAKid + `"}`)
	f.Add(header, mustJSON(f, claims), false)
	f.Add([]byte(`{"typ":"JWT","alg":"ES256","kid":"`+fuzzECKid+`"}`), mustJSON(f, claims), true)

	with := func(name string, value any) []byte {
		c := fuzzClaims()
		if value == nil {
			delete(c, name)
		} else {
			c[name] = value
		}
		return mustJSON(f, c)
	}
	f.Add(header, with("aud", []string{"other", fuzzAudience}), false)
	f.Add(header, with("aud", strings.ToUpper(fuzzAudience)), false)
	f.Add(header, with("iss", fuzzIssuer+"/"), false)
	f.Add(header, with("exp", nil), false)
	f.Add(header, with("exp", "1999999999"), false)
	f.Add(header, with("exp", 1e300), false)
	f.Add(header, with("nbf", fuzzNow.Add(time.Hour).Unix()), false)
	f.Add(header, with("iat", fuzzNow.Add(time.Hour).Unix()), false)
	f.Add(header, []byte(`{"iss":"`+fuzzIssuer+`","aud":"`+fuzzAudience+`","exp":1e10,"aud":"x"}`), false)
	f.Add(header, []byte(`null`), false)
	f.Add([]byte(`{"alg":"RS256","kid":"`+fuzzRSAKid+`","crit":["exp"]}`), mustJSON(f, claims), false)
	f.Add([]byte(`{"alg":"RS256"}`), mustJSON(f, claims), false)

	f.Fuzz(func(t *testing.T, header, payload []byte, es256 bool) {
		raw := signJWS(t, header, payload, es256)
		got, err := v.Verify(context.Background(), raw)
		if err != nil {
			if !errors.Is(err, oidc.ErrInvalidToken) && !errors.Is(err, oidc.ErrExpired) {
				t.Fatalf("Verify error %v wraps neither ErrInvalidToken nor ErrExpired", err)
			}
			return
		}
		checkSignedByFixedKey(t, raw)
		checkAcceptedClaims(t, got)
	})
}

// hmacToken signs with HS256 keyed by the RSA public key, the algorithm
// confusion that a verifier trusting the header's alg would accept.
func hmacToken(t testing.TB, header, payload string) string {
	t.Helper()
	rsaKey, _ := fuzzKeys(t)
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","kid":"` + fuzzRSAKid + `"}`))
	sig, err := jwt.SigningMethodHS256.Sign(h+"."+payload, rsaKey.N.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return h + "." + payload + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// checkSignedByFixedKey verifies an accepted token's signature again with
// crypto/rsa or crypto/ecdsa directly, so the property does not rest on
// the JWT library that Verify uses.
func checkSignedByFixedKey(t *testing.T, raw string) {
	t.Helper()
	rsaKey, ecKey := fuzzKeys(t)
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("accepted token has %d parts; want 3", len(parts))
	}

	headerJSON, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		t.Fatalf("accepted token header is not base64url: %v", err)
	}
	var header struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(headerJSON, &header); err != nil {
		t.Fatalf("accepted token header %q is not a JSON object: %v", headerJSON, err)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatalf("accepted token signature is not base64url: %v", err)
	}

	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	switch {
	case header.Alg == "RS256" && header.Kid == fuzzRSAKid:
		if err := rsa.VerifyPKCS1v15(&rsaKey.PublicKey, crypto.SHA256, digest[:], sig); err != nil {
			t.Fatalf("accepted RS256 token is not signed by the fixed RSA key: %v", err)
		}
	case header.Alg == "ES256" && header.Kid == fuzzECKid:
		if len(sig) != 64 {
			t.Fatalf("accepted ES256 signature is %d bytes; want 64", len(sig))
		}
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		if !ecdsa.Verify(&ecKey.PublicKey, digest[:], r, s) {
			t.Fatal("accepted ES256 token is not signed by the fixed P-256 key")
		}
	default:
		t.Fatalf("accepted token with alg %q and kid %q; want RS256 with %q or ES256 with %q",
			header.Alg, header.Kid, fuzzRSAKid, fuzzECKid)
	}
}

// checkAcceptedClaims checks the claims Verify returned: the exact issuer,
// the audience, an expiry in the future, and nbf and iat not in the
// future, each within the leeway.
func checkAcceptedClaims(t *testing.T, c oidc.Claims) {
	t.Helper()
	if got := c.String("iss"); got != fuzzIssuer {
		t.Errorf("accepted iss = %q; want %q", got, fuzzIssuer)
	}
	var audiences []string
	switch aud := c["aud"].(type) {
	case string:
		audiences = []string{aud}
	case []any:
		for _, a := range aud {
			if s, ok := a.(string); ok {
				audiences = append(audiences, s)
			}
		}
	}
	if !slices.Contains(audiences, fuzzAudience) {
		t.Errorf("accepted aud = %v; want it to contain %q", c["aud"], fuzzAudience)
	}
	exp, ok := c["exp"].(float64)
	if !ok {
		t.Fatalf("accepted exp = %#v; want a number", c["exp"])
	}
	now := float64(fuzzNow.Unix())
	leeway := fuzzLeeway.Seconds()
	if exp+leeway < now {
		t.Errorf("accepted exp %v is more than the leeway before now %v", exp, now)
	}
	for _, name := range []string{"nbf", "iat"} {
		v, present := c[name]
		if !present {
			continue
		}
		n, ok := v.(float64)
		if !ok {
			t.Errorf("accepted %s = %#v; want a number", name, v)
			continue
		}
		if n-leeway > now {
			t.Errorf("accepted %s %v is more than the leeway after now %v", name, n, now)
		}
	}
}
