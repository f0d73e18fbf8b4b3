package cli

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/audit"
	"github.com/elevate-dev/elevate/internal/emulator"
)

// The demo tenant's ids, as in the emulator's default seed.
const (
	wfSubscription = "9d2c6e1f-4a3b-4c5d-8e7f-0a1b2c3d4e50"
	wfPipelineOID  = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a801"
	wfPlannerOID   = "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c05"
	wfPlannerAppID = "2e3f4a5b-6c7d-4e8f-9a0b-1c2d3e4f5a06"
	wfRepo         = "contoso/payments"
)

var (
	wfRG      = "/subscriptions/" + wfSubscription + "/resourceGroups/rg-elevate-demo"
	wfVault   = wfRG + "/providers/Microsoft.KeyVault/vaults/kv-elevate-demo"
	wfStorage = wfRG + "/providers/Microsoft.Storage/storageAccounts/stelevatedemo"
)

// workflowSeed is the demo tenant plus a read-only planner identity that the
// plan job signs in as from the main branch; only the apply job, gated by the
// production environment, can sign in as the pipeline identity.
func workflowSeed() emulator.Seed {
	seed := emulator.DefaultSeed()
	seed.Principals = append(seed.Principals, emulator.Principal{
		ObjectID: wfPlannerOID, AppID: wfPlannerAppID, DisplayName: "elevate-planner", Type: "ServicePrincipal",
		FederatedCredentials: []emulator.FederatedCredential{{
			Name: "payments-main", Issuer: emulator.GitHubIssuerPlaceholder,
			Subject: "repo:" + wfRepo + ":ref:refs/heads/main", Audiences: []string{"api://AzureADTokenExchange"},
		}},
	})
	seed.RoleAssignments = append(seed.RoleAssignments, emulator.SeedAssignment{
		Name: "0f1e2d3c-4b5a-4968-8776-655443322107", Scope: wfRG, RoleName: "Reader",
		PrincipalID: wfPlannerOID, PrincipalType: "ServicePrincipal",
	})
	return seed
}

// runner simulates one GitHub Actions job: its environment files and the
// OIDC request variables of a job registered with the emulator.
type runner struct {
	t       *testing.T
	dir     string
	env     map[string]string
	summary string
	output  string
}

func newRunner(t *testing.T, srv *emulator.Server, job emulator.GitHubJob, clientID string) *runner {
	t.Helper()
	dir := t.TempDir()
	url, token, err := srv.RegisterGitHubJob(job)
	if err != nil {
		t.Fatal(err)
	}
	r := &runner{t: t, dir: dir, summary: filepath.Join(dir, "summary.md"), output: filepath.Join(dir, "output")}
	r.env = map[string]string{
		"GITHUB_ACTIONS":                 "true",
		"GITHUB_OUTPUT":                  r.output,
		"GITHUB_STEP_SUMMARY":            r.summary,
		"GITHUB_ENV":                     filepath.Join(dir, "env"),
		"GITHUB_REPOSITORY":              job.Repository,
		"GITHUB_REF":                     job.Ref,
		"GITHUB_SHA":                     job.SHA,
		"GITHUB_RUN_ID":                  job.RunID,
		"GITHUB_SERVER_URL":              "https://github.com",
		"GITHUB_WORKFLOW":                job.Workflow,
		"GITHUB_ACTOR":                   job.Actor,
		"ACTIONS_ID_TOKEN_REQUEST_URL":   url,
		"ACTIONS_ID_TOKEN_REQUEST_TOKEN": token,
		"AZURE_TENANT_ID":                srv.TenantID(),
		"AZURE_CLIENT_ID":                clientID,
		"AZURE_AUTHORITY_HOST":           srv.URL() + "/",
		"ELEVATE_ARM_ENDPOINT":           srv.URL(),
		"ELEVATE_CA_FILE":                srv.CAFile(),
		"ELEVATE_VAULT_SUFFIX":           srv.VaultSuffix(),
		"ELEVATE_AUDIT_LOG":              filepath.Join(dir, "audit.jsonl"),
	}
	return r
}

// run executes elevate in-process with this job's environment.
func (r *runner) run(ctx context.Context, args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	streams := Streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut, Getenv: func(k string) string { return r.env[k] }}
	code = Main(ctx, args, streams)
	return code, out.String(), errOut.String()
}

// outputs parses GITHUB_OUTPUT as the runner does.
func (r *runner) outputs() map[string]string {
	r.t.Helper()
	data, err := os.ReadFile(r.output)
	if err != nil {
		r.t.Fatalf("read step outputs: %v", err)
	}
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		name, delim, ok := strings.Cut(sc.Text(), "<<")
		if !ok {
			k, v, _ := strings.Cut(sc.Text(), "=")
			out[k] = v
			continue
		}
		var lines []string
		for sc.Scan() && sc.Text() != delim {
			lines = append(lines, sc.Text())
		}
		out[name] = strings.Join(lines, "\n")
	}
	return out
}

