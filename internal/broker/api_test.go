package broker

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/brokerclient"
	"github.com/elevate-dev/elevate/internal/store"
)

const (
	testAudience  = "https://broker.test"
	approverToken = "approver-static-token-0123456789"
	adminToken    = "admin-static-token-0123456789"
	actorToken    = "actor-static-token-0123456789"
	approverGroup = "platform-admins"
)

// apiHarness is a broker Service behind its HTTP API on loopback, with
// pipeline tokens from the emulator's GitHub issuer and three static tokens.
type apiHarness struct {
	*harness
	api   *API
	url   string
	ready atomic.Bool
}

func digest(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func staticTokens() map[string]StaticIdentity {
	return map[string]StaticIdentity{
		digest(approverToken): {Subject: approver.Subject},
		digest(adminToken):    {Subject: admin.Subject, Admin: true},
		// The GitHub user who started the pipeline run, who must not
		// approve its request.
		digest(actorToken): {Subject: "github:octocat", Groups: []string{approverGroup}},
	}
}

// newAPIHarness builds the harness. With approverOIDC, people may also sign
// in with ID tokens of the emulator's GitHub issuer for the audience
// elevate-approvers, in place of the approvers' identity provider.
func newAPIHarness(t *testing.T, opts APIOptions, approverOIDC bool) *apiHarness {
	t.Helper()
	h := &apiHarness{harness: newHarness(t)}
	approverAuth := ApproverAuthConfig{StaticTokens: staticTokens(), AdminGroups: []string{"elevate-admins"}}
	if approverOIDC {
		approverAuth.OIDC = &ApproverOIDCConfig{Issuer: h.srv.GitHubIssuer(), Audience: "elevate-approvers"}
	}
	auth, err := NewAuthenticator(AuthConfig{
		Pipeline: PipelineAuthConfig{Issuer: h.srv.GitHubIssuer(), Audience: testAudience,
			AllowedRepositories: []string{"contoso/payments", "contoso/web"}},
		Approver: approverAuth,
		Client:   h.srv.Client(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if opts.Ready == nil {
		h.ready.Store(true)
		opts.Ready = h.ready.Load
	}
	h.api = NewAPI(h.svc, auth, opts)
	ts := httptest.NewServer(h.api.Handler())
	t.Cleanup(ts.Close)
	h.url = ts.URL
	return h
}

// pipelineToken mints a GitHub Actions token of contoso/payments in the
// production environment, with claims overriding the defaults.
func (h *apiHarness) pipelineToken(t *testing.T, claims map[string]any) string {
	t.Helper()
	base := map[string]any{
		"aud": testAudience, "sub": pipeline.Subject, "repository": "contoso/payments",
		"environment": "production", "ref": "refs/heads/main", "actor": "octocat",
	}
	for k, v := range claims {
		base[k] = v
	}
	tok, err := h.srv.MintGitHubToken(base)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) decode(t *testing.T, out any) {
	t.Helper()
	if err := json.Unmarshal(a.body, out); err != nil {
		t.Fatalf("decode %s: %v", a.body, err)
	}
}

func (a answer) errorCode(t *testing.T) string {
	t.Helper()
	var e brokerclient.ErrorBody
	a.decode(t, &e)
	return e.Error.Code
}

// call sends one API call; body is JSON-encoded unless it is a string.
func (h *apiHarness) call(t *testing.T, method, path, token string, body any, header http.Header) answer {
	t.Helper()
	var reader io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		reader = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		reader = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, h.url+path, reader)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: data}
}

// create posts a request as the default pipeline and returns its detail.
func (h *apiHarness) create(t *testing.T, in CreateInput) brokerclient.RequestDetail {
	t.Helper()
	a := h.call(t, "POST", "/v1/requests", h.pipelineToken(t, nil), in, nil)
	if a.status != http.StatusCreated {
		t.Fatalf("create status = %d; want 201; body %s", a.status, a.body)
	}
	var d brokerclient.RequestDetail
	a.decode(t, &d)
	return d
}

func TestCreateAutoApprovedOverAPI(t *testing.T) {
	h := newAPIHarness(t, APIOptions{}, false)
	a := h.call(t, "POST", "/v1/requests", h.pipelineToken(t, nil), vaultRequest("k1"), nil)
	if a.status != http.StatusCreated {
		t.Fatalf("status = %d; want 201; body %s", a.status, a.body)
	}
	for name, want := range map[string]string{
		"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Content-Type": "application/json",
	} {
		if got := a.header.Get(name); got != want {
			t.Errorf("header %s = %q; want %q", name, got, want)
		}
	}
	if a.header.Get("X-Request-Id") == "" {
		t.Errorf("header X-Request-Id is empty; want a call id")
	}
	var d brokerclient.RequestDetail
	a.decode(t, &d)
	if d.Request.State != brokerclient.StateActive {
		t.Errorf("state = %s; want active", d.Request.State)
	}
	if d.RequestHash == "" || d.RequestHash != d.Request.Hash {
		t.Errorf("request_hash = %q; want the request's hash %q", d.RequestHash, d.Request.Hash)
	}
	if !strings.Contains(d.TableMarkdown, "Key Vault Secrets Officer") {
		t.Errorf("table_markdown lacks the role name:\n%s", d.TableMarkdown)
	}
	if !strings.Contains(string(d.Table), `"resource_name": "kv-elevate-demo"`) {
		t.Errorf("table JSON lacks the vault name:\n%s", d.Table)
	}
	if len(d.Leases) != 1 || d.Leases[0].State != store.LeaseActive {
		t.Errorf("leases = %+v; want one active lease", d.Leases)
	}
	if d.Request.Metadata["repository"] != "contoso/payments" {
		t.Errorf("metadata repository = %q; want contoso/payments from the token", d.Request.Metadata["repository"])
	}
	if n := h.liveAssignments(); n != 1 {
		t.Errorf("assignments = %d; want 1", n)
	}
}

func TestIdempotencyKeyHeader(t *testing.T) {
	h := newAPIHarness(t, APIOptions{}, false)
	tok := h.pipelineToken(t, nil)
	in := vaultRequest("from-body")
	hdr := http.Header{"Idempotency-Key": {"from-header"}}

	first := h.call(t, "POST", "/v1/requests", tok, in, hdr)
	second := h.call(t, "POST", "/v1/requests", tok, in, hdr)
	if first.status != http.StatusCreated || second.status != http.StatusOK {
		t.Fatalf("statuses = %d, %d; want 201, 200; bodies %s %s", first.status, second.status, first.body, second.body)
	}
	var d1, d2 brokerclient.RequestDetail
	first.decode(t, &d1)
	second.decode(t, &d2)
	if d1.Request.ID != d2.Request.ID {
		t.Errorf("replayed id = %s; want %s", d2.Request.ID, d1.Request.ID)
	}
	if want := requestID(pipeline.Subject, "from-header"); d1.Request.ID != want {
		t.Errorf("id = %s; want %s, derived from the header's key", d1.Request.ID, want)
	}
	changed := in
	changed.Justification = "something else entirely"
	if a := h.call(t, "POST", "/v1/requests", tok, changed, hdr); a.status != http.StatusConflict {
		t.Errorf("same key, other body: status = %d; want 409; body %s", a.status, a.body)
	}
	long := http.Header{"Idempotency-Key": {strings.Repeat("k", 300)}}
	if a := h.call(t, "POST", "/v1/requests", tok, in, long); a.status != http.StatusBadRequest {
		t.Errorf("300-character key: status = %d; want 400", a.status)
	}
}

func TestAuthRejectsBadTokens(t *testing.T) {
	h := newAPIHarness(t, APIOptions{}, false)
	now := time.Now()
	good := h.pipelineToken(t, nil)
	payload := strings.Split(good, ".")[1]
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT","kid":"x"}`)) + "." + payload + "."
	cases := []struct {
		name, token string
	}{
		{"missing token", ""},
		{"unknown static token", "not-a-configured-token"},
		{"wrong issuer", h.pipelineToken(t, map[string]any{"iss": "https://token.actions.githubusercontent.com"})},
		{"wrong audience", h.pipelineToken(t, map[string]any{"aud": "https://other-broker.test"})},
		{"expired token", h.pipelineToken(t, map[string]any{"exp": now.Add(-2 * time.Minute).Unix(),
			"iat": now.Add(-7 * time.Minute).Unix(), "nbf": now.Add(-7 * time.Minute).Unix()})},
		{"alg none", none},
		{"repository not allowed", h.pipelineToken(t, map[string]any{"repository": "mallory/fork"})},
		{"tampered signature", good[:len(good)-4] + "AAAA"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := h.call(t, "GET", "/v1/requests", tc.token, nil, nil)
			if a.status != http.StatusUnauthorized {
				t.Fatalf("status = %d; want 401; body %s", a.status, a.body)
			}
			if got := a.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
				t.Errorf("WWW-Authenticate = %q; want Bearer", got)
			}
			if code := a.errorCode(t); code != brokerclient.CodeUnauthorized {
				t.Errorf("error code = %q; want %q", code, brokerclient.CodeUnauthorized)
			}
			if tc.token != "" && bytes.Contains(a.body, []byte(tc.token)) {
				t.Errorf("answer echoes the token: %s", a.body)
			}
		})
	}
	if a := h.call(t, "GET", "/v1/requests", good, nil, nil); a.status != http.StatusOK {
		t.Errorf("good token: status = %d; want 200; body %s", a.status, a.body)
	}
}

