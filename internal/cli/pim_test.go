package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/audit"
	"github.com/elevate-dev/elevate/internal/azure"
	"github.com/elevate-dev/elevate/internal/emulator"
	"github.com/elevate-dev/elevate/internal/lifecycle"
	"github.com/elevate-dev/elevate/internal/plan"
)

// Entra role template ids the PIM CLI tests grant.
const (
	entraGlobalReader = "f2ef992c-3afb-46b9-b7cf-a126ee74c451"
	entraAppAdmin     = "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3"
	readerRoleID      = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
	// pipelineObjectID is the demo seed's elevate-pipeline principal.
	pipelineObjectID = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a801"
)

// acceleratedClock is real time plus an offset. After moves the offset
// forward by d and fires at once, so every lifecycle wait takes no real
// time, PIM's five minutes included. The emulator reads the same clock, so
// its schedules end and its checks pass as if the time had passed.
type acceleratedClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *acceleratedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *acceleratedClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	c.offset += max(d, 0)
	c.mu.Unlock()
	ch := make(chan time.Time, 1)
	ch <- c.Now()
	return ch
}

// startPIMCLIEnv starts the demo emulator on an accelerated clock. The
// pipeline is eligible for Reader at the storage account and for Entra
// Global Reader at "/", and may call Graph's role management API. Every
// role has the default PIM policy unless policies replaces it.
func startPIMCLIEnv(t *testing.T, policies ...emulator.SeedRolePolicy) (*cliEnv, *acceleratedClock) {
	t.Helper()
	clock := &acceleratedClock{}
	seed := emulator.DefaultSeed()
	pipeline, err := demoPrincipal(seed)
	if err != nil {
		t.Fatal(err)
	}
	for i := range seed.Principals {
		if seed.Principals[i].ObjectID == pipeline.ObjectID {
			seed.Principals[i].GraphAppRoles = []string{"RoleManagement.ReadWrite.Directory", "Directory.Read.All"}
		}
	}
	seed.Eligibilities = []emulator.SeedEligibility{
		{PrincipalID: pipeline.ObjectID, Scope: testStorage, RoleName: "Reader"},
		{PrincipalID: pipeline.ObjectID, DirectoryScopeID: "/", RoleDefinitionID: entraGlobalReader},
	}
	seed.RolePolicies = policies
	e := startCLIEnv(t, emulator.Config{Seed: seed, Now: clock.Now, PropagationDelay: 20 * time.Millisecond})
	e.vars["ELEVATE_GRAPH_ENDPOINT"] = e.srv.GraphEndpoint()
	return e, clock
}

// mainAt runs the CLI like main, with the lifecycle on clock.
func (e *cliEnv) mainAt(t *testing.T, clock lifecycle.Clock, args ...string) result {
	t.Helper()
	var out, errOut syncBuffer
	code := Main(context.Background(), args, Streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut,
		Getenv: func(k string) string { return e.vars[k] }, Clock: clock})
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// readAudit returns the records of a verified audit log.
func readAudit(t *testing.T, path string) []audit.Record {
	t.Helper()
	if _, err := audit.VerifyFile(path); err != nil {
		t.Fatalf("audit.VerifyFile: %v", err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("open audit log: %v", err)
	}
	defer f.Close()
	var records []audit.Record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), audit.MaxLineBytes)
	for sc.Scan() {
		var r audit.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("decode audit record: %v", err)
		}
		records = append(records, r)
	}
	return records
}

// deferredRecord returns the one revoke_deferred record of the log.
func deferredRecord(t *testing.T, records []audit.Record) audit.Record {
	t.Helper()
	var found []audit.Record
	for _, r := range records {
		if r.Event == "revoke_deferred" {
			found = append(found, r)
		}
	}
	if len(found) != 1 {
		t.Fatalf("revoke_deferred records: got %d; want 1", len(found))
	}
	return found[0]
}

