// Package webui is the broker's web UI for reviewers and admins: pending
// requests with the approval table to decide on, active grants counting
// down, history with filters, each request's audit trail and a dashboard.
//
// Pages are rendered on the server with html/template, which escapes every
// value, and carry a strict Content-Security-Policy: no inline script or
// style, and one same-origin script that only updates countdowns. People
// sign in with OIDC (authorization code flow with PKCE); the session lives
// in an AES-GCM sealed cookie that is HttpOnly, Secure and SameSite=Strict,
// and every form carries the session's CSRF token. The UI acts through
// broker.Service, so it applies the same checks as the API.
package webui

import (
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/elevate-dev/elevate/internal/broker"
	"github.com/elevate-dev/elevate/internal/oidc"
	"github.com/elevate-dev/elevate/internal/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// contentSecurityPolicy allows only same-origin scripts, styles and forms,
// images from the page itself, and no framing.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// UI serves the web pages. Build it with New.
type UI struct {
	svc         *broker.Service
	store       store.Store
	tables      *tableSource
	provider    *provider
	sealer      *sealer
	sessionTTL  time.Duration
	adminGroups []string
	now         func() time.Time
	log         *slog.Logger
	pages       map[string]*template.Template
	handler     http.Handler
}

// New builds the UI from the parts of a broker. Its signature fits
// broker.ServerOptions.UI.
func New(d broker.UIDeps) (http.Handler, error) {
	return newUI(d)
}

func newUI(d broker.UIDeps) (*UI, error) {
	cfg := d.Config.UI
	switch {
	case d.Service == nil || d.Store == nil:
		return nil, errors.New("web UI needs the broker's service and store")
	case !strings.HasPrefix(cfg.Issuer, "https://") || cfg.ClientID == "":
		return nil, errors.New("web UI needs ui.issuer (https) and ui.client_id")
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Client == nil {
		d.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if d.Getenv == nil {
		d.Getenv = func(string) string { return "" }
	}
	ttl := cfg.SessionTTL
	if ttl <= 0 {
		ttl = broker.DefaultUISessionTTL
	}
	redirect := cfg.RedirectURL
	if redirect == "" {
		redirect = strings.TrimSuffix(d.URL, "/") + "/auth/callback"
	}
	verifier, err := oidc.New(oidc.Config{Issuer: cfg.Issuer, Audience: cfg.ClientID, Client: d.Client, Now: d.Now})
	if err != nil {
		return nil, fmt.Errorf("ui sign-in: %w", err)
	}
	sealer, err := newSealer(cfg.SessionKey)
	if err != nil {
		return nil, err
	}
	if cfg.SessionKey == "" {
		d.Logger.Warn("ui.session_key is not set: sessions use a random key and end when the broker restarts")
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	u := &UI{
		svc: d.Service, store: d.Store, tables: newTableSource(d.Engine),
		provider: &provider{issuer: cfg.Issuer, clientID: cfg.ClientID, redirectURL: redirect,
			clientSecret: d.Getenv("ELEVATE_UI_CLIENT_SECRET"), groupsClaim: cmpOr(cfg.GroupsClaim, broker.DefaultGroupsClaim),
			client: d.Client, verifier: verifier},
		sealer: sealer, sessionTTL: ttl, adminGroups: d.Config.ApproverAuth.AdminGroups,
		now: d.Now, log: d.Logger.With("component", "webui"), pages: pages,
	}
	u.handler = u.routes()
	return u, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// ServeHTTP sets the security headers of every response and routes it.
func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	if !strings.HasPrefix(r.URL.Path, "/static/") {
		h.Set("Cache-Control", "no-store")
	}
	u.handler.ServeHTTP(w, r)
}

// page is a handler of a signed-in person's page. It renders on success
// and returns an error otherwise, which fail turns into an error page.
type page func(w http.ResponseWriter, r *http.Request, s session) error

// routes returns the UI's routes. Browser routes never accept a bearer
// token, and the API's routes under /v1 never accept the session cookie.
func (u *UI) routes() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", staticHandler(static)))
	mux.HandleFunc("GET /login", u.login)
	mux.HandleFunc("GET /auth/callback", u.callback)
	mux.HandleFunc("POST /logout", u.form(u.logout))
	mux.HandleFunc("GET /{$}", u.signedIn(u.pendingPage))
	mux.HandleFunc("GET /active", u.signedIn(u.activePage))
	mux.HandleFunc("GET /history", u.signedIn(u.historyPage))
	mux.HandleFunc("GET /dashboard", u.signedIn(u.dashboardPage))
	mux.HandleFunc("GET /requests/{id}", u.signedIn(u.requestPage))
	mux.HandleFunc("GET /requests/{id}/audit", u.signedIn(u.auditPage))
	mux.HandleFunc("POST /requests/{id}/review", u.form(u.review))
	mux.HandleFunc("POST /requests/{id}/revoke", u.form(u.revoke))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		u.renderError(w, r, nil, http.StatusNotFound, "No page at "+r.URL.Path+".")
	})
	// Cross-origin POSTs are refused on Sec-Fetch-Site or Origin before
	// the CSRF token is even read, as a second line of defence.
	return http.NewCrossOriginProtection().Handler(mux)
}

// staticHandler serves the embedded CSS and script, cached for an hour.
func staticHandler(files fs.FS) http.Handler {
	fileServer := http.FileServerFS(files)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "" || strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r) // no directory listings
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=3600")
		fileServer.ServeHTTP(w, r)
	})
}

