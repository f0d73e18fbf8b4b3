package evidence

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/cli"
	"github.com/elevate-dev/elevate/internal/emulator"
	"github.com/elevate-dev/elevate/internal/lifecycle"
	"github.com/elevate-dev/elevate/internal/rotate"
)

// soakFaults fail or delay about 20% of the emulator's responses:
// 1 - (0.95 x 0.99 x 0.955 x 0.955 x 0.96 x 0.97) = 0.20. A rule fires
// only when the ones before it did not. The emulator sends no Retry-After
// header for RetryAfter 0.
func soakFaults(seed int64) emulator.FaultConfig {
	return emulator.FaultConfig{Seed: seed, Rules: []emulator.FaultRule{
		{Status: http.StatusTooManyRequests, Rate: 0.05},
		{Status: http.StatusTooManyRequests, RetryAfter: 1, Rate: 0.01},
		{Status: http.StatusInternalServerError, Rate: 0.045},
		{Status: http.StatusServiceUnavailable, Rate: 0.045},
		{Drop: true, Rate: 0.04},
		{Latency: 150 * time.Millisecond, Rate: 0.03},
	}}
}

// soakOutcome classifies one lifecycle.
type soakOutcome struct {
	ExitCode int
	Clean    bool // ended with every grant removed and no revoke failure
	Leaked   int  // assignments of the request left in the emulator
	Reported bool // Run returned a *lifecycle.RevokeError
	Missing  int  // request or complete record absent
	// Failure names the step that failed, "" when the lifecycle succeeded.
	Failure string
}

// failureOf names the lifecycle step that err comes from.
func failureOf(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, lifecycle.ErrGrant):
		return "grant"
	case errors.Is(err, lifecycle.ErrNotEffective):
		return "effective_wait"
	case errors.Is(err, lifecycle.ErrAction):
		return "action"
	default:
		return "other"
	}
}

// TestFaultSoak runs many lifecycles in-process against an emulator that
// fails about one response in five, and a few through the elevate binary.
func TestFaultSoak(t *testing.T) {
	total, workers, viaCLI := 30, 4, 2
	if Long() {
		total, workers, viaCLI = 1000, 8, 20
	}
	const perWorker = 3 // storage accounts per worker, so workers never share a pair
	seed, scopes := seedWith(workers*perWorker, "")
	srv := startEmulator(t, emulator.Config{Seed: seed, PropagationDelay: 20 * time.Millisecond})
	sess := connect(t, srv)
	dir := t.TempDir()

	// Resolve roles before the faults start; Run takes them resolved.
	resolver, _ := sess.engine(t, filepath.Join(dir, "resolve.jsonl"), nil, fastOptions())
	roleMap := roles(t, resolver, roleReader, roleSecretsOfficer)
	if err := srv.SetFaults(soakFaults(Seed())); err != nil {
		t.Fatal(err)
	}

	outcomes := make([]soakOutcome, total)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			auditPath := filepath.Join(dir, fmt.Sprintf("worker-%d.jsonl", w))
			engine, _ := sess.engine(t, auditPath, nil, fastOptions())
			mine := scopes[w*perWorker : (w+1)*perWorker]
			for i := w; i < total; i += workers {
				// Only worker 0 rotates, so no two lifecycles hold the vault pair at once.
				rotateNow := w == 0 && i%3 == 0
				outcomes[i] = soakOne(t, sess, engine, auditPath, roleMap, mine[:1+i%perWorker], rotateNow)
			}
		}()
	}
	wg.Wait()

	cliOutcomes := soakCLI(t, srv, scopes[:1], viaCLI)
	all := append(slices.Clone(outcomes), cliOutcomes...)

	var clean, leaked, reported, missing int
	codes := map[int]int{}
	failures := map[string]int{}
	for _, o := range outcomes {
		if o.Failure != "" {
			failures[o.Failure]++
		}
	}
	for _, o := range all {
		if o.Clean {
			clean++
		}
		leaked += o.Leaked
		if o.Reported {
			reported++
		}
		missing += o.Missing
		codes[o.ExitCode]++
	}
	res := Result{Test: "soak", Mode: Mode(), Seed: Seed()}
	res.Add("soak.lifecycles", float64(len(all)), "lifecycles", nil,
		fmt.Sprintf("%d in-process with %d workers, %d through the elevate binary", total, workers, len(cliOutcomes)))
	res.Add("soak.clean_percent", 100*float64(clean)/float64(len(all)), "%", &Target{Op: ">=", Value: 100},
		"clean: granted and revoked, or failed with every grant removed and no revoke failure")
	res.Add("soak.leaked_assignments", float64(leaked), "assignments", &Target{Op: "==", Value: 0})
	res.Add("soak.revoke_failed_reported", float64(reported), "lifecycles", &Target{Op: "==", Value: 0})
	res.Add("soak.audit_records_missing", float64(missing), "records", &Target{Op: "==", Value: 0})
	keys := make([]int, 0, len(codes))
	for k := range codes {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	for _, k := range keys {
		res.Add(fmt.Sprintf("soak.exit_code_%d", k), float64(codes[k]), "lifecycles", nil)
	}
	for _, step := range []string{"grant", "effective_wait", "action", "other"} {
		res.Add("soak.failed_at_"+step, float64(failures[step]), "lifecycles", nil)
	}
	res.Figures[len(res.Figures)-4].Notes = []string{"in-process lifecycles that failed, by the step that failed, " +
		"after the SDK's 3 tries per call and the engine's own retries; each still ended with its grants removed"}
	if err := res.Write(); err != nil {
		t.Fatal(err)
	}
	t.Logf("soak: failures by step %v", failures)
	t.Logf("soak: %d lifecycles, clean %d, leaked %d, revoke failures %d, records missing %d, exit codes %v",
		len(all), clean, leaked, reported, missing, codes)
	if leaked != 0 || reported != 0 || missing != 0 {
		t.Errorf("soak: leaked %d, revoke failures %d, records missing %d; want 0 each", leaked, reported, missing)
	}
}