// checkDeferral checks that the revoke_deferred record states which way
// the early deactivation went and when the grant ends. For a retry it also
// checks the retry time.
func checkDeferral(t *testing.T, rec audit.Record, backend string, endsAt time.Time, retried bool) {
	t.Helper()
	end := endsAt.UTC().Format(time.RFC3339)

	if len(rec.Pairs) != 1 || rec.Pairs[0].Backend != backend {
		t.Errorf("revoke_deferred pairs: got %+v; want one %s pair", rec.Pairs, backend)
	}
	for _, want := range []string{"ActiveDurationTooShort", "ends by itself at " + end} {
		if !strings.Contains(rec.Detail, want) {
			t.Errorf("revoke_deferred detail %q: want it to contain %q", rec.Detail, want)
		}
	}
	if !retried {
		if !strings.Contains(rec.Detail, "leaves it to expire") {
			t.Errorf("revoke_deferred detail %q: want it to say the grant is left to expire", rec.Detail)
		}
		return
	}

	_, after, ok := strings.Cut(rec.Detail, "retrying once at ")
	if !ok {
		t.Fatalf("revoke_deferred detail %q: want a retry time", rec.Detail)
	}
	retryAt, err := time.Parse(time.RFC3339, strings.SplitN(after, ",", 2)[0])
	if err != nil {
		t.Fatalf("retry time in %q: %v", rec.Detail, err)
	}
	// The retry comes five minutes after the activation, which is the end
	// minus the requested duration (15m), to within the second the
	// activation took.
	want := endsAt.Add(-15 * time.Minute).Add(azure.MinimumActiveDuration)
	if d := retryAt.Sub(want); d < -2*time.Second || d > 2*time.Second {
		t.Errorf("retry time: got %s; want five minutes after the activation, %s", retryAt.Format(time.RFC3339), want.Format(time.RFC3339))
	}
}

// liveReaderAssignments counts the pipeline's live Reader assignments at
// the storage account, PIM-made ones included.
func liveReaderAssignments(e *cliEnv) int {
	n := 0
	for _, a := range e.srv.RoleAssignments() {
		if strings.EqualFold(a.Scope, testStorage) && strings.HasSuffix(strings.ToLower(a.RoleDefinitionID), readerRoleID) &&
			a.PrincipalID == pipelineObjectID {
			n++
		}
	}
	return n
}

func TestRunPIMActivateShortJob(t *testing.T) {
	tests := []struct {
		name     string
		duration string
		retried  bool
	}{
		{"left to expire", "5m", false},
		{"retried after five minutes", "15m", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, clock := startPIMCLIEnv(t)
			got := e.mainAt(t, clock, "run", "--backend", "pim-activate", "--role", "Reader", "--scope", testStorage,
				"--justification", "short job", "--duration", tc.duration, "-o", "json", "--", "true")
			if got.code != ExitOK {
				t.Fatalf("exit code: got %d; want 0; stderr %s", got.code, got.stderr)
			}
			s := decodeSummary(t, got.stdout)
			if len(s.Grants) != 1 {
				t.Fatalf("grants: got %d; want 1", len(s.Grants))
			}
			g := s.Grants[0]
			if g.Backend != lifecycle.BackendPIMActivate || !g.Created || !g.Verified || g.EndsAt.IsZero() {
				t.Errorf("grant: backend %q created %v verified %v ends %v; want pim-activate, created, verified, an end",
					g.Backend, g.Created, g.Verified, g.EndsAt)
			}
			checkDeferral(t, deferredRecord(t, readAudit(t, e.audit)), lifecycle.BackendPIMActivate, g.EndsAt, tc.retried)
			if n := liveReaderAssignments(e); n != 0 {
				t.Errorf("live Reader assignments after run: got %d; want 0", n)
			}
		})
	}
}

func TestRunEntraRole(t *testing.T) {
	tests := []struct {
		name    string
		role    string
		mode    string
		retried bool // a self-activation is deactivated only after five minutes
	}{
		{"self activation", entraGlobalReader, "", true},
		{"admin assignment", entraAppAdmin, "adminAssign", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, clock := startPIMCLIEnv(t)
			args := []string{"run", "--backend", "entra-role", "--role", tc.role, "--justification", "directory job", "-o", "json"}
			if tc.mode != "" {
				args = append(args, "--entra-mode", tc.mode)
			}
			got := e.mainAt(t, clock, append(args, "--", "true")...)
			if got.code != ExitOK {
				t.Fatalf("exit code: got %d; want 0; stderr %s", got.code, got.stderr)
			}
			s := decodeSummary(t, got.stdout)
			if len(s.Grants) != 1 {
				t.Fatalf("grants: got %d; want 1", len(s.Grants))
			}
			g := s.Grants[0]
			if g.Backend != lifecycle.BackendEntraRole || !g.Created || !g.Verified || g.EndsAt.IsZero() {
				t.Errorf("grant: backend %q created %v verified %v ends %v; want entra-role, created, verified, an end",
					g.Backend, g.Created, g.Verified, g.EndsAt)
			}
			if !strings.HasPrefix(g.AssignmentID, "/roleManagement/directory/roleAssignmentScheduleRequests/") {
				t.Errorf("assignment id %q; want the Graph schedule request", g.AssignmentID)
			}
			records := readAudit(t, e.audit)
			if tc.retried {
				checkDeferral(t, deferredRecord(t, records), lifecycle.BackendEntraRole, g.EndsAt, true)
			} else {
				for _, r := range records {
					if r.Event == "revoke_deferred" {
						t.Errorf("revoke_deferred record for an admin assignment: %s", r.Detail)
					}
				}
			}
			if entraActive(t, e, tc.role) {
				t.Errorf("Entra role %s still active after run", tc.role)
			}
		})
	}
}

