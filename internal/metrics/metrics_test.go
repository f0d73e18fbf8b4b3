package metrics

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/store"
)

// clock is a settable fake time.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func openStore(t *testing.T, c *clock) store.Store {
	t.Helper()
	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "elevate.db"), store.Options{Now: c.Now})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func request(label, outcome, rule string) store.Request {
	sum := sha256.Sum256([]byte(label))
	return store.Request{
		Requester: "repo:org/app:environment:prod",
		Principal: store.Principal{ID: "11111111-2222-3333-4444-555555555555", Type: "ServicePrincipal"},
		Pairs: []store.Pair{{RoleID: "acdd72a7-3385-48ef-bd42-f606fba81ae7",
			Scope: "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-a"}},
		Justification: label, Duration: 30 * time.Minute, Hash: hex.EncodeToString(sum[:]), Backend: "rbac",
		Decision: store.Decision{Outcome: outcome, RuleID: rule},
	}
}

// scrape returns the text exposition of m's handler.
func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape status: got %d; want 200: %s", resp.StatusCode, body)
	}
	return string(body)
}

// wantSample checks that the exposition has the sample line exactly.
func wantSample(t *testing.T, text, line string) {
	t.Helper()
	for l := range strings.Lines(text) {
		if strings.TrimSpace(l) == line {
			return
		}
	}
	t.Errorf("scrape: got no line %q; want it", line)
}

// must returns a function that fails the test on a non-nil error and
// returns the value, so one line can call the store and check it.
func must(t *testing.T) func(v any, err error) any {
	return func(v any, err error) any {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func TestScrapeAfterGrantAndRevoke(t *testing.T) {
	ctx := context.Background()
	c := &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	raw := openStore(t, c)
	m := New(Options{Store: raw})
	st := m.InstrumentStore(raw)

	// A denied request and one that needs approval.
	denied, _, err := st.CreateRequest(ctx, request("deny", store.OutcomeDeny, ""))
	if err != nil {
		t.Fatal(err)
	}
	must(t)(st.TransitionRequest(ctx, denied.ID, []store.RequestState{store.RequestPending}, store.RequestDenied, store.RequestUpdate{}))
	r, _, err := st.CreateRequest(ctx, request("grant", store.OutcomeNeedsApproval, "prod"))
	if err != nil {
		t.Fatal(err)
	}
	must(t)(st.TransitionRequest(ctx, r.ID, []store.RequestState{store.RequestPending}, store.RequestApproved, store.RequestUpdate{}))

	// Grant: intent, then active 2 s later.
	expiry := c.Now().Add(30 * time.Minute)
	acq := must(t)(st.AcquireGrant(ctx, store.AcquireParams{RequestID: r.ID, PrincipalID: r.Principal.ID,
		PrincipalType: r.Principal.Type, RoleID: r.Pairs[0].RoleID, Scope: r.Pairs[0].Scope,
		AssignmentName: "7d0c3b4e-1111-5222-8333-444455556666", Backend: "rbac", LeaseExpiresAt: expiry})).(store.Acquisition)
	c.Add(2 * time.Second)
	must(t)(st.MarkGrant(ctx, acq.Grant.ID, []store.GrantState{store.GrantIntent}, store.GrantActive, store.GrantUpdate{}))
	must(t)(st.TransitionRequest(ctx, r.ID, []store.RequestState{store.RequestApproved}, store.RequestActive,
		store.RequestUpdate{GrantedAt: c.Now(), ExpiresAt: expiry}))

	text := scrape(t, m)
	wantSample(t, text, `elevate_requests_total{outcome="deny",rule_id="default"} 1`)
	wantSample(t, text, `elevate_requests_total{outcome="needs_approval",rule_id="prod"} 1`)
	wantSample(t, text, `elevate_requests_finished_total{state="denied"} 1`)
	wantSample(t, text, `elevate_grant_duration_seconds_sum 2`)
	wantSample(t, text, `elevate_grant_duration_seconds_count 1`)
	wantSample(t, text, `elevate_active_grants 1`)
	wantSample(t, text, `elevate_active_leases 1`)
	wantSample(t, text, `elevate_revoke_failed_grants 0`)

	// The lease expires; the sweeper releases it 3 s late, the first
	// delete fails, and the retry is verified 2 s after the release.
	c.Add(30*time.Minute + time.Second)
	rel := must(t)(st.ReleaseLease(ctx, acq.Lease.ID)).(store.Release)
	if !rel.Revoke {
		t.Fatalf("release: got Revoke false; want true for the last lease")
	}
	c.Add(time.Second)
	msg := "delete: 500"
	must(t)(st.MarkGrant(ctx, acq.Grant.ID, []store.GrantState{store.GrantRevoking}, store.GrantRevokeFailed,
		store.GrantUpdate{LastError: &msg}))
	wantSample(t, scrape(t, m), `elevate_revoke_failed_grants 1`)
	c.Add(time.Second)
	must(t)(st.MarkGrant(ctx, acq.Grant.ID, []store.GrantState{store.GrantRevokeFailed}, store.GrantRevoked,
		store.GrantUpdate{VerifiedAt: c.Now()}))

	text = scrape(t, m)
	wantSample(t, text, `elevate_revoke_duration_seconds_sum 2`)
	wantSample(t, text, `elevate_sweeper_lag_seconds_sum 5`)
	wantSample(t, text, `elevate_sweeper_lag_seconds_count 1`)
	wantSample(t, text, `elevate_active_grants 0`)
	wantSample(t, text, `elevate_active_leases 0`)
	wantSample(t, text, `elevate_revoke_failed_grants 0`)
}

func TestMiddlewareLabelsRouteAndStatus(t *testing.T) {
	c := &clock{now: time.Now()}
	m := New(Options{Store: openStore(t, c)})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/requests/{id}", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not found", http.StatusNotFound)
	})
	mux.HandleFunc("POST /v1/requests", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
	})
	srv := httptest.NewServer(m.Middleware(mux))
	defer srv.Close()
	for _, call := range []struct{ method, path string }{
		{"GET", "/v1/requests/a"}, {"GET", "/v1/requests/b"}, {"POST", "/v1/requests"}, {"GET", "/wp-login.php"},
	} {
		req, _ := http.NewRequest(call.method, srv.URL+call.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", call.method, call.path, err)
		}
		resp.Body.Close()
	}
	text := scrape(t, m)
	wantSample(t, text, `elevate_api_request_duration_seconds_count{code="404",route="GET /v1/requests/{id}"} 2`)
	wantSample(t, text, `elevate_api_request_duration_seconds_count{code="201",route="POST /v1/requests"} 1`)
	wantSample(t, text, `elevate_api_request_duration_seconds_count{code="404",route="unmatched"} 1`)
}