// soakOne runs one lifecycle and classifies it.
func soakOne(t *testing.T, sess *session, engine *lifecycle.Engine, auditPath string,
	roleMap map[string]lifecycle.Role, scopes []string, rotateNow bool) soakOutcome {
	req := access.Request{
		ID:            uuid.NewString(),
		Principal:     access.Principal{ID: sess.caller.ObjectID, Type: access.PrincipalServicePrincipal},
		Pairs:         pairs(t, roleReader, scopes...),
		Justification: "fault soak",
		Duration:      time.Minute,
		CreatedAt:     time.Now().UTC(),
	}
	var action lifecycle.Action = noopAction{}
	var probers []lifecycle.Prober
	if rotateNow {
		req.Pairs = append(pairs(t, roleSecretsOfficer, vaultScope), req.Pairs...)
		rot := &rotate.Rotation{Store: sess.vault(t), Secret: secretName, RequestID: req.ID, Validate: validatePass}
		if err := rot.CheckAndSetDefaults(); err != nil {
			t.Errorf("rotation options: %v", err)
			return soakOutcome{}
		}
		action, probers = rot, []lifecycle.Prober{rot}
	}
	_, err := engine.Run(context.Background(), req, roleMap, action, probers)
	var revokeErr *lifecycle.RevokeError
	out := soakOutcome{ExitCode: cli.ExitCode(err), Reported: errors.As(err, &revokeErr),
		Leaked: leftAssignments(sess.srv, req.ID)}
	out.Clean = out.Leaked == 0 && !out.Reported
	out.Failure = failureOf(err)
	if out.Failure == "other" {
		t.Logf("lifecycle %s failed outside grant, wait and action: %v", req.ID, err)
	}
	out.Missing = missingOf(readEvents(auditPath, req.ID), "request", "complete")
	return out
}

// soakCLI runs n lifecycles through the elevate binary with the faults in
// place, one after another.
func soakCLI(t *testing.T, srv *emulator.Server, scopes []string, n int) []soakOutcome {
	if n == 0 || testing.Short() {
		return nil
	}
	bin := crashBinary(t)
	var out []soakOutcome
	for range n {
		auditLog := filepath.Join(t.TempDir(), "audit.jsonl")
		requestID := uuid.NewString()
		res := runBinary(t, bin, cliEnv(srv, auditLog), 3*time.Minute, "run", "--role", roleReader,
			"--scope", scopes[0], "--justification", "fault soak through the CLI", "--request-id", requestID,
			"--", "sh", "-c", "exit 0")
		o := soakOutcome{ExitCode: res.Code, Reported: res.Code == cli.ExitRevokeFailed,
			Leaked: leftAssignments(srv, requestID)}
		o.Clean = o.Leaked == 0 && !o.Reported
		events := readEvents(auditLog, requestID)
		if res.Code == cli.ExitOK || len(events) > 0 {
			o.Missing = missingOf(events, "request", "complete")
		}
		out = append(out, o)
	}
	return out
}

// missingOf counts the events of want that are not in events.
func missingOf(events []string, want ...string) int {
	n := 0
	for _, w := range want {
		if !slices.Contains(events, w) {
			n++
		}
	}
	return n
}

// noopAction succeeds at once.
type noopAction struct{}

func (noopAction) Name() string { return "noop" }

func (noopAction) Run(context.Context) (lifecycle.ActionResult, error) {
	return lifecycle.ActionResult{}, nil
}