func TestPlanApplyPIMBackends(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		backend string
		label   string
	}{
		{"pim-activate", []string{"--backend", "pim-activate", "--role", "Reader", "--scope", testStorage}, lifecycle.BackendPIMActivate,
			"| Backend | pim-activate |"},
		{"entra-role", []string{"--backend", "entra-role", "--role", entraGlobalReader}, lifecycle.BackendEntraRole,
			"| Backend | entra-role; directory-scope=/ |"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, clock := startPIMCLIEnv(t)
			planFile := filepath.Join(t.TempDir(), "plan.json")
			args := append([]string{"plan", "--justification", "deploy", "--plan-file", planFile}, tc.args...)
			got := e.mainAt(t, clock, args...)
			if got.code != ExitOK {
				t.Fatalf("plan: exit %d; stderr %s", got.code, got.stderr)
			}
			for _, want := range []string{tc.label, "| pass | PIM eligibility |", "SelfActivate of 15m fits"} {
				if !strings.Contains(got.stdout, want) {
					t.Errorf("plan output: want it to contain %q; got %s", want, got.stdout)
				}
			}

			got = e.mainAt(t, clock, "apply", "--plan", planFile, "-o", "json", "--", "true")
			if got.code != ExitOK {
				t.Fatalf("apply: exit %d; stderr %s", got.code, got.stderr)
			}
			s := decodeSummary(t, got.stdout)
			if len(s.Grants) != 1 || s.Grants[0].Backend != tc.backend || !s.Grants[0].Verified {
				t.Fatalf("apply grants: got %+v; want one verified %s grant", s.Grants, tc.backend)
			}
			checkDeferral(t, deferredRecord(t, readAudit(t, e.audit)), tc.backend, s.Grants[0].EndsAt, true)
		})
	}
}

func TestRevokePlanWithoutAuditLog(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		active func(t *testing.T, e *cliEnv) bool
	}{
		{"pim-activate", []string{"--backend", "pim-activate", "--role", "Reader", "--scope", testStorage},
			func(t *testing.T, e *cliEnv) bool { return liveReaderAssignments(e) > 0 }},
		{"entra-role", []string{"--backend", "entra-role", "--role", entraGlobalReader},
			func(t *testing.T, e *cliEnv) bool { return entraActive(t, e, entraGlobalReader) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, clock := startPIMCLIEnv(t)
			planFile := filepath.Join(t.TempDir(), "plan.json")
			got := e.mainAt(t, clock, append([]string{"plan", "--justification", "lost runner", "--plan-file", planFile}, tc.args...)...)
			if got.code != ExitOK {
				t.Fatalf("plan: exit %d; stderr %s", got.code, got.stderr)
			}
			grantAsLostRunner(t, e, clock, planFile)
			if !tc.active(t, e) {
				t.Fatalf("grant not active before revoke; the test made nothing to find")
			}
			if _, err := os.Stat(e.audit); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("audit log %s exists (%v); the test needs it missing", e.audit, err)
			}

			got = e.mainAt(t, clock, "revoke", "--plan", planFile, "--settle", "0")
			if got.code != ExitOK {
				t.Fatalf("revoke: exit %d; stdout %s; stderr %s", got.code, got.stdout, got.stderr)
			}
			if !strings.Contains(got.stdout, "removed and verified") {
				t.Errorf("revoke output %q: want the grant removed and verified", got.stdout)
			}
			if tc.active(t, e) {
				t.Errorf("grant still active after revoke --plan without an audit log")
			}
		})
	}
}

