package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	examplePolicy = "../../examples/policy/policy.yaml"
	exampleCases  = "../../examples/policy/cases.yaml"
)

// failingCases contains one case that passes and one that expects a grant
// the example policy does not give, so the command must report a failure.
const failingCases = `
cases:
  - name: pipeline rotates own secret
    input:
      requester: {repository: contoso/payments, ref: refs/heads/main, environment: production}
      pairs:
        - role: Key Vault Secrets Officer
          scope: /subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-payments-prod/providers/Microsoft.KeyVault/vaults/kv-payments-prod
      duration: 10m
      time: 2025-03-04T10:00:00Z
    want: {outcome: auto_approve, rule: pipeline-rotates-own-secret}
  - name: wrong rule expected
    input:
      requester: {repository: contoso/payments, ref: refs/heads/main, environment: production}
      pairs:
        - role: Owner
          scope: /subscriptions/00000000-0000-0000-0000-000000000000
      duration: 10m
      time: 2025-03-04T10:00:00Z
    want: {outcome: auto_approve, rule: pipeline-rotates-own-secret}
`

func runPolicyTest(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Main(context.Background(), append([]string{"policy", "test"}, args...),
		Streams{Out: &out, ErrOut: &errOut, Getenv: func(string) string { return "" }})
	return code, out.String(), errOut.String()
}

func writeTemp(t *testing.T, name, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestPolicyTestCommand(t *testing.T) {
	t.Run("example cases all pass", func(t *testing.T) {
		code, stdout, stderr := runPolicyTest(t, examplePolicy, exampleCases)
		if code != ExitOK {
			t.Fatalf("exit code: got %d; want %d; stdout %q, stderr %q", code, ExitOK, stdout, stderr)
		}
		if strings.Contains(stdout, "FAIL") {
			t.Errorf("stdout: got %q; want no FAIL line", stdout)
		}
		if !strings.Contains(stdout, "PASS  pipeline rotates own secret\n") {
			t.Errorf("stdout: got %q; want a PASS line per case", stdout)
		}
		if !strings.Contains(stdout, " passed, 0 failed\n") {
			t.Errorf("stdout: got %q; want a summary with 0 failed", stdout)
		}
	})

	t.Run("failing case exits one", func(t *testing.T) {
		cases := writeTemp(t, "cases.yaml", failingCases)
		code, stdout, stderr := runPolicyTest(t, examplePolicy, cases)
		if code != ExitFailure {
			t.Fatalf("exit code: got %d; want %d; stdout %q", code, ExitFailure, stdout)
		}
		for _, want := range []string{
			"PASS  pipeline rotates own secret\n",
			"FAIL  wrong rule expected (line 12): ",
			`outcome got "deny"; want "auto_approve"`,
			`rule got "owner-two-platform-admins"; want "pipeline-rotates-own-secret"`,
			"decision message: rule \"owner-two-platform-admins\" requires a ticket",
			"1 passed, 1 failed\n",
		} {
			if !strings.Contains(stdout, want) {
				t.Errorf("stdout: got %q; want it to contain %q", stdout, want)
			}
		}
		if !strings.Contains(stderr, "1 of 2 policy cases failed") {
			t.Errorf("stderr: got %q; want the failure count", stderr)
		}
	})

	t.Run("bad policy is usage error", func(t *testing.T) {
		policy := writeTemp(t, "policy.yaml", "version: 1\nrules:\n  - id: a\n    outcome: deny\n    match:\n      condition: 'request.'\n")
		code, _, stderr := runPolicyTest(t, policy, exampleCases)
		if code != ExitUsage {
			t.Fatalf("exit code: got %d; want %d; stderr %q", code, ExitUsage, stderr)
		}
		for _, want := range []string{"line 6", `rule "a"`, "condition does not compile"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("stderr: got %q; want it to contain %q", stderr, want)
			}
		}
	})

	t.Run("missing case file", func(t *testing.T) {
		code, _, stderr := runPolicyTest(t, examplePolicy, filepath.Join(t.TempDir(), "none.yaml"))
		if code != ExitUsage {
			t.Errorf("exit code: got %d; want %d; stderr %q", code, ExitUsage, stderr)
		}
	})

	t.Run("wrong argument count", func(t *testing.T) {
		if code, _, _ := runPolicyTest(t, examplePolicy); code == ExitOK {
			t.Errorf("exit code: got %d; want non-zero", code)
		}
	})
}
