package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/store"
)

// openStore returns a fresh SQLite store in the test's directory.
func openStore(t *testing.T) store.Store {
	t.Helper()
	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "elevate.db"), store.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// hostile is a request whose every name tries to inject markup, links and
// mentions.
func hostile() store.Request {
	return store.Request{
		ID:            "0b7d4e52-0000-4000-8000-000000000001",
		State:         store.RequestPending,
		Requester:     "repo:org/app:environment:prod",
		Principal:     store.Principal{ID: "11111111-2222-3333-4444-555555555555", Type: "ServicePrincipal"},
		Justification: "<!channel> *urgent* [click](https://evil.example) @here & <@U123>\nsecond line",
		Duration:      30 * time.Minute,
		Pairs: []store.Pair{{RoleID: "acdd72a7-3385-48ef-bd42-f606fba81ae7",
			Scope: "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-<b>"}},
		Metadata: map[string]string{"repository": "org/app", "run_url": "https://github.com/org/app/actions/runs/1"},
		Decision: store.Decision{Outcome: store.OutcomeNeedsApproval, RuleID: "prod", RequiredApprovals: 1,
			Groups: []string{"platform"}},
	}
}

// sampleRequest returns a valid new request for the store, named by label.
func sampleRequest(label string, groups ...string) store.Request {
	sum := sha256.Sum256([]byte(label))
	r := hostile()
	r.ID = ""
	r.State = ""
	r.Hash = hex.EncodeToString(sum[:])
	r.Backend = "rbac"
	r.Decision.Groups = groups
	return r
}

// delivery is one request a receiver got.
type delivery struct {
	header http.Header
	body   []byte
	status int
}

// receiver is a loopback webhook endpoint. respond picks the status of
// the n-th call (from 1); a negative status makes the call hang until the
// client gives up.
type receiver struct {
	*httptest.Server
	mu      sync.Mutex
	calls   []delivery
	respond func(n int, body []byte) int
}

func newReceiver(t *testing.T, respond func(n int, body []byte) int) *receiver {
	t.Helper()
	rc := &receiver{respond: respond}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		n := len(rc.calls) + 1
		status := http.StatusOK
		if rc.respond != nil {
			status = rc.respond(n, body)
		}
		rc.calls = append(rc.calls, delivery{header: r.Header.Clone(), body: body, status: status})
		rc.mu.Unlock()
		if status < 0 {
			<-r.Context().Done()
			return
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(rc.Close)
	return rc
}

// succeeded returns the calls that got a 2xx status.
func (rc *receiver) succeeded() []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []delivery
	for _, c := range rc.calls {
		if c.status >= 200 && c.status < 300 {
			out = append(out, c)
		}
	}
	return out
}

func (rc *receiver) all() []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]delivery(nil), rc.calls...)
}

// waitFor polls cond every 5 ms until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fastConfig is a checked Config with delays of milliseconds.
func fastConfig(t *testing.T, sinks ...SinkConfig) Config {
	t.Helper()
	c := Config{Sinks: sinks, MaxAttempts: 4, RetryBase: 10 * time.Millisecond, RetryMax: 40 * time.Millisecond,
		PollInterval: 5 * time.Millisecond, Timeout: 100 * time.Millisecond}
	if err := c.CheckAndSetDefaults(); err != nil {
		t.Fatalf("check config: %v", err)
	}
	return c
}

// counter is an Observer that counts outcomes per sink.
type counter struct {
	mu                      sync.Mutex
	delivered, failed, dead map[string]int
}

func newCounter() *counter {
	return &counter{delivered: map[string]int{}, failed: map[string]int{}, dead: map[string]int{}}
}

func (c *counter) NotificationDelivered(s string) { c.add(c.delivered, s) }
func (c *counter) NotificationFailed(s string)    { c.add(c.failed, s) }
func (c *counter) NotificationDead(s string)      { c.add(c.dead, s) }

func (c *counter) add(m map[string]int, s string) {
	c.mu.Lock()
	m[s]++
	c.mu.Unlock()
}

func (c *counter) get(m map[string]int, s string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return m[s]
}

// testLogger writes the dispatcher's log to the test log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}