func TestNotificationCounters(t *testing.T) {
	c := &clock{now: time.Now()}
	m := New(Options{Store: openStore(t, c)})
	m.NotificationFailed("platform-slack")
	m.NotificationFailed("platform-slack")
	m.NotificationDead("platform-slack")
	m.NotificationDelivered("audit_stream")
	text := scrape(t, m)
	wantSample(t, text, `elevate_notification_failures_total{sink="platform-slack"} 2`)
	wantSample(t, text, `elevate_notification_dead_letters_total{sink="platform-slack"} 1`)
	wantSample(t, text, `elevate_notifications_delivered_total{sink="audit_stream"} 1`)
}

func TestRuleLabelCardinalityCapped(t *testing.T) {
	m := New(Options{})
	for i := range maxRuleIDs {
		if got := m.ruleLabel(fmt.Sprintf("rule-%d", i)); got != fmt.Sprintf("rule-%d", i) {
			t.Fatalf("rule %d: got label %q; want the id", i, got)
		}
	}
	if got := m.ruleLabel("one-too-many"); got != "other" {
		t.Errorf("rule past the cap: got %q; want other", got)
	}
	if got := m.ruleLabel("rule-0"); got != "rule-0" {
		t.Errorf("known rule after the cap: got %q; want rule-0", got)
	}
	if got := m.ruleLabel(""); got != "default" {
		t.Errorf("empty rule: got %q; want default", got)
	}
}

func TestScrapeSurvivesStoreFailure(t *testing.T) {
	c := &clock{now: time.Now()}
	st := openStore(t, c)
	m := New(Options{Store: st})
	m.NotificationDead("x")
	st.Close()
	// The gauges fail; the counters are still served.
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("status: got %d; want 200 with the store closed", resp.StatusCode)
	}
	wantSample(t, string(body), `elevate_notification_dead_letters_total{sink="x"} 1`)
	if strings.Contains(string(body), "elevate_active_grants ") {
		t.Errorf("scrape: got elevate_active_grants with the store closed; want it left out")
	}
}

func TestConfigListenImpliesEnabled(t *testing.T) {
	c := Config{Listen: "127.0.0.1:9464"}
	if err := c.CheckAndSetDefaults(); err != nil || !c.Enabled {
		t.Errorf("listen set: got enabled %v, %v; want true, nil", c.Enabled, err)
	}
	bad := Config{Listen: "9464"}
	if err := bad.CheckAndSetDefaults(); err == nil || !strings.Contains(err.Error(), `invalid metrics.listen "9464"`) {
		t.Errorf("listen without host: got %v; want an invalid metrics.listen error", err)
	}
}
