package evidence

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/elevate-dev/elevate/internal/crashpoint"
	"github.com/elevate-dev/elevate/internal/emulator"
	"github.com/elevate-dev/elevate/internal/rotate"
)

// Commands that the crashed runs use: how elevate is invoked, and what the
// rotation's validation command does.
const (
	kindApply        = "apply"         // elevate apply --plan -- COMMAND
	kindApplyRotate  = "apply-rotate"  // elevate apply --plan --rotate-secret
	kindRun          = "run"           // elevate run --request-id -- COMMAND
	kindRotateSecret = "rotate-secret" // elevate rotate-secret --request-id

	validatePass = `test -n "$ELEVATE_SECRET_VALUE"`
	validateFail = "exit 3"
)

// settleTime is longer than any emulated write takes (the largest latency a
// case adds is 40 ms), so after it no write of a killed process is pending.
const settleTime = 150 * time.Millisecond

// crashCase is one run killed at a crash point, then recovered.
type crashCase struct {
	// Scenario is the point's name, or "action.running" for a kill while
	// the command runs (point action.start with a delay).
	Scenario string
	Point    string
	After    int           // crash on this hit of the point
	Delay    time.Duration // kill this long after the hit
	Kind     string
	Validate string // validation command of a rotation, or ""
	Pairs    int
	Latency  time.Duration // added to every role assignment PUT and DELETE
}

func (c crashCase) String() string {
	return fmt.Sprintf("%s/%s/pairs=%d/hit=%d/latency=%s", c.Scenario, c.Kind, c.Pairs, c.After, c.Latency)
}

// scenarios returns every crash point once, plus the kill while the
// command runs.
func scenarios() []string {
	var out []string
	for _, p := range crashpoint.Points {
		out = append(out, p.Name)
		if p.Name == "action.start" {
			out = append(out, "action.running")
		}
	}
	return out
}

// newCrashCase lets rng pick the kind, pair count, hit and latency that
// suit scenario.
func newCrashCase(rng *rand.Rand, scenario string) crashCase {
	c := crashCase{Scenario: scenario, Point: scenario, After: 1, Pairs: 1 + rng.IntN(4)}
	c.Latency = []time.Duration{0, 10 * time.Millisecond, 40 * time.Millisecond}[rng.IntN(3)]
	commandKinds := []string{kindApply, kindApply, kindRun}
	rotateKinds := []string{kindApplyRotate, kindApplyRotate, kindRotateSecret}
	switch scenario {
	case "action.running":
		c.Point, c.Delay = "action.start", 150*time.Millisecond
		c.Kind = commandKinds[rng.IntN(len(commandKinds))]
	case "rotate.read_done", "rotate.set_done":
		c.Kind = rotateKinds[rng.IntN(len(rotateKinds))]
		c.Validate = []string{"", validatePass, validateFail}[rng.IntN(3)]
	case "rotate.validated":
		c.Kind, c.Validate = rotateKinds[rng.IntN(len(rotateKinds))], validatePass
	case "rotate.validation_failed", "rotate.restored":
		c.Kind, c.Validate = rotateKinds[rng.IntN(len(rotateKinds))], validateFail
	default:
		all := append(commandKinds, rotateKinds...)
		c.Kind = all[rng.IntN(len(all))]
		if c.Kind == kindApplyRotate || c.Kind == kindRotateSecret {
			c.Validate = []string{"", validatePass}[rng.IntN(2)]
		}
	}
	if p, _ := crashpoint.Lookup(c.Point); p.PerPair && c.Point != "effective.poll" {
		c.After = 1 + rng.IntN(c.Pairs)
	}
	return c
}

// crashPlan returns the cases of one evidence run: in long mode every
// scenario once and then random ones up to 50, in short mode 8 random ones.
func crashPlan(seed int64, long bool) []crashCase {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x5eed))
	all := scenarios()
	var out []crashCase
	if long {
		for _, s := range all {
			out = append(out, newCrashCase(rng, s))
		}
		for len(out) < 50 {
			out = append(out, newCrashCase(rng, all[rng.IntN(len(all))]))
		}
		return out
	}
	for range 8 {
		out = append(out, newCrashCase(rng, all[rng.IntN(len(all))]))
	}
	return out
}

