package webui

import (
	"crypto/subtle"
	"net/http"
	"strings"
)

// login starts a sign-in: it keeps a fresh state, nonce and PKCE verifier
// in the sign-in cookie and sends the browser to the provider.
func (u *UI) login(w http.ResponseWriter, r *http.Request) {
	d, err := u.provider.endpoints(r.Context())
	if err != nil {
		u.log.ErrorContext(r.Context(), "sign-in provider unavailable", "issuer", u.provider.issuer, "error", err)
		u.renderError(w, r, nil, http.StatusServiceUnavailable, "The sign-in provider cannot be reached. Try again in a minute.")
		return
	}
	st := signInState{State: randomToken(32), Nonce: randomToken(32), Verifier: randomToken(32),
		Expires: expiresAt(u.now(), signInLifetime)}
	target, err := u.provider.authorizeURL(d, st)
	if err == nil {
		err = u.writeSignIn(w, st)
	}
	if err != nil {
		u.fail(w, r, nil, err)
		return
	}
	http.Redirect(w, r, target, http.StatusFound)
}

// callback finishes a sign-in: it checks the state, redeems the code with
// the PKCE verifier, verifies the ID token and its nonce, and starts a
// session.
func (u *UI) callback(w http.ResponseWriter, r *http.Request) {
	var st signInState
	c, err := r.Cookie(signInCookie)
	if err == nil {
		err = u.sealer.open(signInCookie, c.Value, &st)
	}
	if err != nil || u.now().Unix() >= st.Expires {
		u.renderError(w, r, nil, http.StatusBadRequest, "This sign-in was not started here or took longer than 10 minutes. Sign in again.")
		return
	}
	q := r.URL.Query()
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(st.State)) != 1 {
		u.log.WarnContext(r.Context(), "sign-in callback with a wrong state rejected")
		u.renderError(w, r, nil, http.StatusBadRequest, "The sign-in response does not belong to this sign-in. Sign in again.")
		return
	}
	clearCookie(w, signInCookie, http.SameSiteLaxMode)
	if e := q.Get("error"); e != "" {
		u.log.InfoContext(r.Context(), "sign-in rejected by the provider", "error", e)
		u.renderError(w, r, nil, http.StatusForbidden, "The sign-in provider rejected the sign-in: "+e+". Sign in again.")
		return
	}
	d, err := u.provider.endpoints(r.Context())
	if err != nil {
		u.log.ErrorContext(r.Context(), "sign-in provider unavailable", "issuer", u.provider.issuer, "error", err)
		u.renderError(w, r, nil, http.StatusServiceUnavailable, "The sign-in provider cannot be reached. Try again in a minute.")
		return
	}
	claims, err := u.provider.redeem(r.Context(), d, q.Get("code"), st)
	if err != nil {
		u.log.WarnContext(r.Context(), "sign-in failed", "error", err)
		u.renderError(w, r, nil, http.StatusForbidden, "The sign-in could not be completed. Sign in again.")
		return
	}
	name := strings.TrimSpace(claims.String("preferred_username"))
	if name == "" {
		u.renderError(w, r, nil, http.StatusForbidden, "The ID token has no preferred_username claim, which names you in the broker.")
		return
	}
	groups := u.provider.groups(claims)
	s := session{Subject: "user:" + name, ObjectID: claims.String("oid"), Groups: groups, Admin: u.isAdmin(groups), CSRF: randomToken(32),
		Expires: expiresAt(u.now(), u.sessionTTL)}
	if err := u.writeSession(w, s); err != nil {
		u.fail(w, r, nil, err)
		return
	}
	u.log.InfoContext(r.Context(), "signed in", "subject", s.Subject, "admin", s.Admin)
	// A page, not a redirect: the browser came here from the provider's
	// site, and a redirect would keep that navigation cross-site, so the
	// new SameSite=Strict cookie would not be sent with it. The page's
	// refresh is a navigation from this site.
	u.render(w, r, http.StatusOK, "signedin.html", nil, pageData{Title: "Signed in"})
}

// logout ends the session by deleting its cookie.
func (u *UI) logout(w http.ResponseWriter, r *http.Request, s session) error {
	clearCookie(w, sessionCookie, http.SameSiteStrictMode)
	u.log.InfoContext(r.Context(), "signed out", "subject", s.Subject)
	http.Redirect(w, r, "/", http.StatusSeeOther)
	return nil
}