func TestFailedAuthRateLimited(t *testing.T) {
	h := newAPIHarness(t, APIOptions{AuthFailureBurst: 3}, false)
	for i := range 3 {
		if a := h.call(t, "GET", "/v1/grants", "guess-"+string(rune('a'+i)), nil, nil); a.status != http.StatusUnauthorized {
			t.Fatalf("failure %d: status = %d; want 401", i+1, a.status)
		}
	}
	// Even the right token is not looked at until the bucket refills.
	a := h.call(t, "GET", "/v1/grants", approverToken, nil, nil)
	if a.status != http.StatusTooManyRequests {
		t.Fatalf("after 3 failures: status = %d; want 429", a.status)
	}
	if a.header.Get("Retry-After") == "" {
		t.Errorf("429 has no Retry-After header")
	}
}

func TestCallerRateLimited(t *testing.T) {
	h := newAPIHarness(t, APIOptions{RatePerSecond: 0.001, RateBurst: 2}, false)
	var got []int
	for range 3 {
		got = append(got, h.call(t, "GET", "/v1/grants", approverToken, nil, nil).status)
	}
	want := []int{200, 200, 429}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("call %d: status = %d; want %d", i+1, got[i], want[i])
		}
	}
	// Another caller has its own bucket.
	if a := h.call(t, "GET", "/v1/grants", adminToken, nil, nil); a.status != http.StatusOK {
		t.Errorf("other caller: status = %d; want 200", a.status)
	}
}

