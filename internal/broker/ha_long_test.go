package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/brokerclient"
	"github.com/elevate-dev/elevate/internal/emulator"
	"github.com/elevate-dev/elevate/internal/evidence"
	"github.com/elevate-dev/elevate/internal/store"
)

// Settings of TestReplicasSurviveRepeatedKills.
const (
	// haRequestsVar overrides the number of requests (default 1,000).
	haRequestsVar = "ELEVATE_HA_REQUESTS"
	// haKillEvery is the real time between two kills.
	haKillEvery = 10 * time.Second
	// haCallers is the number of concurrent pipelines, and haRate the
	// requests they start per second in all. At that rate 1,000 requests
	// take about two minutes, long enough for a dozen kills.
	haCallers = 6
	haRate    = 8
	// Static tokens of the second platform admin and the security
	// reviewer, whom the Key Vault rules need besides the approver.
	secondToken   = "second-static-token-0123456789"
	securityToken = "security-static-token-0123456789"
	hookSecretVar = "ELEVATE_HA_HOOK_SECRET"
)

// TestReplicasSurviveRepeatedKills is the long broker HA evidence. Three
// `elevate serve` processes on one PostgreSQL schema receive 1,000
// requests, 8 per second, under four policy rules: Reader is granted at once, Contributor
// needs one approval, Key Vault Secrets Officer two, and Key Vault
// Administrator one from each of two groups. Every 10 s one replica,
// in turn, gets SIGKILL and is started again at once. Leases last 10
// minutes on the brokers' clock, which runs 60 times faster, so 10 s.
//
// It counts double grants and leaks in the emulator's assignment history,
// lost approvals (approvals that the API accepted, or the store holds,
// whose request never became active), lost notifications (events of a
// request's life that the webhook sink never received) and the real-time
// delay from lease expiry to verified revoke. With ELEVATE_EVIDENCE_OUT
// set it writes the figures as evidence result "ha" and each replica's
// log next to them. It runs only with ELEVATE_EVIDENCE=long, for several
// minutes, and TestThreeReplicasSurviveKill is the short version.
func TestReplicasSurviveRepeatedKills(t *testing.T) {
	if testing.Short() || !longEvidence() {
		t.Skip("long broker HA run: set ELEVATE_EVIDENCE=long")
	}
	dsn := postgresSchema(t)
	n := 1000
	if v := os.Getenv(haRequestsVar); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 4 {
			t.Fatalf("invalid %s %q: give a number of requests of at least 4", haRequestsVar, v)
		}
	}
	ctx := context.Background()
	srv := startHAEmulator(t, n, 0)
	hook := startHAHook(t)
	policyFile := haPolicyFile(t)
	epoch := time.Now()
	var procs []*brokerProc
	for i := range 3 {
		b := newBrokerProc(t, srv, fmt.Sprintf("replica-%d", i), fmt.Sprintf("postgres: %q", dsn), policyFile, epoch)
		addHAConfig(t, b, hook.url)
		procs = append(procs, b)
	}
	for _, b := range procs {
		b.start()
	}

	// Each call goes to one replica and, when that fails with no response
	// or a 5xx, to the next, as a client behind a load balancer would.
	var retries atomic.Int64
	call := func(i int, fn func(b *brokerProc) error) error {
		var err error
		for attempt := range 40 {
			if err = fn(procs[(i+attempt)%3]); err == nil || !retryable(err) {
				return err
			}
			retries.Add(1)
			time.Sleep(50 * time.Millisecond)
		}
		return err
	}

	runs := make([]haRequest, n)
	var next atomic.Int64
	var created atomic.Int64
	pace := time.NewTicker(time.Second / haRate)
	defer pace.Stop()
	var wg sync.WaitGroup
	for range haCallers {
		wg.Go(func() {
			for {
				<-pace.C
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				runs[i] = runHARequest(ctx, t, srv, procs, call, i)
				created.Add(1)
			}
		})
	}

	// Kill one replica every haKillEvery until every request has ended, so
	// kills land during creates, approvals and expiries alike.
	stopKills := make(chan struct{})
	killsDone := make(chan int)
	go func() {
		kills := 0
		ticker := time.NewTicker(haKillEvery)
		defer ticker.Stop()
		for {
			select {
			case <-stopKills:
				killsDone <- kills
				return
			case <-ticker.C:
			}
			b := procs[kills%3]
			b.kill()
			kills++
			t.Logf("killed %s after %d of %d requests were sent", b.name, created.Load(), n)
			b.start()
		}
	}()
	started := time.Now()
	wg.Wait()
	t.Logf("sent %d requests in %s", n, time.Since(started).Round(time.Second))

	var ids []string
	for _, r := range runs {
		if r.id != "" {
			ids = append(ids, r.id)
		}
	}
	// Without kills the last request ends about 15 s after it was sent: a
	// 10 s lease and the sweep. Two minutes leaves room for a slow machine.
	waitAllEnded(t, procs, ids, 2*time.Minute)
	close(stopKills)
	kills := <-killsDone
	t.Logf("every request ended %s after the start, with %d kills", time.Since(started).Round(time.Second), kills)
	// The dispatchers poll every 200 ms and retry failed posts, so give
	// them a few seconds to deliver the events of the last revokes.
	hook.waitQuiet(5 * time.Second)

	st := openPostgres(t, dsn, nil)
	result := evidence.Result{Test: "ha", Mode: evidence.Mode(), Seed: evidence.Seed()}
	zero := &evidence.Target{Op: "==", Value: 0}
	findings, live := historyFindings(assignmentHistory(t, srv))
	for _, f := range findings {
		t.Errorf("double grant: %s", f)
	}
	if live != 0 {
		t.Errorf("role assignments left after every lease ended: got %d; want 0", live)
	}
	report := haReport(ctx, t, st, runs, hook)
	result.Add("ha.requests", float64(n), "requests", nil,
		fmt.Sprintf("%d callers; a quarter each Reader (granted at once), Contributor (1 approval), "+
			"Key Vault Secrets Officer (2 approvals), Key Vault Administrator (1 approval from each of 2 groups)", haCallers))
	result.Add("ha.kills", float64(kills), "kills", nil,
		fmt.Sprintf("SIGKILL every %s, replicas in turn, each started again at once", haKillEvery))
	result.Add("ha.double_grants", float64(len(findings)), "findings", zero,
		"emulator history: an assignment created twice, or two live at once for one principal, role and scope")
	result.Add("ha.leaks", float64(live), "assignments", zero, "temporary role assignments live after every request ended")
	result.Add("ha.not_revoked", float64(len(report.notRevoked)), "requests", zero,
		"requests whose every approval was accepted that did not end revoked")
	result.Add("ha.lost_approvals", float64(len(report.lostApprovals)), "requests", zero,
		"approvals accepted by the API or stored whose request never became active")
	result.Add("ha.lost_notifications", float64(len(report.lostNotifications)), "events", zero,
		"request, approved, granted and revoked events of each request that the webhook never received")
	result.Add("ha.duplicate_notifications", float64(hook.duplicates()), "deliveries", nil,
		"deliveries whose Idempotency-Key arrived before: delivery is at least once")
	result.Add("ha.expiry_to_revoke_p50_ms", report.lagP50, "ms", nil, "real time: lag on the broker clock divided by its rate of 60")
	result.Add("ha.expiry_to_revoke_p99_ms", report.lagP99, "ms", &evidence.Target{Op: "<=", Value: 1000})
	result.Add("ha.expiry_to_revoke_max_ms", report.lagMax, "ms", nil)
	result.Add("ha.call_retries", float64(retries.Load()), "calls", nil, "API calls sent again to the next replica after no response or a 5xx")
	for _, line := range report.lines() {
		t.Error(line)
	}
	if err := result.Write(); err != nil {
		t.Error(err)
	}
	writeHALogs(t, procs, report.affected())
	for _, f := range result.Figures {
		t.Logf("%s = %v %s", f.Name, f.Value, f.Unit)
	}
	checkStoreEnd(t, st)
}

