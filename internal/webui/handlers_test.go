package webui

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/approval"
	"github.com/elevate-dev/elevate/internal/broker"
	"github.com/elevate-dev/elevate/internal/lifecycle"
	"github.com/elevate-dev/elevate/internal/policy"
	"github.com/elevate-dev/elevate/internal/store"
)

const (
	testSubscription = "9d2c6e1f-4a3b-4c5d-8e7f-0a1b2c3d4e50"
	readerRoleID     = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
	approverSubject  = "user:approver@contoso.example"
)

var testPolicy = []byte(`version: 1
groups:
  platform-admins:
    - user:approver@contoso.example
    - user:second@contoso.example
rules:
  - id: storage-read-needs-admin
    match: {roles: [Reader]}
    outcome: require
    require: {approvals: 2, groups: [platform-admins]}
    max_duration: 1h
`)

// fixture is a UI over a real SQLite store and broker service. The
// service's engine has no Azure behind it, so requests are stored directly
// and reviews never complete a grant (two approvals are required).
type fixture struct {
	ui    *UI
	store store.Store
	svc   *broker.Service
	now   time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "ui.db"), store.Options{Now: clock, Logger: quiet})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	pol, err := policy.Parse(testPolicy)
	if err != nil {
		t.Fatalf("parse policy: %v", err)
	}
	svc, err := broker.New(broker.Config{Store: st, Policy: pol, Engine: lifecycle.New(lifecycle.Config{}), Now: clock, Logger: quiet})
	if err != nil {
		t.Fatalf("broker.New: %v", err)
	}
	cfg := broker.ServerConfig{UI: broker.UIConfig{Enabled: true, Issuer: "https://127.0.0.1:1/oidc", ClientID: "elevate-ui"}}
	cfg.ApproverAuth.AdminGroups = []string{"elevate-admins"}
	ui, err := newUI(broker.UIDeps{Config: cfg, Service: svc, Store: st, Now: clock, Logger: quiet, URL: "https://127.0.0.1:8443"})
	if err != nil {
		t.Fatalf("newUI: %v", err)
	}
	return &fixture{ui: ui, store: st, svc: svc, now: now}
}

// seedRequest stores a pending request that needs two approvals.
func (f *fixture) seedRequest(t *testing.T, actor, justification, scope string) store.Request {
	t.Helper()
	id, err := access.ParseResourceID(scope)
	if err != nil {
		t.Fatalf("parse scope %q: %v", scope, err)
	}
	req := access.Request{
		ID:            "11111111-2222-4333-8444-" + strings.Repeat("5", 12),
		Principal:     access.Principal{ID: "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a801", Type: "ServicePrincipal"},
		Pairs:         []access.Pair{{RoleID: readerRoleID, Scope: id}},
		Justification: justification,
		Duration:      30 * time.Minute,
		Metadata:      access.Metadata{Repository: "contoso/payments", Actor: actor, RunURL: "javascript:alert(1)"},
		CreatedAt:     f.now,
	}
	stored, _, err := f.store.CreateRequest(context.Background(), store.Request{
		ID: req.ID, Requester: "repo:contoso/payments:environment:production",
		Claims:        map[string]string{"repository": "contoso/payments", "actor": actor},
		Principal:     store.Principal{ID: req.Principal.ID, Type: req.Principal.Type},
		Pairs:         []store.Pair{{RoleID: readerRoleID, Scope: id.String()}},
		Justification: justification, Duration: req.Duration,
		Metadata: map[string]string{"repository": "contoso/payments", "actor": actor, "run_url": "javascript:alert(1)"},
		Hash:     req.Hash(), Backend: "rbac",
		Decision: store.Decision{Outcome: store.OutcomeNeedsApproval, RuleID: "storage-read-needs-admin",
			RequiredApprovals: 2, Groups: []string{"platform-admins"}},
	})
	if err != nil {
		t.Fatalf("create request: %v", err)
	}
	return stored
}