// crashOutcome is what one case left behind after recovery.
type crashOutcome struct {
	Killed       bool
	RecoveryCode int
	// AssignmentsLeft is counted right after the recovery, and
	// LateAssignments settleTime later: writes the dead process had in
	// flight that landed after the recovery checked.
	AssignmentsLeft       int
	LateAssignments       int
	LeftAfterSecondRevoke int
	RecordsMissing        int
	ChainBroken           bool
	// UnvalidatedSecret is set when the secret's current version is the
	// one this request wrote and it was never validated or restored.
	UnvalidatedSecret bool
	Detail            string
}

// TestCrashRecovery kills elevate at each crash point, runs the recovery
// (`elevate revoke --plan`), and counts what was left.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the elevate binary")
	}
	bin := crashBinary(t)
	const canary = "crash-canary-initial-value"
	seed, scopes := seedWith(4, canary)
	srv := startEmulator(t, emulator.Config{Seed: seed, PropagationDelay: 30 * time.Millisecond})
	cases := crashPlan(Seed(), Long())

	var left, late, leftAfterSecond, missing, notKilled, badRecovery, unvalidated, chainBroken int
	var lateScenarios []string
	perScenario := map[string]int{}
	for _, c := range cases {
		perScenario[c.Scenario]++
		out := runCrashCase(t, bin, srv, scopes, c)
		if !out.Killed {
			notKilled++
			t.Errorf("%s: the process was not killed at the point: %s", c, out.Detail)
		}
		if out.RecoveryCode != 0 {
			badRecovery++
			t.Errorf("%s: recovery exit code: got %d; want 0: %s", c, out.RecoveryCode, out.Detail)
		}
		if out.AssignmentsLeft != 0 {
			t.Errorf("%s: assignments left after recovery: got %d; want 0", c, out.AssignmentsLeft)
		}
		if out.LateAssignments != 0 {
			// NOTE: a known gap, reported in the figures and not failed
			// here: the recovery cannot see a PUT that is still in flight.
			t.Logf("%s: %d assignment(s) appeared after the recovery finished", c, out.LateAssignments)
		}
		if out.LeftAfterSecondRevoke != 0 {
			t.Errorf("%s: assignments left after a second recovery: got %d; want 0", c, out.LeftAfterSecondRevoke)
		}
		if out.RecordsMissing != 0 {
			t.Errorf("%s: audit records missing: got %d; want 0: %s", c, out.RecordsMissing, out.Detail)
		}
		left += out.AssignmentsLeft
		late += out.LateAssignments
		leftAfterSecond += out.LeftAfterSecondRevoke
		if out.LateAssignments > 0 {
			lateScenarios = append(lateScenarios, c.String())
		}
		missing += out.RecordsMissing
		if out.ChainBroken {
			chainBroken++
		}
		if out.UnvalidatedSecret {
			unvalidated++
		}
	}

	for _, a := range srv.RoleAssignments() {
		if strings.HasPrefix(a.Description, "elevate request ") {
			t.Errorf("assignment %s (%s) still exists after every case", a.Name, a.Description)
		}
	}

	res := Result{Test: "crash", Mode: Mode(), Seed: Seed()}
	zero := &Target{Op: "==", Value: 0}
	res.Add("crash.runs", float64(len(cases)), "runs", nil,
		fmt.Sprintf("%d scenarios: %d crash points plus a kill while the command runs", len(scenarios()), len(crashpoint.Points)))
	res.Add("crash.scenarios_covered", float64(len(perScenario)), "scenarios", nil)
	res.Add("crash.not_killed", float64(notKilled), "runs", zero)
	res.Add("crash.assignments_left", float64(left+late), "assignments", zero,
		"counted right after the recovery and again 150 ms later, when every write the killed process had in flight has ended")
	if late > 0 {
		res.Figures[len(res.Figures)-1].Notes = append(res.Figures[len(res.Figures)-1].Notes,
			fmt.Sprintf("%d of them appeared after the recovery had finished: a role assignment PUT that was in flight "+
				"when the process died landed after the recovery read the assignment back as absent (%s)",
				late, strings.Join(lateScenarios, ", ")))
	}
	res.Add("crash.assignments_left_after_second_recovery", float64(leftAfterSecond), "assignments", zero,
		"a second `elevate revoke --plan`, run after the in-flight writes ended, for the cases that left any")
	res.Add("crash.audit_records_missing", float64(missing), "records", zero,
		"expected per run: the request record before the crash, and the recovery's revoke and complete records")
	res.Add("crash.audit_chain_broken", float64(chainBroken), "logs", zero)
	res.Add("crash.recovery_failed", float64(badRecovery), "runs", zero)
	res.Add("crash.secret_left_unvalidated", float64(unvalidated), "runs", nil,
		"rotations killed after the new version was set and before validation passed or the restore finished: "+
			"the new value stays current, tagged with the request id; recovery does not restore it")
	if err := res.Write(); err != nil {
		t.Fatal(err)
	}
	t.Logf("crash runs %d, scenarios %d, left %d, missing %d, unvalidated secrets %d",
		len(cases), len(perScenario), left, missing, unvalidated)
}