// haRequest is what a pipeline and its reviewers saw of one request.
type haRequest struct {
	id        string
	role      string
	err       error
	accepted  int // approvals the API accepted
	conflicts int // approvals rejected with 409 after a retry
	needed    int // approvals the policy requires
}

// haInput returns request i of the mix: Reader, Contributor, Key Vault
// Secrets Officer and Key Vault Administrator in turn, and the reviewer
// tokens that approve it, in order.
func haInput(i int) (CreateInput, []string) {
	key := fmt.Sprintf("long-%d", i)
	switch i % 4 {
	case 1:
		return contributorFor(i, key), []string{approverToken}
	case 2:
		in := readerFor(i, key)
		in.Roles, in.Scopes = []string{"Key Vault Secrets Officer"}, []string{vaultID}
		return in, []string{approverToken, secondToken}
	case 3:
		in := readerFor(i, key)
		in.Roles, in.Scopes = []string{"Key Vault Administrator"}, []string{vaultID}
		return in, []string{approverToken, securityToken}
	}
	return readerFor(i, key), nil
}

// runHARequest creates request i through any replica and approves it
// with each reviewer it needs.
func runHARequest(ctx context.Context, t *testing.T, srv *emulator.Server, procs []*brokerProc,
	call func(int, func(*brokerProc) error) error, i int) haRequest {
	in, reviewers := haInput(i)
	out := haRequest{role: in.Roles[0], needed: len(reviewers)}
	var r brokerclient.RequestDetail
	err := call(i, func(b *brokerProc) error {
		pc, err := b.pipelineClient(srv)
		if err == nil {
			r, err = pc.Create(ctx, brokerInput(in))
		}
		return err
	})
	if err != nil {
		out.err = fmt.Errorf("create: %w", err)
		t.Errorf("request %d (%s): %v", i, out.role, out.err)
		return out
	}
	out.id = r.Request.ID
	for k, token := range reviewers {
		err := call(i+k+1, func(b *brokerProc) error {
			ac, err := b.client(token)
			if err == nil {
				_, err = ac.Approve(ctx, r.Request.ID, r.Request.Hash, "ok")
			}
			return err
		})
		var apiErr *brokerclient.APIError
		switch {
		case err == nil:
			out.accepted++
		case errors.As(err, &apiErr) && apiErr.Status == http.StatusConflict:
			// A retry after a kill: the first attempt was stored
			// (duplicate) and may have moved the request on (not
			// pending). haReport checks the store for both.
			out.conflicts++
		default:
			out.err = fmt.Errorf("approval %d of %d: %w", k+1, len(reviewers), err)
			t.Errorf("request %d %s (%s): %v", i, out.id, out.role, out.err)
		}
	}
	return out
}