// cookie returns a sealed session cookie for subject.
func (f *fixture) cookie(t *testing.T, subject string, admin bool) *http.Cookie {
	t.Helper()
	value, err := f.ui.sealer.seal(sessionCookie, session{Subject: subject, Admin: admin, CSRF: "csrf-" + subject,
		Expires: f.now.Add(time.Hour).Unix()})
	if err != nil {
		t.Fatalf("seal session: %v", err)
	}
	return &http.Cookie{Name: sessionCookie, Value: value}
}

func (f *fixture) do(req *http.Request, c *http.Cookie) *httptest.ResponseRecorder {
	if c != nil {
		req.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	f.ui.ServeHTTP(rec, req)
	return rec
}

func postForm(path string, form url.Values) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "https://127.0.0.1:8443"+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return req
}

var scopeRG = "/subscriptions/" + testSubscription + "/resourceGroups/rg-elevate-demo"

func TestPostWithoutValidCSRFTokenRejected(t *testing.T) {
	f := newFixture(t)
	r := f.seedRequest(t, "octocat", "read the storage account", scopeRG)
	cookie := f.cookie(t, approverSubject, false)
	cases := []struct {
		name   string
		cookie *http.Cookie
		form   url.Values
	}{
		{"missing token", cookie, url.Values{"verdict": {"approve"}, "request_hash": {r.Hash}}},
		{"wrong token", cookie, url.Values{"verdict": {"approve"}, "request_hash": {r.Hash}, "csrf_token": {"csrf-user:someone-else"}}},
		{"no session", nil, url.Values{"verdict": {"approve"}, "request_hash": {r.Hash}, "csrf_token": {"csrf-" + approverSubject}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := f.do(postForm("/requests/"+r.ID+"/review", c.form), c.cookie)
			if rec.Code != http.StatusForbidden {
				t.Errorf("status = %d; want 403", rec.Code)
			}
			approvals, err := f.store.ListApprovals(context.Background(), r.ID)
			if err != nil {
				t.Fatal(err)
			}
			if len(approvals) != 0 {
				t.Errorf("approvals = %d; want 0", len(approvals))
			}
		})
	}
	t.Run("cross-origin with token", func(t *testing.T) {
		req := postForm("/requests/"+r.ID+"/review", url.Values{"verdict": {"approve"}, "request_hash": {r.Hash}, "csrf_token": {"csrf-" + approverSubject}})
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		if rec := f.do(req, cookie); rec.Code != http.StatusForbidden {
			t.Errorf("status = %d; want 403", rec.Code)
		}
	})
}