func TestReviewOverAPI(t *testing.T) {
	h := newAPIHarness(t, APIOptions{}, false)
	d := h.create(t, readerRequest("r1"))
	if d.Request.State != brokerclient.StatePending {
		t.Fatalf("state = %s; want pending", d.Request.State)
	}
	path := "/v1/requests/" + d.Request.ID
	good := brokerclient.ReviewInput{RequestHash: d.RequestHash, Comment: "ok"}
	cases := []struct {
		name   string
		path   string
		token  string
		body   any
		status int
	}{
		{"pipeline cannot approve", path + "/approve", h.pipelineToken(t, map[string]any{"sub": "repo:contoso/web:ref:refs/heads/main", "repository": "contoso/web"}), good, 403},
		{"run's actor cannot approve", path + "/approve", actorToken, good, 403},
		{"admin outside group cannot approve", path + "/approve", adminToken, good, 403},
		{"stale hash conflicts", path + "/approve", approverToken, brokerclient.ReviewInput{RequestHash: strings.Repeat("0", 64)}, 409},
		{"missing hash invalid", path + "/approve", approverToken, brokerclient.ReviewInput{}, 400},
		{"deny needs a comment", path + "/deny", approverToken, brokerclient.ReviewInput{RequestHash: d.RequestHash}, 400},
		{"unknown request", "/v1/requests/8a1f7c1e-0000-4000-8000-000000000000/approve", approverToken, good, 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if a := h.call(t, "POST", tc.path, tc.token, tc.body, nil); a.status != tc.status {
				t.Errorf("status = %d; want %d; body %s", a.status, tc.status, a.body)
			}
		})
	}
	a := h.call(t, "POST", path+"/approve", approverToken, good, nil)
	if a.status != http.StatusOK {
		t.Fatalf("approve: status = %d; want 200; body %s", a.status, a.body)
	}
	var got brokerclient.RequestDetail
	a.decode(t, &got)
	if got.Request.State != brokerclient.StateActive {
		t.Errorf("state after approval = %s; want active", got.Request.State)
	}
	if len(got.Approvals) != 1 || got.Approvals[0].Approver != approver.Subject {
		t.Errorf("approvals = %+v; want one by %s", got.Approvals, approver.Subject)
	}
	if a := h.call(t, "POST", path+"/approve", approverToken, good, nil); a.status != http.StatusConflict {
		t.Errorf("second approval: status = %d; want 409", a.status)
	}
}

