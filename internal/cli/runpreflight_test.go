package cli

import (
	"context"
	"strings"
	"testing"

	"github.com/elevate-dev/elevate/internal/emulator"
)

// TestRunRefusesWhatPlanRefuses runs requests that plan's pre-flight
// refuses: run must refuse them too, before it grants anything, rather
// than grant and then fail to revoke or get 403.
func TestRunRefusesWhatPlanRefuses(t *testing.T) {
	locked := emulator.DefaultSeed()
	locked.Locks = append(locked.Locks, emulator.Lock{Scope: testStorage, Name: "keep-storage", Level: emulator.LockCanNotDelete})
	cases := []struct {
		name string
		seed emulator.Seed
		role string
		want string
	}{
		{"lock blocks the delete", locked, "Reader", "keep-storage"},
		{"delegation condition excludes the role", emulator.DefaultSeed(), "Key Vault Secrets User", "condition"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := startCLIEnv(t, emulator.Config{Seed: tc.seed})
			got := e.main(t, context.Background(), "run", "--role", tc.role, "--scope", testStorage,
				"--justification", "pre-flight", "--duration", "10m", "--", "true")
			if got.code != ExitFailure {
				t.Errorf("exit code: got %d; want %d; stderr %s", got.code, ExitFailure, got.stderr)
			}
			if !strings.Contains(got.stderr, "pre-flight check failed") || !strings.Contains(got.stderr, tc.want) {
				t.Errorf("stderr: got %q; want the failed pre-flight check naming %q", got.stderr, tc.want)
			}
			if n := e.temporaryAssignments(); n != 0 {
				t.Errorf("temporary assignments after the refusal: got %d; want 0", n)
			}
			for _, r := range readAudit(t, e.audit) {
				if r.Event == "grant" {
					t.Errorf("audit: got a grant record (%s); want nothing granted", r.Outcome)
				}
			}
		})
	}
}
