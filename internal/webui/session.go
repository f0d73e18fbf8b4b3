package webui

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Cookie names. The __Host- prefix makes browsers accept the cookie only
// when it is Secure, has Path=/ and no Domain, so a sibling host cannot
// plant one.
const (
	sessionCookie = "__Host-elevate_session"
	signInCookie  = "__Host-elevate_signin"
)

// maxCookieBytes keeps a sealed cookie under the 4096-byte limit browsers
// apply to one cookie, name and attributes included.
const maxCookieBytes = 3800

// session is a signed-in person, sealed into the session cookie. The
// cookie is the only copy: the server keeps no session records, so any
// replica with the same key reads it.
//
// NOTE: signing out deletes the cookie in the browser, but a copy taken
// before stays valid until Expires, because there is no server-side record
// to revoke. Rotating ui.session_key ends every session.
type session struct {
	Subject string   `json:"sub"`
	Groups  []string `json:"groups,omitempty"`
	Admin   bool     `json:"admin,omitempty"`
	// CSRF is the token every form of this session must carry.
	CSRF string `json:"csrf"`
	// ObjectID is the oid claim, to recognise requests for the person's own
	// principal.
	ObjectID string `json:"oid,omitempty"`
	// Expires is the end of the session in Unix seconds.
	Expires int64 `json:"exp"`
}

// signInState is the state of a sign-in from /login to the callback: the
// OAuth state, the nonce and the PKCE verifier.
type signInState struct {
	State    string `json:"state"`
	Nonce    string `json:"nonce"`
	Verifier string `json:"verifier"`
	Expires  int64  `json:"exp"`
}

// sealer encrypts and authenticates cookie values with AES-256-GCM. The
// cookie name is the additional data, so a value sealed for one cookie is
// rejected in the other.
type sealer struct {
	aead cipher.AEAD
}

// newSealer uses the 64 hex digit key, or a random key when it is empty.
func newSealer(hexKey string) (*sealer, error) {
	key := make([]byte, 32)
	if hexKey == "" {
		_, _ = rand.Read(key) // crypto/rand.Read never returns an error since Go 1.24
	} else {
		var err error
		if key, err = hex.DecodeString(hexKey); err != nil || len(key) != 32 {
			return nil, errors.New("invalid ui.session_key: use 64 hex digits")
		}
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("session cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("session cipher: %w", err)
	}
	return &sealer{aead: aead}, nil
}

// seal encodes v as JSON and returns nonce + ciphertext in base64url.
func (s *sealer) seal(name string, v any) (string, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encode %s cookie: %w", name, err)
	}
	nonce := make([]byte, s.aead.NonceSize())
	_, _ = rand.Read(nonce)
	out := s.aead.Seal(nonce, nonce, plain, []byte(name))
	value := base64.RawURLEncoding.EncodeToString(out)
	if len(value)+len(name) > maxCookieBytes {
		return "", fmt.Errorf("%s cookie of %d bytes is too large: the groups claim lists too many groups", name, len(value))
	}
	return value, nil
}

// open reverses seal. Any tampering, truncation or wrong key fails.
func (s *sealer) open(name, value string, v any) error {
	data, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil || len(data) < s.aead.NonceSize() {
		return fmt.Errorf("invalid %s cookie", name)
	}
	n := s.aead.NonceSize()
	plain, err := s.aead.Open(nil, data[:n], data[n:], []byte(name))
	if err != nil {
		return fmt.Errorf("invalid %s cookie: %w", name, err)
	}
	return json.Unmarshal(plain, v)
}

// readSession returns the request's session, or false when there is none
// or it is invalid or expired.
func (u *UI) readSession(r *http.Request) (session, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return session{}, false
	}
	var s session
	if err := u.sealer.open(sessionCookie, c.Value, &s); err != nil {
		u.log.InfoContext(r.Context(), "session cookie rejected", "error", err)
		return session{}, false
	}
	if u.now().Unix() >= s.Expires || s.Subject == "" || s.CSRF == "" {
		return session{}, false
	}
	return s, true
}

// writeSession sets the session cookie: HttpOnly so scripts cannot read
// it, Secure, and SameSite=Strict so no other site's page sends it.
func (u *UI) writeSession(w http.ResponseWriter, s session) error {
	value, err := u.sealer.seal(sessionCookie, s)
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: value, Path: "/", MaxAge: int(u.sessionTTL.Seconds()),
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	return nil
}

// writeSignIn sets the short-lived sign-in cookie. It is SameSite=Lax, not
// Strict, because the provider's redirect back to /auth/callback is a
// navigation from another site, on which a Strict cookie is not sent.
func (u *UI) writeSignIn(w http.ResponseWriter, st signInState) error {
	value, err := u.sealer.seal(signInCookie, st)
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: signInCookie, Value: value, Path: "/", MaxAge: int(signInLifetime.Seconds()),
		HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode})
	return nil
}

// clearCookie deletes a cookie with the attributes it was set with.
func clearCookie(w http.ResponseWriter, name string, sameSite http.SameSite) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: true, SameSite: sameSite})
}

// validCSRF compares the form's token with the session's in constant time.
func validCSRF(s session, token string) bool {
	return token != "" && subtle.ConstantTimeCompare([]byte(s.CSRF), []byte(token)) == 1
}

// randomToken returns n random bytes in base64url.
func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// expiresAt returns the Unix time d after now.
func expiresAt(now time.Time, d time.Duration) int64 { return now.Add(d).Unix() }