func startWorkflowEmulator(t *testing.T) *emulator.Server {
	t.Helper()
	srv, err := emulator.Start(context.Background(), emulator.Config{
		Seed:             workflowSeed(),
		PropagationDelay: 30 * time.Millisecond,
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

var planJob = emulator.GitHubJob{Repository: wfRepo, Ref: "refs/heads/main", EventName: "push",
	Workflow: "elevate", RunID: "4242", Actor: "octocat", SHA: "3f786850e387550fdab836ed7e6dc881de23001b"}

var applyJob = emulator.GitHubJob{Repository: wfRepo, Ref: "refs/heads/main", EventName: "push",
	Environment: "production", Workflow: "elevate", RunID: "4242", Actor: "octocat", SHA: planJob.SHA}

// planStep runs the plan job and returns the plan path and hash.
func planStep(t *testing.T, srv *emulator.Server) (*runner, string, string) {
	t.Helper()
	plan := newRunner(t, srv, planJob, wfPlannerAppID)
	planPath := filepath.Join(plan.dir, "elevate-plan.json")
	code, stdout, stderr := plan.run(context.Background(), "plan",
		"--role", "Key Vault Secrets Officer", "--role", "Reader",
		"--scope", wfVault, "--scope", wfStorage,
		"--principal-id", wfPipelineOID, "--principal-type", "ServicePrincipal",
		"--justification", "rotate the payments database password", "--ticket", "CHG-7",
		"--plan-file", planPath)
	if code != 0 {
		t.Fatalf("plan exit code = %d; want 0\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	out := plan.outputs()
	for _, name := range []string{"request-id", "plan-path", "plan-hash", "approval-table"} {
		if out[name] == "" {
			t.Errorf("plan output %q is empty", name)
		}
	}
	summary, err := os.ReadFile(plan.summary)
	if err != nil {
		t.Fatalf("read job summary: %v", err)
	}
	for _, want := range []string{"Key Vault Secrets Officer", "kv-elevate-demo", "Pre-flight checks", out["plan-hash"]} {
		if !strings.Contains(string(summary), want) {
			t.Errorf("job summary lacks %q", want)
		}
	}
	if out["plan-path"] != planPath {
		t.Errorf("plan-path output = %q; want %q", out["plan-path"], planPath)
	}
	return plan, planPath, out["plan-hash"]
}

// temporaryAssignments counts assignments that Elevate made for the pipeline.
func temporaryAssignments(srv *emulator.Server) int {
	n := 0
	for _, a := range srv.RoleAssignments() {
		if strings.EqualFold(a.PrincipalID, wfPipelineOID) && strings.HasPrefix(a.Description, "elevate request") {
			n++
		}
	}
	return n
}

func verifyAudit(t *testing.T, path string, wantEvents ...string) {
	t.Helper()
	if _, err := audit.VerifyFile(path); err != nil {
		t.Fatalf("audit log does not verify: %v", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range wantEvents {
		if !strings.Contains(string(data), `"event":"`+e+`"`) {
			t.Errorf("audit log has no %q record", e)
		}
	}
}

func TestWorkflowApprovedPlanApplied(t *testing.T) {
	srv := startWorkflowEmulator(t)
	_, planPath, hash := planStep(t, srv)

	// The environment gate approved: the apply job gets a token whose subject
	// names the production environment.
	apply := newRunner(t, srv, applyJob, "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e02")
	marker := filepath.Join(apply.dir, "ran")
	code, stdout, stderr := apply.run(context.Background(), "apply", "--plan", planPath, "--expect-hash", hash,
		"--", "sh", "-c", "touch "+marker)
	if code != 0 {
		t.Fatalf("apply exit code = %d; want 0\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("the privileged command did not run: %v", err)
	}
	if !strings.Contains(stdout, "revoked and verified") {
		t.Errorf("apply output lacks the revoke result:\n%s", stdout)
	}

	// The if: always() step runs after success too, and must be a no-op.
	code, stdout, stderr = apply.run(context.Background(), "revoke", "--plan", planPath, "--settle", "20ms")
	if code != 0 {
		t.Fatalf("revoke exit code = %d; want 0\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if n := temporaryAssignments(srv); n != 0 {
		t.Errorf("temporary assignments left = %d; want 0", n)
	}
	verifyAudit(t, apply.env["ELEVATE_AUDIT_LOG"], "grant", "effective", "action", "revoke", "complete")
}

func TestWorkflowDeniedPlanGrantsNothing(t *testing.T) {
	srv := startWorkflowEmulator(t)
	plan, planPath, hash := planStep(t, srv)

	// The gate rejected the run, so the apply job never starts. The plan job's
	// identity cannot apply the plan itself: it has no federated credential
	// for the production environment and no right to grant.
	code, _, stderr := plan.run(context.Background(), "apply", "--plan", planPath, "--expect-hash", hash, "--", "true")
	if code == 0 {
		t.Fatalf("apply as the planner succeeded; want a failure")
	}
	if n := temporaryAssignments(srv); n != 0 {
		t.Errorf("temporary assignments after a denied plan = %d; want 0", n)
	}
	if !strings.Contains(stderr, "AuthorizationFailed") {
		t.Errorf("planner's apply error lacks AuthorizationFailed:\n%s", stderr)
	}

	// A job outside the environment cannot sign in as the pipeline identity.
	rogue := newRunner(t, srv, planJob, "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e02")
	code, _, stderr = rogue.run(context.Background(), "apply", "--plan", planPath, "--expect-hash", hash, "--", "true")
	if code == 0 {
		t.Fatalf("apply from a job outside the environment succeeded; want a failure")
	}
	if !strings.Contains(stderr, "AADSTS700213") {
		t.Errorf("sign-in error lacks AADSTS700213:\n%s", stderr)
	}
}

func TestWorkflowApplyNeedsExpectedHash(t *testing.T) {
	srv := startWorkflowEmulator(t)
	_, planPath, _ := planStep(t, srv)
	apply := newRunner(t, srv, applyJob, "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e02")
	code, _, stderr := apply.run(context.Background(), "apply", "--plan", planPath, "--", "true")
	if code != ExitUsage {
		t.Errorf("apply without --expect-hash in Actions: exit %d; want %d", code, ExitUsage)
	}
	if !strings.Contains(stderr, "--expect-hash") {
		t.Errorf("error lacks the flag name:\n%s", stderr)
	}
	if n := temporaryAssignments(srv); n != 0 {
		t.Errorf("temporary assignments = %d; want 0", n)
	}
}

func TestWorkflowApplyRejectsChangedPlan(t *testing.T) {
	srv := startWorkflowEmulator(t)
	_, planPath, hash := planStep(t, srv)
	apply := newRunner(t, srv, applyJob, "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e02")

	data, err := os.ReadFile(planPath)
	if err != nil {
		t.Fatal(err)
	}
	tampered := filepath.Join(apply.dir, "tampered.json")
	edited := strings.Replace(string(data), "Key Vault Secrets Officer", "Key Vault Administrator", 1)
	if err := os.WriteFile(tampered, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, plan, hash, want string
	}{
		{"edited plan file", tampered, hash, "does not match its hash"},
		{"other plan's hash", planPath, strings.Repeat("0", 64), "differs from what was approved"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := apply.run(context.Background(), "apply", "--plan", tc.plan, "--expect-hash", tc.hash, "--", "true")
			if code == 0 {
				t.Fatalf("apply succeeded; want a refusal")
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("error lacks %q:\n%s", tc.want, stderr)
			}
			if !strings.Contains(stdout, "::error") {
				t.Errorf("no ::error annotation on stdout:\n%s", stdout)
			}
		})
	}
	if n := temporaryAssignments(srv); n != 0 {
		t.Errorf("temporary assignments = %d; want 0", n)
	}
}

// TestWorkflowCancelledApplyCleanedUp kills the apply process while the grant
// is held, as a cancelled job on a lost runner would, then runs the
// if: always() revoke step.
func TestWorkflowCancelledApplyCleanedUp(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("uses SIGKILL and /bin/sh")
	}
	srv := startWorkflowEmulator(t)
	_, planPath, hash := planStep(t, srv)
	apply := newRunner(t, srv, applyJob, "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e02")
	bin := buildElevate(t)

	started := filepath.Join(apply.dir, "started")
	cmd := exec.Command(bin, "apply", "--plan", planPath, "--expect-hash", hash,
		"--", "sh", "-c", "touch "+started+"; sleep 60")
	for k, v := range apply.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(cmd.Env, "PATH="+os.Getenv("PATH"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(started); err == nil {
			break
		}
		if time.Now().After(deadline) {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			t.Fatalf("the command never started; output:\n%s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := temporaryAssignments(srv); n != 2 {
		t.Errorf("assignments while the command runs = %d; want 2", n)
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Wait()
	if n := temporaryAssignments(srv); n != 2 {
		t.Fatalf("assignments after SIGKILL = %d; want 2 left for the clean-up step", n)
	}

	code, stdout, stderr := apply.run(context.Background(), "revoke", "--plan", planPath, "--settle", "20ms")
	if code != 0 {
		t.Fatalf("revoke exit code = %d; want 0\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if n := temporaryAssignments(srv); n != 0 {
		t.Errorf("temporary assignments after revoke = %d; want 0", n)
	}
	verifyAudit(t, apply.env["ELEVATE_AUDIT_LOG"], "request", "grant", "revoke")
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// buildElevate compiles the elevate binary once per test process.
func buildElevate(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "elevate-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "elevate")
		out, err := exec.Command("go", "build", "-o", buildPath, "github.com/elevate-dev/elevate/cmd/elevate").CombinedOutput()
		if err != nil {
			buildErr = err
			t.Logf("go build output:\n%s", out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build elevate: %v", buildErr)
	}
	return buildPath
}