// runCrashCase runs one case: plan (for apply), the crashed run, then the
// recovery plan (for run and rotate-secret) and revoke.
func runCrashCase(t *testing.T, bin string, srv *emulator.Server, scopes []string, c crashCase) crashOutcome {
	t.Helper()
	var out crashOutcome
	dir := t.TempDir()
	auditLog := filepath.Join(dir, "audit.jsonl")
	planFile := filepath.Join(dir, "plan.json")
	env := cliEnv(srv, auditLog)
	requestID := uuid.NewString()
	setWriteLatency(t, srv, c.Latency)

	request := crashRequestArgs(c, scopes, requestID)
	if c.Kind == kindApply || c.Kind == kindApplyRotate {
		mustRun(t, bin, env, append([]string{"plan", "--plan-file", planFile, "-o", "json"}, request...)...)
	}

	crashEnv := withEnv(env, map[string]string{crashpoint.EnvAt: c.Point,
		crashpoint.EnvAfter: fmt.Sprint(c.After), crashpoint.EnvDelay: durationOrEmpty(c.Delay)})
	crashed := runBinary(t, bin, crashEnv, time.Minute, crashActionArgs(c, planFile, request)...)
	out.Killed = crashed.Signal == syscall.SIGKILL &&
		strings.Contains(crashed.Stderr, fmt.Sprintf("crashpoint: %s hit %d", c.Point, c.After))
	if !out.Killed {
		out.Detail = fmt.Sprintf("exit code %d, signal %v, stdout:\n%s\nstderr:\n%s", crashed.Code, crashed.Signal, crashed.Stdout, crashed.Stderr)
	}
	linesBefore := len(readRecords(auditLog))

	// Recovery. run and rotate-secret have no plan file, so the recovery
	// plans the same request id, roles and scopes: the assignment names
	// derive from them and match what the crashed run created.
	setWriteLatency(t, srv, 0)
	if c.Kind == kindRun || c.Kind == kindRotateSecret {
		mustRun(t, bin, env, append([]string{"plan", "--plan-file", planFile, "-o", "json"}, request...)...)
	}
	recovered := runBinary(t, bin, env, time.Minute, "revoke", "--plan", planFile, "--settle", settleTime.String())
	out.RecoveryCode = recovered.Code
	if recovered.Code != 0 {
		out.Detail += "\nrecovery stderr:\n" + recovered.Stderr
	}

	out.AssignmentsLeft = leftAssignments(srv, requestID)

	// A PUT that the dead process had in flight can still land after the
	// recovery read its assignment back as absent. Wait until every
	// emulated write has ended, look again, and run the recovery once more.
	time.Sleep(settleTime)
	out.LateAssignments = leftAssignments(srv, requestID)
	if out.LateAssignments > 0 {
		again := runBinary(t, bin, env, time.Minute, "revoke", "--plan", planFile, "--settle", "0s")
		if again.Code != 0 {
			out.Detail += "\nsecond recovery stderr:\n" + again.Stderr
		}
		out.LeftAfterSecondRevoke = leftAssignments(srv, requestID)
	}
	out.RecordsMissing, out.ChainBroken = missingRecords(auditLog, requestID, linesBefore)
	if out.RecordsMissing > 0 {
		out.Detail += fmt.Sprintf("\naudit events: %v", readEvents(auditLog, requestID))
	}
	out.UnvalidatedSecret = secretLeftByRequest(srv, requestID) && c.Validate != "" &&
		!slices.Contains([]string{"rotate.validated", "rotate.restored", "action.done", "action.audited",
			"revoke.start", "revoke.delete_before", "revoke.delete_after", "revoke.verify_before",
			"revoke.verify_poll", "revoke.done", "revoke.audited"}, c.Point)
	return out
}