// grantAsLostRunner makes the plan's grants as apply would, on its own
// engine whose audit log is then deleted, as if the runner died before it
// wrote anything the revoke step could read.
func grantAsLostRunner(t *testing.T, e *cliEnv, clock lifecycle.Clock, planFile string) {
	t.Helper()
	ctx := context.Background()
	sess, err := newSession(ctx, Streams{Getenv: func(k string) string { return e.vars[k] }, ErrOut: io.Discard})
	if err != nil {
		t.Fatalf("sign in: %v", err)
	}
	pl, err := plan.Read(planFile)
	if err != nil {
		t.Fatalf("read plan: %v", err)
	}
	req, err := pl.Check(time.Now(), "")
	if err != nil {
		t.Fatalf("check plan: %v", err)
	}

	lostAudit := filepath.Join(t.TempDir(), "runner-audit.jsonl")
	log, err := audit.Open(lostAudit)
	if err != nil {
		t.Fatalf("open audit log: %v", err)
	}
	engine := lifecycle.New(lifecycle.Config{ARM: sess.rbac, Audit: log, CallerID: sess.caller.ObjectID, Clock: clock})
	bo, fixed, err := planBackend(pl.Table, len(req.Pairs))
	if err != nil {
		t.Fatalf("plan backend: %v", err)
	}
	choices, _, err := sess.addBackends(ctx, engine, bo, req, fixed)
	if err != nil {
		t.Fatalf("add backends: %v", err)
	}

	grants := make([]lifecycle.Grant, len(req.Pairs))
	for i, p := range req.Pairs {
		grants[i] = lifecycle.Grant{Pair: p, RoleName: pl.Pairs[i].RoleName, Backend: choices[i].Backend,
			RoleDefinitionID: pl.Pairs[i].RoleDefinitionID, AssignmentName: pl.Pairs[i].AssignmentName}
	}
	if err := engine.GrantAll(ctx, req, grants); err != nil {
		t.Fatalf("grant: %v", err)
	}

	_ = log.Close()
	if err := os.Remove(lostAudit); err != nil {
		t.Fatalf("delete the runner's audit log: %v", err)
	}
}

// entraActive reports whether the pipeline holds the Entra role at "/".
func entraActive(t *testing.T, e *cliEnv, role string) bool {
	t.Helper()
	_, err := pipelineGraph(t, e).ActiveInstance(context.Background(), pipelineObjectID, role, "/")
	if err != nil && !errors.Is(err, azure.ErrNotFound) {
		t.Fatalf("Graph ActiveInstance: %v", err)
	}
	return err == nil
}

// pipelineGraph returns a Graph client signed in as the pipeline.
func pipelineGraph(t *testing.T, e *cliEnv) *azure.Graph {
	t.Helper()
	sess, err := newSession(context.Background(), Streams{Getenv: func(k string) string { return e.vars[k] }, ErrOut: io.Discard})
	if err != nil {
		t.Fatalf("sign in: %v", err)
	}
	graph, err := azure.NewGraph(e.srv.GraphEndpoint(), sess.cred, sess.env.ClientOptions(sess.client, &retryOptions))
	if err != nil {
		t.Fatalf("Graph client: %v", err)
	}
	return graph
}

func TestPlanApplyAutoAuditsReasons(t *testing.T) {
	e, clock := startPIMCLIEnv(t)
	planFile := filepath.Join(t.TempDir(), "plan.json")
	got := e.mainAt(t, clock, "plan", "--backend", "auto", "--role", "Reader", "--role", "Key Vault Secrets Officer",
		"--scope", testStorage, "--justification", "mixed", "--plan-file", planFile)
	if got.code != ExitOK {
		t.Fatalf("plan: exit %d; stderr %s", got.code, got.stderr)
	}
	if want := "| Backend | auto; pairs=pim-activate,rbac |"; !strings.Contains(got.stdout, want) {
		t.Errorf("plan output: want it to contain %q; got %s", want, got.stdout)
	}

	got = e.mainAt(t, clock, "apply", "--plan", planFile, "-o", "json", "--", "true")
	if got.code != ExitOK {
		t.Fatalf("apply: exit %d; stderr %s", got.code, got.stderr)
	}
	records := readAudit(t, e.audit)
	wantReasons := []string{
		"pim-activate: chosen by auto when the plan was made: auto: eligible schedule ",
		"rbac: chosen by auto when the plan was made: auto: no eligible PIM schedule",
	}
	var details []string
	for _, r := range records {
		if r.Event == "backend" {
			details = append(details, r.Detail)
		}
	}
	for _, want := range wantReasons {
		found := false
		for _, d := range details {
			found = found || strings.HasPrefix(d, want)
		}
		if !found {
			t.Errorf("backend records %q: want one starting with %q", details, want)
		}
	}
	for _, r := range records {
		if r.Event != "request" {
			continue
		}
		for i, want := range []string{lifecycle.BackendPIMActivate, lifecycle.BackendRBAC} {
			if i >= len(r.Pairs) || r.Pairs[i].Backend != want {
				t.Errorf("request record pairs %+v: want pair %d with backend %s", r.Pairs, i+1, want)
			}
		}
	}
}