func TestDenyOverAPI(t *testing.T) {
	h := newAPIHarness(t, APIOptions{}, false)
	d := h.create(t, readerRequest("r2"))
	a := h.call(t, "POST", "/v1/requests/"+d.Request.ID+"/deny", approverToken,
		brokerclient.ReviewInput{RequestHash: d.RequestHash, Comment: "not during the freeze"}, nil)
	if a.status != http.StatusOK {
		t.Fatalf("deny: status = %d; want 200; body %s", a.status, a.body)
	}
	var got brokerclient.RequestDetail
	a.decode(t, &got)
	if got.Request.State != brokerclient.StateDenied {
		t.Errorf("state = %s; want denied", got.Request.State)
	}
}

func TestApproverOIDCToken(t *testing.T) {
	h := newAPIHarness(t, APIOptions{}, true)
	d := h.create(t, readerRequest("o1"))
	person := func(claims map[string]any) string {
		base := map[string]any{"aud": "elevate-approvers", "sub": "00u1a2b3c4", "email": "someone@contoso.example"}
		for k, v := range claims {
			base[k] = v
		}
		tok, err := h.srv.MintGitHubToken(base)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	review := brokerclient.ReviewInput{RequestHash: d.RequestHash, Comment: "ok"}
	path := "/v1/requests/" + d.Request.ID

	// An admin by group may read the audit log but is no approver.
	adminByGroup := person(map[string]any{"preferred_username": "ops@contoso.example", "groups": []any{"elevate-admins"}})
	if a := h.call(t, "GET", "/v1/audit", adminByGroup, nil, nil); a.status != http.StatusOK {
		t.Errorf("admin group audit: status = %d; want 200; body %s", a.status, a.body)
	}
	if a := h.call(t, "POST", path+"/approve", person(nil), review, nil); a.status != http.StatusForbidden {
		t.Errorf("non-member approve: status = %d; want 403", a.status)
	}
	if a := h.call(t, "GET", "/v1/audit", person(nil), nil, nil); a.status != http.StatusForbidden {
		t.Errorf("non-admin audit: status = %d; want 403", a.status)
	}
	expired := person(map[string]any{"preferred_username": "approver@contoso.example",
		"exp": time.Now().Add(-time.Hour).Unix(), "iat": time.Now().Add(-2 * time.Hour).Unix()})
	if a := h.call(t, "POST", path+"/approve", expired, review, nil); a.status != http.StatusUnauthorized {
		t.Errorf("expired ID token: status = %d; want 401", a.status)
	}
	// The policy names the approver as user:approver@contoso.example.
	a := h.call(t, "POST", path+"/approve", person(map[string]any{"preferred_username": "approver@contoso.example"}), review, nil)
	if a.status != http.StatusOK {
		t.Fatalf("approve with ID token: status = %d; want 200; body %s", a.status, a.body)
	}
	var got brokerclient.RequestDetail
	a.decode(t, &got)
	if got.Request.State != brokerclient.StateActive || got.Approvals[0].Approver != approver.Subject {
		t.Errorf("state, approver = %s, %s; want active, %s", got.Request.State, got.Approvals[0].Approver, approver.Subject)
	}
}

func TestRevokeNeedsAdmin(t *testing.T) {
	h := newAPIHarness(t, APIOptions{}, false)
	d := h.create(t, vaultRequest("v1"))
	path := "/v1/requests/" + d.Request.ID + "/revoke"
	if a := h.call(t, "POST", path, approverToken, nil, nil); a.status != http.StatusForbidden {
		t.Errorf("approver revoke: status = %d; want 403", a.status)
	}
	if a := h.call(t, "POST", path, h.pipelineToken(t, nil), nil, nil); a.status != http.StatusForbidden {
		t.Errorf("pipeline revoke: status = %d; want 403", a.status)
	}
	a := h.call(t, "POST", path, adminToken, nil, nil)
	if a.status != http.StatusOK {
		t.Fatalf("admin revoke: status = %d; want 200; body %s", a.status, a.body)
	}
	var got brokerclient.RequestDetail
	a.decode(t, &got)
	if got.Request.State != brokerclient.StateRevoked {
		t.Errorf("state = %s; want revoked", got.Request.State)
	}
	if n := h.liveAssignments(); n != 0 {
		t.Errorf("assignments = %d; want 0", n)
	}
	if a := h.call(t, "POST", path, adminToken, "{}", nil); a.status != http.StatusConflict {
		t.Errorf("second revoke: status = %d; want 409", a.status)
	}
}

func TestCancelOverAPI(t *testing.T) {
	h := newAPIHarness(t, APIOptions{}, false)
	pending := h.create(t, readerRequest("c1"))
	active := h.create(t, vaultRequest("c2"))
	other := h.pipelineToken(t, map[string]any{"sub": "repo:contoso/web:ref:refs/heads/main", "repository": "contoso/web"})
	if a := h.call(t, "POST", "/v1/requests/"+pending.Request.ID+"/cancel", other, nil, nil); a.status != http.StatusForbidden {
		t.Errorf("other pipeline cancel: status = %d; want 403", a.status)
	}
	for _, tc := range []struct {
		id, want string
	}{{pending.Request.ID, brokerclient.StateCancelled}, {active.Request.ID, brokerclient.StateRevoked}} {
		a := h.call(t, "POST", "/v1/requests/"+tc.id+"/cancel", h.pipelineToken(t, nil), nil, nil)
		if a.status != http.StatusOK {
			t.Fatalf("cancel %s: status = %d; want 200; body %s", tc.id, a.status, a.body)
		}
		var got brokerclient.RequestDetail
		a.decode(t, &got)
		if got.Request.State != tc.want {
			t.Errorf("cancel %s: state = %s; want %s", tc.id, got.Request.State, tc.want)
		}
	}
	if n := h.liveAssignments(); n != 0 {
		t.Errorf("assignments = %d; want 0", n)
	}
}

func TestExtendWithinPolicy(t *testing.T) {
	h := newAPIHarness(t, APIOptions{}, false)
	d := h.create(t, vaultRequest("e1"))
	path := "/v1/requests/" + d.Request.ID + "/extend"
	if a := h.call(t, "POST", path, h.pipelineToken(t, nil), brokerclient.ExtendInput{Duration: "forever"}, nil); a.status != http.StatusBadRequest {
		t.Errorf("invalid duration: status = %d; want 400", a.status)
	}
	if a := h.call(t, "POST", path, approverToken, brokerclient.ExtendInput{Duration: "12m"}, nil); a.status != http.StatusForbidden {
		t.Errorf("approver extend: status = %d; want 403", a.status)
	}
	// The rule allows at most 15 minutes, and an extension never shortens.
	for _, tc := range []struct {
		duration string
		want     int
	}{{"20m", http.StatusBadRequest}, {"8m", http.StatusBadRequest}, {"12m", http.StatusOK}} {
		if a := h.call(t, "POST", path, h.pipelineToken(t, nil), brokerclient.ExtendInput{Duration: tc.duration}, nil); a.status != tc.want {
			t.Errorf("extend to %s: status = %d; want %d", tc.duration, a.status, tc.want)
		}
	}
	got, err := h.store.GetRequest(t.Context(), d.Request.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := got.GrantedAt.Add(12 * time.Minute); !got.ExpiresAt.Equal(want) {
		t.Errorf("expires at %s; want %s", got.ExpiresAt, want)
	}
}

func TestGetAndListRequests(t *testing.T) {
	h := newAPIHarness(t, APIOptions{}, false)
	first := h.create(t, vaultRequest("l1"))
	h.clock.Advance(time.Second) // the listing is ordered by creation time
	second := h.create(t, readerRequest("l2"))
	other := h.pipelineToken(t, map[string]any{"sub": "repo:contoso/web:ref:refs/heads/main", "repository": "contoso/web"})

	if a := h.call(t, "GET", "/v1/requests/"+first.Request.ID, approverToken, nil, nil); a.status != http.StatusOK {
		t.Errorf("approver get: status = %d; want 200", a.status)
	}
	if a := h.call(t, "GET", "/v1/requests/"+first.Request.ID, other, nil, nil); a.status != http.StatusForbidden {
		t.Errorf("other pipeline get: status = %d; want 403", a.status)
	}
	if a := h.call(t, "GET", "/v1/requests/8a1f7c1e-0000-4000-8000-000000000000", approverToken, nil, nil); a.status != http.StatusNotFound {
		t.Errorf("unknown id: status = %d; want 404", a.status)
	}

	cases := []struct {
		name, token, query string
		status             int
		ids                []string
	}{
		{"all newest first", approverToken, "", 200, []string{second.Request.ID, first.Request.ID}},
		{"state filter", approverToken, "?state=pending", 200, []string{second.Request.ID}},
		{"two states", approverToken, "?state=pending,active", 200, []string{second.Request.ID, first.Request.ID}},
		{"role filter", approverToken, "?role=acdd72a7-3385-48ef-bd42-f606fba81ae7", 200, []string{second.Request.ID}},
		{"scope prefix", approverToken, "?scope=" + vaultID, 200, []string{first.Request.ID}},
		{"principal filter", approverToken, "?principal=" + strings.ToUpper(pipelineOID), 200, []string{second.Request.ID, first.Request.ID}},
		{"other pipeline sees none", other, "", 200, nil},
		{"pipeline cannot list others", other, "?requester=" + pipeline.Subject, 403, nil},
		{"unknown state", approverToken, "?state=granted", 400, nil},
		{"limit too large", approverToken, "?limit=5000", 400, nil},
		{"bad cursor", approverToken, "?cursor=zzz", 400, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := h.call(t, "GET", "/v1/requests"+tc.query, tc.token, nil, nil)
			if a.status != tc.status {
				t.Fatalf("status = %d; want %d; body %s", a.status, tc.status, a.body)
			}
			if tc.status != 200 {
				return
			}
			var list brokerclient.RequestList
			a.decode(t, &list)
			var ids []string
			for _, r := range list.Requests {
				ids = append(ids, r.ID)
			}
			if strings.Join(ids, ",") != strings.Join(tc.ids, ",") {
				t.Errorf("ids = %v; want %v", ids, tc.ids)
			}
		})
	}

	// One page at a time.
	var page brokerclient.RequestList
	h.call(t, "GET", "/v1/requests?limit=1", approverToken, nil, nil).decode(t, &page)
	if len(page.Requests) != 1 || page.NextCursor == "" {
		t.Fatalf("first page = %d requests, cursor %q; want 1 and a cursor", len(page.Requests), page.NextCursor)
	}
	var next brokerclient.RequestList
	h.call(t, "GET", "/v1/requests?limit=1&cursor="+page.NextCursor, approverToken, nil, nil).decode(t, &next)
	if len(next.Requests) != 1 || next.Requests[0].ID != first.Request.ID {
		t.Errorf("second page = %+v; want the first request", next.Requests)
	}
}

func TestBodyLimitsAndStrictJSON(t *testing.T) {
	h := newAPIHarness(t, APIOptions{}, false)
	tok := h.pipelineToken(t, nil)
	huge := `{"justification":"` + strings.Repeat("x", MaxBodyBytes) + `"}`
	cases := []struct {
		name   string
		body   string
		status int
		code   string
	}{
		{"body over 64 KiB", huge, 413, brokerclient.CodeTooLarge},
		{"unknown field", `{"roles":["Reader"],"admin":true}`, 400, brokerclient.CodeInvalid},
		{"trailing data", `{"roles":["Reader"]} {}`, 400, brokerclient.CodeInvalid},
		{"empty body", ``, 400, brokerclient.CodeInvalid},
		{"not JSON", `roles=Reader`, 400, brokerclient.CodeInvalid},
		{"invalid duration", `{"roles":["Reader"],"scopes":["` + rg + `"],"principal_id":"` + pipelineOID + `","duration":"soon","justification":"x"}`, 400, brokerclient.CodeInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := h.call(t, "POST", "/v1/requests", tok, tc.body, nil)
			if a.status != tc.status {
				t.Fatalf("status = %d; want %d; body %.300s", a.status, tc.status, a.body)
			}
			if code := a.errorCode(t); code != tc.code {
				t.Errorf("error code = %q; want %q", code, tc.code)
			}
		})
	}
	d := h.create(t, readerRequest("b1"))
	a := h.call(t, "POST", "/v1/requests/"+d.Request.ID+"/cancel", tok, `{"force":true}`, nil)
	if a.status != http.StatusBadRequest {
		t.Errorf("cancel with unknown field: status = %d; want 400", a.status)
	}
}