// signedIn runs p for a signed-in person and shows the sign-in page to
// anyone else.
func (u *UI) signedIn(p page) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, ok := u.readSession(r)
		if !ok {
			u.render(w, r, http.StatusUnauthorized, "signin.html", nil, pageData{Title: "Sign in"})
			return
		}
		if err := p(w, r, s); err != nil {
			u.fail(w, r, &s, err)
		}
	}
}

// form runs p for a POST from a signed-in person's form with the session's
// CSRF token, and responds 403 to any other POST.
func (u *UI) form(p page) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		s, ok := u.readSession(r)
		if !ok {
			u.renderError(w, r, nil, http.StatusForbidden, "You are not signed in, or your session ended. Sign in and try again.")
			return
		}
		if err := r.ParseForm(); err != nil {
			u.renderError(w, r, &s, http.StatusBadRequest, "The form could not be read.")
			return
		}
		if !validCSRF(s, r.PostForm.Get("csrf_token")) {
			u.log.WarnContext(r.Context(), "form without a valid CSRF token rejected", "path", r.URL.Path, "subject", s.Subject)
			u.renderError(w, r, &s, http.StatusForbidden, "The form's security token is missing or out of date. Reload the page and try again.")
			return
		}
		if err := p(w, r, s); err != nil {
			u.fail(w, r, &s, err)
		}
	}
}

// maxFormBytes caps a form body; a review comment fits well within it.
const maxFormBytes = 16 << 10

// userError is an error whose message is written for the person using the
// page, with the HTTP status to respond with.
type userError struct {
	status  int
	message string
}

func (e *userError) Error() string { return e.message }

// fail maps an error to an error page. Messages of the broker's own
// checks name the value and the fix, so they are shown. Anything else is
// logged and replaced by a fixed message.
func (u *UI) fail(w http.ResponseWriter, r *http.Request, s *session, err error) {
	var ue *userError
	switch {
	case errors.As(err, &ue):
		u.renderError(w, r, s, ue.status, ue.message)
	case errors.Is(err, broker.ErrForbidden):
		u.renderError(w, r, s, http.StatusForbidden, err.Error())
	case errors.Is(err, broker.ErrInvalid), errors.Is(err, store.ErrInvalid):
		u.renderError(w, r, s, http.StatusBadRequest, err.Error())
	case errors.Is(err, store.ErrNotFound):
		u.renderError(w, r, s, http.StatusNotFound, err.Error())
	case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrDuplicate):
		u.renderError(w, r, s, http.StatusConflict, err.Error())
	default:
		u.log.ErrorContext(r.Context(), "page failed", "path", r.URL.Path, "error", err)
		u.renderError(w, r, s, http.StatusInternalServerError, "Something failed on the broker. Its log has the detail.")
	}
}

// isAdmin reports whether a signed-in person with these groups is an admin,
// by approver_auth.admin_groups.
func (u *UI) isAdmin(groups []string) bool {
	for _, g := range groups {
		if slices.ContainsFunc(u.adminGroups, func(a string) bool { return strings.EqualFold(a, g) }) {
			return true
		}
	}
	return false
}

// identity is the broker identity of a session.
func (s session) identity() broker.Identity {
	return broker.Identity{Subject: s.Subject, Groups: s.Groups, Admin: s.Admin}
}