func TestReviewWithTokenRecordsApproval(t *testing.T) {
	f := newFixture(t)
	r := f.seedRequest(t, "octocat", "read the storage account", scopeRG)
	form := url.Values{"verdict": {"approve"}, "request_hash": {r.Hash}, "csrf_token": {"csrf-" + approverSubject}, "comment": {"ok"}}
	rec := f.do(postForm("/requests/"+r.ID+"/review", form), f.cookie(t, approverSubject, false))
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("status = %d; want 303; body %s", rec.Code, rec.Body)
	}
	approvals, err := f.store.ListApprovals(context.Background(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(approvals) != 1 || approvals[0].RequestHash != r.Hash {
		t.Errorf("approvals = %+v; want one bound to hash %s", approvals, r.Hash)
	}
}

func TestReviewOfChangedHashRejected(t *testing.T) {
	f := newFixture(t)
	r := f.seedRequest(t, "octocat", "read the storage account", scopeRG)
	form := url.Values{"verdict": {"approve"}, "request_hash": {strings.Repeat("0", 64)}, "csrf_token": {"csrf-" + approverSubject}}
	rec := f.do(postForm("/requests/"+r.ID+"/review", form), f.cookie(t, approverSubject, false))
	if rec.Code != http.StatusConflict {
		t.Errorf("status = %d; want 409", rec.Code)
	}
}

func TestSelfApprovalRejected(t *testing.T) {
	f := newFixture(t)
	// The run was started by the GitHub account "approver@contoso.example",
	// which policy treats as the same person as user:approver@contoso.example.
	r := f.seedRequest(t, "approver@contoso.example", "read the storage account", scopeRG)
	cookie := f.cookie(t, approverSubject, false)

	page := f.do(httptest.NewRequest(http.MethodGet, "/", nil), cookie)
	body := page.Body.String()
	if !strings.Contains(body, `id="own-request-`+r.ID+`"`) {
		t.Errorf("pending page lacks the own-request notice")
	}
	if !strings.Contains(body, `id="approve-`+r.ID+`" disabled`) {
		t.Errorf("approve button is not disabled")
	}

	form := url.Values{"verdict": {"approve"}, "request_hash": {r.Hash}, "csrf_token": {"csrf-" + approverSubject}}
	rec := f.do(postForm("/requests/"+r.ID+"/review", form), cookie)
	if rec.Code != http.StatusForbidden {
		t.Errorf("status = %d; want 403", rec.Code)
	}
	if !strings.Contains(rec.Body.String(), "you are its requester") {
		t.Errorf("error page does not say why: %s", rec.Body)
	}
	approvals, err := f.store.ListApprovals(context.Background(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(approvals) != 0 {
		t.Errorf("approvals = %d; want 0", len(approvals))
	}
}

func TestOwnRequestMatching(t *testing.T) {
	r := store.Request{Requester: "repo:contoso/payments:environment:production",
		Claims: map[string]string{"actor": "Alice"}, Principal: store.Principal{ID: "oid-1"}}
	cases := []struct {
		name string
		s    session
		want bool
	}{
		{"actor under user prefix", session{Subject: "user:alice"}, true},
		{"other user", session{Subject: "user:bob"}, false},
		{"own principal", session{Subject: "user:carol", ObjectID: "OID-1"}, true},
		{"exact requester subject", session{Subject: "repo:contoso/payments:environment:production"}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, got := ownRequest(c.s, r); got != c.want {
				t.Errorf("ownRequest = %v; want %v", got, c.want)
			}
		})
	}
}

func TestSecurityHeadersOnEveryPage(t *testing.T) {
	f := newFixture(t)
	r := f.seedRequest(t, "octocat", "read", scopeRG)
	cookie := f.cookie(t, "user:admin@contoso.example", true)
	paths := []string{"/", "/active", "/history", "/history?state=bogus", "/dashboard", "/requests/" + r.ID,
		"/requests/" + r.ID + "/audit", "/requests/unknown", "/nope", "/static/style.css", "/static/countdown.js",
		"/auth/callback?state=x&code=y"}
	for _, p := range paths {
		for _, signedIn := range []bool{true, false} {
			c := cookie
			if !signedIn {
				c = nil
			}
			rec := f.do(httptest.NewRequest(http.MethodGet, p, nil), c)
			h := rec.Header()
			if got := h.Get("Content-Security-Policy"); got != contentSecurityPolicy {
				t.Errorf("GET %s (signed in %v): CSP = %q; want %q", p, signedIn, got, contentSecurityPolicy)
			}
			if got := h.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("GET %s: X-Content-Type-Options = %q; want nosniff", p, got)
			}
			if got := h.Get("Referrer-Policy"); got != "no-referrer" {
				t.Errorf("GET %s: Referrer-Policy = %q; want no-referrer", p, got)
			}
			if strings.Contains(rec.Body.String(), "<script>") || strings.Contains(rec.Body.String(), " style=") {
				t.Errorf("GET %s: page has an inline script or style", p)
			}
		}
	}
}

func TestPagesWithoutSessionShowSignIn(t *testing.T) {
	f := newFixture(t)
	for _, p := range []string{"/", "/active", "/history", "/dashboard"} {
		rec := f.do(httptest.NewRequest(http.MethodGet, p, nil), nil)
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("GET %s: status = %d; want 401", p, rec.Code)
		}
		if !strings.Contains(rec.Body.String(), `href="/login"`) {
			t.Errorf("GET %s: no sign-in link", p)
		}
	}
}