func TestRevokePlanCancelsPendingEntraRequest(t *testing.T) {
	tests := []struct {
		name string
		// recorded writes the request's id to the audit log, as a grant
		// record would; otherwise revoke finds it by its justification.
		recorded bool
	}{
		{"found by justification", false},
		{"named by the audit log", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, clock := startPIMCLIEnv(t, emulator.SeedRolePolicy{DirectoryScopeID: "/", RoleDefinitionID: entraGlobalReader, RequireApproval: true})
			planFile := filepath.Join(t.TempDir(), "plan.json")
			got := e.mainAt(t, clock, "plan", "--backend", "entra-role", "--role", entraGlobalReader, "--pim-approval-wait", "10m",
				"--justification", "approver never came", "--plan-file", planFile)
			if got.code != ExitOK {
				t.Fatalf("plan: exit %d; stderr %s", got.code, got.stderr)
			}
			pl, err := plan.Read(planFile)
			if err != nil {
				t.Fatalf("read plan: %v", err)
			}

			// The lost runner's activation, still waiting for a PIM approver.
			// Its justification carries the request id as Elevate writes it.
			graph := pipelineGraph(t, e)
			pending, err := graph.Request(context.Background(), azure.DirectoryScheduleRequest{
				Action: lifecycle.EntraSelfActivate, PrincipalID: pipelineObjectID, RoleDefinitionID: entraGlobalReader,
				DirectoryScopeID: "/", Justification: "elevate request " + strings.ToLower(pl.Request.ID) + ": approver never came",
				Start: clock.Now().UTC(), Duration: 15 * time.Minute,
			})
			if err != nil {
				t.Fatalf("send the pending activation: %v", err)
			}
			if pending.Status != azure.StatusPendingApproval {
				t.Fatalf("activation status: got %q; want %q", pending.Status, azure.StatusPendingApproval)
			}
			if tc.recorded {
				recordEntraGrant(t, e.audit, pl, "/roleManagement/directory/roleAssignmentScheduleRequests/"+pending.ID)
			}

			got = e.mainAt(t, clock, "revoke", "--plan", planFile, "--settle", "0")
			if got.code != ExitOK {
				t.Fatalf("revoke: exit %d; stdout %s; stderr %s", got.code, got.stdout, got.stderr)
			}
			after, err := graph.GetRequest(context.Background(), pending.ID)
			if err != nil {
				t.Fatalf("read the activation after revoke: %v", err)
			}
			if after.Status != azure.StatusCanceled {
				t.Errorf("activation status after revoke: got %q; want %q", after.Status, azure.StatusCanceled)
			}
			var cancels []audit.Record
			for _, r := range readAudit(t, e.audit) {
				if r.Event == "cancel" {
					cancels = append(cancels, r)
				}
			}
			if len(cancels) != 1 || !strings.Contains(cancels[0].Detail, pending.ID) {
				t.Errorf("cancel records: got %+v; want one naming request %s", cancels, pending.ID)
			}

			// An approver who acts now grants nothing.
			if status, err := e.srv.ApprovePIMRequest(pending.ID); err == nil {
				t.Errorf("approve after revoke: got status %q; want an error for a canceled request", status)
			}
			if entraActive(t, e, entraGlobalReader) {
				t.Errorf("Entra role %s active after revoke and a late approval", entraGlobalReader)
			}
		})
	}
}

