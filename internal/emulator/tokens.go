package emulator

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// signingKey is one key of an issuer, published in its JWKS under kid.
type signingKey struct {
	kid     string
	method  jwt.SigningMethod
	private crypto.Signer
}

// issuer signs and verifies JWTs for one issuer URL with its own keys. The
// first key signs; every key verifies.
type issuer struct {
	url  string
	keys []signingKey
}

// newIssuer creates an issuer with an RSA-2048 key (RS256, what Entra and
// GitHub sign with) and a P-256 key (ES256).
func newIssuer(url string) (*issuer, error) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate RSA key for issuer %q: %w", url, err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate EC key for issuer %q: %w", url, err)
	}
	return &issuer{url: url, keys: []signingKey{
		{kid: keyID(&rsaKey.PublicKey), method: jwt.SigningMethodRS256, private: rsaKey},
		{kid: keyID(&ecKey.PublicKey), method: jwt.SigningMethodES256, private: ecKey},
	}}, nil
}

// keyID derives a stable kid from the public key bytes.
func keyID(pub any) string {
	var raw []byte
	switch k := pub.(type) {
	case *rsa.PublicKey:
		raw = k.N.Bytes()
	case *ecdsa.PublicKey:
		raw, _ = k.Bytes()
	}
	sum := sha256.Sum256(raw)
	return base64.RawURLEncoding.EncodeToString(sum[:12])
}

// sign signs claims with the issuer's key of the given algorithm ("" for
// the default RS256 key).
func (i *issuer) sign(claims jwt.MapClaims, alg string) (string, error) {
	key := i.keys[0]
	for _, k := range i.keys {
		if k.method.Alg() == alg {
			key = k
		}
	}
	tok := jwt.NewWithClaims(key.method, claims)
	tok.Header["kid"] = key.kid
	s, err := tok.SignedString(key.private)
	if err != nil {
		return "", fmt.Errorf("sign token for issuer %q: %w", i.url, err)
	}
	return s, nil
}

// errTokenSignature marks a token that no key of the issuer signed.
var errTokenSignature = errors.New("token signature invalid")

// parse verifies the signature of raw against the issuer's keys and returns
// its claims. It checks no times and no audience; callers do, because each
// caller reports those failures in its own service's words.
func (i *issuer) parse(raw string) (jwt.MapClaims, error) {
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		for _, k := range i.keys {
			if k.kid == kid && k.method.Alg() == t.Method.Alg() {
				return k.private.Public(), nil
			}
		}
		return nil, fmt.Errorf("%w: unknown key id %q for %s", errTokenSignature, kid, t.Method.Alg())
	}, jwt.WithValidMethods([]string{"RS256", "ES256"}), jwt.WithoutClaimsValidation())
	if err != nil {
		return nil, err
	}
	return claims, nil
}

// jwks returns the issuer's public keys as a JSON Web Key Set.
func (i *issuer) jwks() map[string]any {
	keys := make([]map[string]any, 0, len(i.keys))
	for _, k := range i.keys {
		b64 := base64.RawURLEncoding.EncodeToString
		switch pub := k.private.Public().(type) {
		case *rsa.PublicKey:
			keys = append(keys, map[string]any{
				"kty": "RSA", "use": "sig", "alg": "RS256", "kid": k.kid,
				"n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes()),
			})
		case *ecdsa.PublicKey:
			raw, _ := pub.Bytes() // 0x04 || X || Y, 32 bytes each for P-256
			keys = append(keys, map[string]any{
				"kty": "EC", "use": "sig", "alg": "ES256", "kid": k.kid, "crv": "P-256",
				"x": b64(raw[1:33]), "y": b64(raw[33:65]),
			})
		}
	}
	return map[string]any{"keys": keys}
}

// claimTime reads a NumericDate claim (seconds since the epoch).
func claimTime(c jwt.MapClaims, name string) (time.Time, bool) {
	switch v := c[name].(type) {
	case float64:
		return time.Unix(int64(v), 0), true
	case int64:
		return time.Unix(v, 0), true
	case int:
		return time.Unix(int64(v), 0), true
	}
	return time.Time{}, false
}

// claimString reads a string claim.
func claimString(c jwt.MapClaims, name string) string {
	s, _ := c[name].(string)
	return s
}

// claimAudiences reads aud, which may be one string or an array.
func claimAudiences(c jwt.MapClaims) []string {
	switch v := c["aud"].(type) {
	case string:
		return []string{v}
	case []any:
		out := make([]string, 0, len(v))
		for _, a := range v {
			if s, ok := a.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
