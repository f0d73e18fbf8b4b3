package cli

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestApplyChecksDelegationItsPlannerCannotSee plans a role that the
// pipeline identity's delegation condition excludes. The planner is
// another identity and cannot see that condition, so plan passes. Apply,
// signed in as the pipeline, must refuse before granting, not get 403.
func TestApplyChecksDelegationItsPlannerCannotSee(t *testing.T) {
	srv := startWorkflowEmulator(t)
	plan := newRunner(t, srv, planJob, wfPlannerAppID)
	planPath := filepath.Join(plan.dir, "elevate-plan.json")
	code, stdout, stderr := plan.run(context.Background(), "plan", "--role", "Key Vault Secrets User", "--scope", wfVault,
		"--principal-id", wfPipelineOID, "--principal-type", "ServicePrincipal",
		"--justification", "read the payments database password", "--plan-file", planPath)
	if code != 0 {
		t.Fatalf("plan exit code = %d; want 0\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	hash := plan.outputs()["plan-hash"]

	apply := newRunner(t, srv, applyJob, "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e02")
	code, _, stderr = apply.run(context.Background(), "apply", "--plan", planPath, "--expect-hash", hash, "--", "true")
	if code != ExitFailure {
		t.Errorf("apply exit code = %d; want %d\nstderr:\n%s", code, ExitFailure, stderr)
	}
	if !strings.Contains(stderr, "pre-flight check failed") || !strings.Contains(stderr, "condition") {
		t.Errorf("apply stderr lacks the failed delegation check:\n%s", stderr)
	}
	if n := temporaryAssignments(srv); n != 0 {
		t.Errorf("temporary assignments after the refusal = %d; want 0", n)
	}
}