func TestCreateByPersonForbidden(t *testing.T) {
	h := newAPIHarness(t, APIOptions{}, false)
	if a := h.call(t, "POST", "/v1/requests", approverToken, vaultRequest("p1"), nil); a.status != http.StatusForbidden {
		t.Errorf("status = %d; want 403; body %s", a.status, a.body)
	}
}

func TestGrantsAndAuditAccess(t *testing.T) {
	h := newAPIHarness(t, APIOptions{}, false)
	h.create(t, vaultRequest("g1"))
	if a := h.call(t, "GET", "/v1/grants", h.pipelineToken(t, nil), nil, nil); a.status != http.StatusForbidden {
		t.Errorf("pipeline grants: status = %d; want 403", a.status)
	}
	var grants brokerclient.GrantList
	h.call(t, "GET", "/v1/grants", approverToken, nil, nil).decode(t, &grants)
	if len(grants.Grants) != 1 || grants.Grants[0].State != "active" {
		t.Errorf("grants = %+v; want one active", grants.Grants)
	}

	if a := h.call(t, "GET", "/v1/audit", approverToken, nil, nil); a.status != http.StatusForbidden {
		t.Errorf("approver audit: status = %d; want 403", a.status)
	}
	if a := h.call(t, "GET", "/v1/audit?from=-1", adminToken, nil, nil); a.status != http.StatusBadRequest {
		t.Errorf("negative from: status = %d; want 400", a.status)
	}
	var page brokerclient.AuditPage
	h.call(t, "GET", "/v1/audit?limit=2", adminToken, nil, nil).decode(t, &page)
	if len(page.Events) != 2 || page.NextFrom != page.Events[1].Seq+1 {
		t.Fatalf("first audit page = %d events, next %d; want 2 and the seq after", len(page.Events), page.NextFrom)
	}
	var rest brokerclient.AuditPage
	h.call(t, "GET", "/v1/audit?from="+itoa(page.NextFrom), adminToken, nil, nil).decode(t, &rest)
	events := append(page.Events, rest.Events...)
	stored := make([]store.AuditEvent, len(events))
	for i, e := range events {
		stored[i] = store.AuditEvent{Seq: e.Seq, Time: e.Time, RequestID: e.RequestID, Event: e.Event,
			Actor: e.Actor, Detail: e.Detail, PrevHash: e.PrevHash, Hash: e.Hash}
	}
	if _, err := store.VerifyAuditChain(stored, ""); err != nil {
		t.Errorf("audit chain from the API: %v", err)
	}
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestHealthAndReadiness(t *testing.T) {
	h := newAPIHarness(t, APIOptions{}, false)
	h.ready.Store(false)
	if a := h.call(t, "GET", "/healthz", "", nil, nil); a.status != http.StatusOK {
		t.Errorf("healthz: status = %d; want 200", a.status)
	}
	if a := h.call(t, "GET", "/readyz", "", nil, nil); a.status != http.StatusServiceUnavailable {
		t.Errorf("readyz before reconcile: status = %d; want 503", a.status)
	}
	h.ready.Store(true)
	if a := h.call(t, "GET", "/readyz", "", nil, nil); a.status != http.StatusOK {
		t.Errorf("readyz: status = %d; want 200", a.status)
	}
	if err := h.store.Close(); err != nil {
		t.Fatal(err)
	}
	if a := h.call(t, "GET", "/readyz", "", nil, nil); a.status != http.StatusServiceUnavailable {
		t.Errorf("readyz with closed store: status = %d; want 503", a.status)
	}
}

func TestInternalErrorHidesDetail(t *testing.T) {
	h := newAPIHarness(t, APIOptions{}, false)
	d := h.create(t, vaultRequest("i1"))
	if err := h.store.Close(); err != nil {
		t.Fatal(err)
	}
	a := h.call(t, "GET", "/v1/requests/"+d.Request.ID, approverToken, nil, nil)
	if a.status != http.StatusInternalServerError {
		t.Fatalf("status = %d; want 500; body %s", a.status, a.body)
	}
	var e brokerclient.ErrorBody
	a.decode(t, &e)
	if e.Error.Code != brokerclient.CodeInternal || strings.Contains(e.Error.Message, "sql") {
		t.Errorf("error = %+v; want code internal and no store detail", e.Error)
	}
	if !strings.Contains(e.Error.Message, a.header.Get("X-Request-Id")) {
		t.Errorf("message %q does not name the call id %s", e.Error.Message, a.header.Get("X-Request-Id"))
	}
}

func TestUnknownRouteAndMethod(t *testing.T) {
	h := newAPIHarness(t, APIOptions{}, false)
	a := h.call(t, "GET", "/v2/requests", approverToken, nil, nil)
	if a.status != http.StatusNotFound {
		t.Errorf("unknown route: status = %d; want 404", a.status)
	}
	if got := a.header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("unknown route X-Content-Type-Options = %q; want nosniff", got)
	}
	if a := h.call(t, "DELETE", "/v1/requests", approverToken, nil, nil); a.status != http.StatusMethodNotAllowed {
		t.Errorf("DELETE /v1/requests: status = %d; want 405", a.status)
	}
}

func TestClientCreateInputMatchesServer(t *testing.T) {
	tags := func(v any) []string {
		var out []string
		typ := reflect.TypeOf(v)
		for i := range typ.NumField() {
			out = append(out, typ.Field(i).Name+" "+typ.Field(i).Tag.Get("json"))
		}
		return out
	}
	got, want := tags(brokerclient.CreateInput{}), tags(CreateInput{})
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("brokerclient.CreateInput fields = %v; want %v", got, want)
	}
}