// crashRequestArgs are the request flags shared by plan, run and
// rotate-secret. A rotation's first pair is Key Vault Secrets Officer on
// the vault, and every other pair is Reader on a storage account.
func crashRequestArgs(c crashCase, scopes []string, requestID string) []string {
	args := []string{"--justification", "crash test " + c.String(), "--request-id", requestID}
	readers := c.Pairs
	if c.Kind == kindApplyRotate || c.Kind == kindRotateSecret {
		args = append(args, "--role", roleSecretsOfficer, "--scope", vaultScope)
		readers--
	}
	for i := range readers {
		args = append(args, "--role", roleReader, "--scope", scopes[i])
	}
	return args
}

// crashActionArgs are the arguments of the run that is killed.
func crashActionArgs(c crashCase, planFile string, request []string) []string {
	command := []string{"sh", "-c", "exit 0"}
	if c.Scenario == "action.running" {
		command = []string{"sleep", "5"}
	}
	rotation := []string{"--vault", vaultName, "--secret", secretName}
	if c.Validate != "" {
		rotation = append(rotation, "--validate-command", c.Validate)
	}
	switch c.Kind {
	case kindApply:
		return append([]string{"apply", "--plan", planFile, "--"}, command...)
	case kindApplyRotate:
		return append([]string{"apply", "--plan", planFile, "--rotate-secret"}, rotation...)
	case kindRun:
		return append(append(append([]string{"run"}, request...), "--"), command...)
	default:
		return append(append([]string{"rotate-secret"}, request...), rotation...)
	}
}

// missingRecords counts the records that must be in the log: the request
// record, and the recovery's revoke and complete records after line
// linesBefore. A broken chain counts all three as missing.
func missingRecords(path, requestID string, linesBefore int) (int, bool) {
	if _, err := requestRecords(path, requestID); err != nil {
		return 3, true
	}
	records := readRecords(path)
	missing := 0
	if !slices.ContainsFunc(records, func(e [2]string) bool { return e == [2]string{requestID, "request"} }) {
		missing++
	}
	after := records[min(linesBefore, len(records)):]
	for _, want := range []string{"revoke", "complete"} {
		if !slices.Contains(after, [2]string{requestID, want}) {
			missing++
		}
	}
	return missing, false
}

// readRecords returns (request id, event) of every line of the log at path.
func readRecords(path string) [][2]string {
	data, err := readFileIfExists(path)
	if err != nil {
		return nil
	}
	var out [][2]string
	for _, r := range decodeRecords(data) {
		out = append(out, [2]string{r.RequestID, r.Event})
	}
	return out
}

func readEvents(path, requestID string) []string {
	var out []string
	for _, r := range readRecords(path) {
		if r[0] == requestID {
			out = append(out, r[1])
		}
	}
	return out
}

// secretLeftByRequest reports whether the secret's current version was
// written by requestID and is not a restore.
func secretLeftByRequest(srv *emulator.Server, requestID string) bool {
	versions := srv.SecretVersions(vaultName, secretName)
	if len(versions) == 0 {
		return false
	}
	cur := versions[len(versions)-1]
	return cur.Tags[rotate.TagRequestID] == requestID && cur.Tags[rotate.TagRollbackOf] == ""
}

// setWriteLatency delays every role assignment PUT and DELETE by d.
func setWriteLatency(t *testing.T, srv *emulator.Server, d time.Duration) {
	t.Helper()
	var rules []emulator.FaultRule
	if d > 0 {
		rules = []emulator.FaultRule{
			{Method: http.MethodPut, Path: `roleAssignments/`, Latency: d},
			{Method: http.MethodDelete, Path: `roleAssignments/`, Latency: d},
		}
	}
	if err := srv.SetFaults(emulator.FaultConfig{Seed: 1, Rules: rules}); err != nil {
		t.Fatalf("set faults: %v", err)
	}
}

// mustRun runs elevate and fails the test unless it exits 0.
func mustRun(t *testing.T, bin string, env map[string]string, args ...string) procResult {
	t.Helper()
	res := runBinary(t, bin, env, time.Minute, args...)
	if res.Code != 0 {
		t.Fatalf("elevate %s: exit code %d; want 0\nstderr:\n%s", args[0], res.Code, res.Stderr)
	}
	return res
}

// withEnv returns a copy of base with extra added. Empty values in extra
// are left out.
func withEnv(base, extra map[string]string) map[string]string {
	out := make(map[string]string, len(base)+len(extra))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range extra {
		if v != "" {
			out[k] = v
		}
	}
	return out
}

func durationOrEmpty(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}