// addHAConfig adds the webhook sink and the two extra reviewers to the
// configuration newBrokerProc wrote.
func addHAConfig(t *testing.T, b *brokerProc, hookURL string) {
	t.Helper()
	path := filepath.Join(b.dir, "elevate.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(data), "  static_tokens:\n", fmt.Sprintf("  static_tokens:\n    %s: {subject: %q}\n    %s: {subject: %q}\n",
		digest(secondToken), secondApprover, digest(securityToken), securityApprover), 1)
	cfg += fmt.Sprintf(`notify:
  sinks:
    - {name: ha-hook, type: webhook, url: %q, secret_env: %s}
  poll_interval: 200ms
  retry_base: 1s
  retry_max: 10s
`, hookURL, hookSecretVar)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	b.env = append(b.env, hookSecretVar+"=ha-hook-signing-key")
}

// haHook is a webhook sink on loopback that records every delivery.
type haHook struct {
	url  string
	mu   sync.Mutex
	seen map[string]int      // deliveries by Idempotency-Key
	got  map[string][]string // events by request id
	last time.Time           // time of the last delivery
}

func startHAHook(t *testing.T) *haHook {
	t.Helper()
	h := &haHook{seen: map[string]int{}, got: map[string][]string{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(http.HandlerFunc(h.serve))
	ts.Listener.Close()
	ts.Listener = ln
	ts.Start()
	t.Cleanup(ts.Close)
	h.url = ts.URL + "/hook"
	return h
}

func (h *haHook) serve(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(r.Body)
	var body struct {
		Event   string `json:"event"`
		Request struct {
			ID string `json:"id"`
		} `json:"request"`
	}
	if err == nil {
		err = json.Unmarshal(data, &body)
	}
	if err != nil {
		http.Error(w, "invalid body: "+err.Error(), http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	key := r.Header.Get("Idempotency-Key")
	h.seen[key]++
	if h.seen[key] == 1 {
		h.got[body.Request.ID] = append(h.got[body.Request.ID], body.Event)
	}
	h.last = time.Now()
	w.WriteHeader(http.StatusNoContent)
}

// waitQuiet waits until no delivery arrived for quiet.
func (h *haHook) waitQuiet(quiet time.Duration) {
	for {
		h.mu.Lock()
		since := time.Since(h.last)
		h.mu.Unlock()
		if since >= quiet {
			return
		}
		time.Sleep(quiet - since)
	}
}

func (h *haHook) events(requestID string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.got[requestID])
}

func (h *haHook) duplicates() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, c := range h.seen {
		n += c - 1
	}
	return n
}

// haFindings are the requests that broke a promise, and the lag figures.
type haFindings struct {
	notRevoked        []string
	lostApprovals     []string
	lostNotifications []string
	lagP50, lagP99    float64 // real milliseconds
	lagMax            float64
}

func (f haFindings) lines() []string {
	var out []string
	for _, s := range f.notRevoked {
		out = append(out, "not revoked: "+s)
	}
	for _, s := range f.lostApprovals {
		out = append(out, "lost approval: "+s)
	}
	for _, s := range f.lostNotifications {
		out = append(out, "lost notification: "+s)
	}
	return out
}

// affected returns the request ids that the findings name.
func (f haFindings) affected() []string {
	var ids []string
	for _, line := range f.lines() {
		_, rest, _ := strings.Cut(line, "request ")
		id, _, _ := strings.Cut(rest, " ")
		if id != "" && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids
}

// haReport checks each request's end state, approvals, notifications and
// revoke lag in the store.
func haReport(ctx context.Context, t *testing.T, st store.Store, runs []haRequest, hook *haHook) haFindings {
	t.Helper()
	var f haFindings
	var lags []time.Duration
	for _, run := range runs {
		if run.id == "" {
			continue
		}
		r, err := st.GetRequest(ctx, run.id)
		if err != nil {
			t.Fatalf("read request %s: %v", run.id, err)
		}
		approvals, err := st.ListApprovals(ctx, run.id)
		if err != nil {
			t.Fatal(err)
		}
		leases, err := st.ListLeases(ctx, store.LeaseFilter{RequestID: run.id})
		if err != nil {
			t.Fatal(err)
		}
		summary := fmt.Sprintf("request %s (%s) is %s with %d of %d approvals accepted, %d answered 409, %d stored, %d leases; error %q",
			run.id, run.role, r.State, run.accepted, run.needed, run.conflicts, len(approvals), len(leases), r.Error)
		approved := run.accepted+run.conflicts == run.needed && run.err == nil
		if approved && r.State != store.RequestRevoked {
			f.notRevoked = append(f.notRevoked, summary)
		}
		if (run.accepted > 0 || len(approvals) > 0) && r.GrantedAt.IsZero() {
			f.lostApprovals = append(f.lostApprovals, summary)
		}

		var want []string
		if run.needed > 0 {
			want = append(want, "request", "approved")
		}
		if !r.GrantedAt.IsZero() {
			want = append(want, "granted")
		}
		if r.State == store.RequestRevoked {
			want = append(want, "revoked")
		}
		got := hook.events(run.id)
		for _, event := range want {
			if !slices.Contains(got, event) {
				f.lostNotifications = append(f.lostNotifications, fmt.Sprintf("request %s (%s): %s event missing; received %v", run.id, run.role, event, got))
			}
		}

		for _, l := range leases {
			g, err := st.GetGrant(ctx, l.GrantID)
			if err != nil {
				t.Fatal(err)
			}
			if g.VerifiedAt.IsZero() || l.ExpiresAt.IsZero() {
				continue
			}
			lags = append(lags, g.VerifiedAt.Sub(l.ExpiresAt)/clockRate)
		}
	}
	if len(lags) > 0 {
		slices.Sort(lags)
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		f.lagP50, f.lagP99, f.lagMax = ms(lags[len(lags)/2]), ms(lags[len(lags)*99/100]), ms(lags[len(lags)-1])
	}
	return f
}

// waitAllEnded polls the replicas until every request in ids is in a
// terminal state, and fails the test after timeout. It queries each
// replica in turn, because any of them may be down.
func waitAllEnded(t *testing.T, procs []*brokerProc, ids []string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	waiting := slices.Clone(ids)
	for round := 0; len(waiting) > 0; round++ {
		// A restarted replica has a new certificate, so each round makes
		// a new client.
		c, err := procs[round%len(procs)].client(adminToken)
		var still []string
		for _, id := range waiting {
			if err != nil {
				still = append(still, id)
				continue
			}
			r, getErr := c.Get(context.Background(), id)
			if getErr != nil || !store.RequestState(r.Request.State).Terminal() {
				still = append(still, id)
			}
		}
		waiting = still
		if len(waiting) > 0 && time.Now().After(deadline) {
			t.Errorf("requests not ended after %s: %d, first %v", timeout, len(waiting), waiting[:min(10, len(waiting))])
			return
		}
		time.Sleep(time.Second)
	}
}

// writeHALogs writes each replica's stderr to ELEVATE_EVIDENCE_OUT, or,
// without it, logs the lines that mention an affected request.
func writeHALogs(t *testing.T, procs []*brokerProc, affected []string) {
	t.Helper()
	dir := os.Getenv(evidence.EnvOut)
	for _, b := range procs {
		logs := b.logs()
		if dir != "" {
			path := filepath.Join(dir, "ha-"+b.name+".log")
			if err := os.WriteFile(path, []byte(logs), 0o644); err != nil {
				t.Errorf("write %s: %v", path, err)
			}
			continue
		}
		for _, line := range strings.Split(logs, "\n") {
			for _, id := range affected {
				if strings.Contains(line, id) {
					t.Logf("%s: %s", b.name, line)
				}
			}
		}
	}
}