func TestSessionCookieFlags(t *testing.T) {
	f := newFixture(t)
	rec := httptest.NewRecorder()
	if err := f.ui.writeSession(rec, session{Subject: approverSubject, CSRF: "x", Expires: f.now.Add(time.Hour).Unix()}); err != nil {
		t.Fatal(err)
	}
	cookies := rec.Result().Cookies()
	if len(cookies) != 1 {
		t.Fatalf("cookies = %d; want 1", len(cookies))
	}
	c := cookies[0]
	if c.Name != sessionCookie {
		t.Errorf("name = %q; want %q", c.Name, sessionCookie)
	}
	if !c.HttpOnly {
		t.Errorf("HttpOnly = false; want true")
	}
	if !c.Secure {
		t.Errorf("Secure = false; want true")
	}
	if c.SameSite != http.SameSiteStrictMode {
		t.Errorf("SameSite = %v; want Strict", c.SameSite)
	}
	if c.Path != "/" {
		t.Errorf("Path = %q; want /", c.Path)
	}
	if strings.Contains(c.Value, "approver") {
		t.Errorf("cookie value shows the subject in clear: %q", c.Value)
	}
}

func TestTamperedSessionRejected(t *testing.T) {
	f := newFixture(t)
	good := f.cookie(t, approverSubject, false)
	tampered := []byte(good.Value)
	tampered[len(tampered)/2] ^= 1
	expired, err := f.ui.sealer.seal(sessionCookie, session{Subject: approverSubject, CSRF: "x", Expires: f.now.Unix()})
	if err != nil {
		t.Fatal(err)
	}
	other, err := newSealer("")
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.seal(sessionCookie, session{Subject: approverSubject, CSRF: "x", Expires: f.now.Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	signIn, err := f.ui.sealer.seal(signInCookie, session{Subject: approverSubject, CSRF: "x", Expires: f.now.Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{"tampered": string(tampered), "expired": expired, "other key": foreign, "other cookie's value": signIn}
	for name, value := range cases {
		t.Run(name, func(t *testing.T) {
			rec := f.do(httptest.NewRequest(http.MethodGet, "/", nil), &http.Cookie{Name: sessionCookie, Value: value})
			if rec.Code != http.StatusUnauthorized {
				t.Errorf("status = %d; want 401", rec.Code)
			}
		})
	}
}

// hostile strings are values a requester controls, directly or through
// names in Azure.
const (
	hostileScript = `<script>alert("x")</script>`
	hostileImg    = `"><img src=x onerror=alert(1)>`
)

func TestUserSuppliedStringsEscaped(t *testing.T) {
	f := newFixture(t)
	r := f.seedRequest(t, hostileImg, "deploy "+hostileScript+" now", scopeRG)
	// Role and resource names come from Azure; put hostile ones in the
	// table cache as a lookup would have returned them.
	f.ui.tables.tables[r.ID+"/"+r.Hash] = approval.Table{
		RequestID: r.ID, PrincipalID: r.Principal.ID, PrincipalType: r.Principal.Type, PrincipalName: hostileImg,
		Duration: r.Duration, Justification: r.Justification,
		Metadata: access.Metadata{Repository: hostileScript, Actor: hostileImg, RunURL: "javascript:alert(1)"},
		Rows: []approval.Row{{RoleName: hostileScript, RoleID: readerRoleID, ResourceName: hostileImg,
			ResourceType: hostileScript, ResourceID: scopeRG, Warning: hostileScript}},
	}
	cookie := f.cookie(t, "user:admin@contoso.example", true)
	for _, p := range []string{"/", "/requests/" + r.ID, "/history?requester=" + url.QueryEscape(hostileImg)} {
		rec := f.do(httptest.NewRequest(http.MethodGet, p, nil), cookie)
		body := rec.Body.String()
		for _, raw := range []string{hostileScript, hostileImg, `<img`, `href="javascript:`} {
			if strings.Contains(body, raw) {
				t.Errorf("GET %s: body contains %q unescaped", p, raw)
			}
		}
		if p != "/history?requester="+url.QueryEscape(hostileImg) && !strings.Contains(body, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") {
			t.Errorf("GET %s: escaped script text not found", p)
		}
	}
}

func TestRevokeNeedsAdmin(t *testing.T) {
	f := newFixture(t)
	r := f.seedRequest(t, "octocat", "read", scopeRG)
	form := url.Values{"csrf_token": {"csrf-" + approverSubject}}
	rec := f.do(postForm("/requests/"+r.ID+"/revoke", form), f.cookie(t, approverSubject, false))
	if rec.Code != http.StatusForbidden {
		t.Errorf("status = %d; want 403", rec.Code)
	}
}

func TestAuditTrailNeedsAdmin(t *testing.T) {
	f := newFixture(t)
	r := f.seedRequest(t, "octocat", "read", scopeRG)
	rec := f.do(httptest.NewRequest(http.MethodGet, "/requests/"+r.ID+"/audit", nil), f.cookie(t, approverSubject, false))
	if rec.Code != http.StatusForbidden {
		t.Errorf("status = %d; want 403", rec.Code)
	}
}

func TestFailedRevocationBanner(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	r := f.seedRequest(t, "octocat", "read", scopeRG)
	steps := []struct {
		from, to store.RequestState
	}{{store.RequestPending, store.RequestApproved}, {store.RequestApproved, store.RequestActive},
		{store.RequestActive, store.RequestRevoking}, {store.RequestRevoking, store.RequestRevokeFailed}}
	for _, s := range steps {
		msg := "delete role assignment: 500"
		if _, err := f.store.TransitionRequest(ctx, r.ID, []store.RequestState{s.from}, s.to, store.RequestUpdate{Error: &msg}); err != nil {
			t.Fatalf("%s -> %s: %v", s.from, s.to, err)
		}
	}
	for _, p := range []string{"/", "/active", "/history", "/dashboard"} {
		rec := f.do(httptest.NewRequest(http.MethodGet, p, nil), f.cookie(t, approverSubject, false))
		body := rec.Body.String()
		if !strings.Contains(body, `id="failed-revocations"`) || !strings.Contains(body, r.ID) {
			t.Errorf("GET %s: no failed revocation banner naming %s", p, r.ID)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	cases := []struct {
		in   time.Duration
		want string
	}{{0, "0s"}, {-time.Second, "0s"}, {45 * time.Second, "45s"}, {15 * time.Minute, "15m"},
		{150 * time.Second, "2m30s"}, {time.Hour + 5*time.Minute, "1h5m"}, {8 * time.Hour, "8h"}}
	for _, c := range cases {
		if got := formatDuration(c.in); got != c.want {
			t.Errorf("formatDuration(%s) = %q; want %q", c.in, got, c.want)
		}
	}
}

// TestHistoryFallsBackToRoleIDs lists a request whose role cannot be looked
// up (the fixture has no Azure): the page shows the role id instead.
func TestHistoryFallsBackToRoleIDs(t *testing.T) {
	f := newFixture(t)
	f.seedRequest(t, "octocat", "read", scopeRG)
	rec := f.do(httptest.NewRequest(http.MethodGet, "/history", nil), f.cookie(t, "user:admin@contoso.example", true))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /history: status = %d; want 200", rec.Code)
	}
	if want := `<span class="role" title="` + readerRoleID + `">` + readerRoleID + `</span>`; !strings.Contains(rec.Body.String(), want) {
		t.Errorf("GET /history: no role id fallback %s", want)
	}
}