// recordEntraGrant appends to the audit log at path a grant record that
// names the Graph request of the plan's only pair.
func recordEntraGrant(t *testing.T, path string, pl plan.Plan, assignmentID string) {
	t.Helper()
	log, err := audit.Open(path)
	if err != nil {
		t.Fatalf("open audit log: %v", err)
	}
	defer log.Close()
	p := pl.Pairs[0]
	_, err = log.Append(audit.Record{RequestID: pl.Request.ID, Event: "grant", Principal: pipelineObjectID, Outcome: "ok",
		Pairs: []audit.PairRecord{{RoleID: p.RoleID, Scope: p.Scope, AssignmentID: assignmentID, AssignmentName: p.AssignmentName,
			Backend: lifecycle.BackendEntraRole}}})
	if err != nil {
		t.Fatalf("append grant record: %v", err)
	}
}

func TestRevokePlanCancelsPendingActivation(t *testing.T) {
	e, clock := startPIMCLIEnv(t, emulator.SeedRolePolicy{Scope: testStorage, RoleName: "Reader", RequireApproval: true})
	planFile := filepath.Join(t.TempDir(), "plan.json")
	got := e.mainAt(t, clock, "plan", "--backend", "pim-activate", "--role", "Reader", "--scope", testStorage,
		"--pim-approval-wait", "10m", "--justification", "approver never came", "--plan-file", planFile)
	if got.code != ExitOK {
		t.Fatalf("plan: exit %d; stderr %s", got.code, got.stderr)
	}
	pl, err := plan.Read(planFile)
	if err != nil {
		t.Fatalf("read plan: %v", err)
	}

	// The lost runner's activation, sent under the plan's request name and
	// still waiting for a PIM approver.
	pim := pipelinePIM(t, e)
	ctx := context.Background()
	elig, err := pim.FindEligibility(ctx, testStorage, pipelineObjectID, pl.Pairs[0].RoleDefinitionID)
	if err != nil {
		t.Fatalf("find eligibility: %v", err)
	}
	name := pl.Pairs[0].AssignmentName
	pending, err := pim.Request(ctx, testStorage, name, azure.ScheduleRequest{
		RequestType: azure.RequestSelfActivate, PrincipalID: pipelineObjectID, RoleDefinitionID: pl.Pairs[0].RoleDefinitionID,
		LinkedEligibilityID: elig.ID, Justification: "approver never came", Start: clock.Now().UTC(), Duration: 15 * time.Minute,
	})
	if err != nil {
		t.Fatalf("send the pending activation: %v", err)
	}
	if pending.Status != azure.StatusPendingApproval {
		t.Fatalf("activation status: got %q; want %q", pending.Status, azure.StatusPendingApproval)
	}

	got = e.mainAt(t, clock, "revoke", "--plan", planFile, "--settle", "0")
	if got.code != ExitOK {
		t.Fatalf("revoke: exit %d; stdout %s; stderr %s", got.code, got.stdout, got.stderr)
	}
	after, err := pim.GetRequest(ctx, testStorage, name)
	if err != nil {
		t.Fatalf("read the activation after revoke: %v", err)
	}
	if after.Status != azure.StatusCanceled {
		t.Errorf("activation status after revoke: got %q; want %q", after.Status, azure.StatusCanceled)
	}
	var cancels []audit.Record
	for _, r := range readAudit(t, e.audit) {
		if r.Event == "cancel" {
			cancels = append(cancels, r)
		}
	}
	if len(cancels) != 1 || !strings.Contains(cancels[0].Detail, name) {
		t.Errorf("cancel records: got %+v; want one naming request %s", cancels, name)
	}

	// An approver who acts now grants nothing.
	if status, err := e.srv.ApprovePIMRequest(name); err == nil {
		t.Errorf("approve after revoke: got status %q; want an error for a canceled request", status)
	}
	if n := liveReaderAssignments(e); n != 0 {
		t.Errorf("live Reader assignments after revoke and a late approval: got %d; want 0", n)
	}
}

// pipelinePIM returns an ARM PIM client signed in as the pipeline.
func pipelinePIM(t *testing.T, e *cliEnv) *azure.PIM {
	t.Helper()
	sess, err := newSession(context.Background(), Streams{Getenv: func(k string) string { return e.vars[k] }, ErrOut: io.Discard})
	if err != nil {
		t.Fatalf("sign in: %v", err)
	}
	pim, err := azure.NewPIM(sess.cred, sess.env.ARMOptions(sess.client, &retryOptions))
	if err != nil {
		t.Fatalf("PIM client: %v", err)
	}
	return pim
}
