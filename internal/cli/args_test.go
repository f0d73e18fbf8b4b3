package cli

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/elevate-dev/elevate/internal/brokerclient"
	"github.com/elevate-dev/elevate/internal/emulator"
)

// TestMissingArgumentsSayWhatToPass runs commands without the argument or
// file they need: each exits 2 and names what to pass.
func TestMissingArgumentsSayWhatToPass(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.json")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"approve"}, "missing request ID"},
		{[]string{"status", "a", "b"}, "takes one request ID"},
		{[]string{"extend"}, "missing request ID"},
		{[]string{"apply", "--plan", missing, "--", "true"}, "plan file " + missing + " does not exist"},
		{[]string{"revoke", "--plan", missing}, "plan file " + missing + " does not exist"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errOut syncBuffer
			code := Main(context.Background(), tc.args, Streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut,
				Getenv: func(string) string { return "" }})
			if code != ExitUsage {
				t.Errorf("exit code: got %d; want %d; stderr %s", code, ExitUsage, errOut.String())
			}
			if !strings.Contains(errOut.String(), tc.want) {
				t.Errorf("stderr: got %q; want it to contain %q", errOut.String(), tc.want)
			}
		})
	}
}

// TestRotateRefusesVaultOutsideScope names one vault in --vault and
// another in --scope: rotate-secret must stop before it grants anything.
func TestRotateRefusesVaultOutsideScope(t *testing.T) {
	e := startCLIEnv(t, emulator.Config{})
	got := e.main(t, context.Background(), "rotate-secret", "--vault", "kv-nope", "--secret", "app-db-password",
		"--scope", testVault, "--justification", "typo")
	if got.code != ExitUsage {
		t.Errorf("exit code: got %d; want %d; stderr %s", got.code, ExitUsage, got.stderr)
	}
	if !strings.Contains(got.stderr, `invalid --vault "kv-nope"`) || !strings.Contains(got.stderr, "kv-elevate-demo") {
		t.Errorf("stderr: got %q; want both vault names", got.stderr)
	}
	if n := e.temporaryAssignments(); n != 0 {
		t.Errorf("temporary assignments: got %d; want 0", n)
	}
	// A vault URL of the same vault, and a scope above the vault, pass.
	for _, tc := range [][]string{
		{"--vault", e.srv.VaultURL("kv-elevate-demo"), "--scope", testVault},
		{"--vault", "kv-elevate-demo", "--scope", testGroup},
	} {
		if err := checkVaultInScopes(mustVaultURL(t, e, tc[1]), []string{tc[3]}); err != nil {
			t.Errorf("%v: %v; want accepted", tc, err)
		}
	}
}

func mustVaultURL(t *testing.T, e *cliEnv, nameOrURL string) string {
	t.Helper()
	if strings.HasPrefix(nameOrURL, "https://") {
		return nameOrURL
	}
	return e.srv.VaultURL(nameOrURL)
}

// TestActionsKeyFitsBrokerLimit derives an idempotency key for the
// longest repository and job names: it must stay within the broker's 255
// characters and still differ between run attempts.
func TestActionsKeyFitsBrokerLimit(t *testing.T) {
	env := map[string]string{"GITHUB_RUN_ID": "12345678901", "GITHUB_RUN_ATTEMPT": "1",
		"GITHUB_REPOSITORY": strings.Repeat("o", 39) + "/" + strings.Repeat("r", 100), "GITHUB_JOB": strings.Repeat("j", 100)}
	in := brokerclient.CreateInput{Roles: []string{"Reader"}, Scopes: []string{testStorage}}
	first := actionsIdempotencyKey(func(k string) string { return env[k] }, in)
	if len(first) > 255 {
		t.Errorf("key length: got %d; want at most 255", len(first))
	}
	env["GITHUB_RUN_ATTEMPT"] = "2"
	if again := actionsIdempotencyKey(func(k string) string { return env[k] }, in); again == first {
		t.Error("key of the second attempt: same as the first; want another")
	}
}
