package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/audit"
	"github.com/elevate-dev/elevate/internal/emulator"
)

// Names from the emulator's demo seed.
const (
	testGroup   = "/subscriptions/9d2c6e1f-4a3b-4c5d-8e7f-0a1b2c3d4e50/resourceGroups/rg-elevate-demo"
	testVault   = testGroup + "/providers/Microsoft.KeyVault/vaults/kv-elevate-demo"
	testStorage = testGroup + "/providers/Microsoft.Storage/storageAccounts/stelevatedemo"
)

// cliEnv is an emulator and the environment variables that point the CLI at
// it as the pipeline identity.
type cliEnv struct {
	srv   *emulator.Server
	vars  map[string]string
	audit string
}

func startCLIEnv(t *testing.T, cfg emulator.Config) *cliEnv {
	t.Helper()
	if cfg.Seed.Tenant.ID == "" {
		cfg.Seed = emulator.DefaultSeed()
	}
	srv, err := emulator.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start emulator: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	pipeline, err := demoPrincipal(cfg.Seed)
	if err != nil {
		t.Fatal(err)
	}
	auditPath := filepath.Join(t.TempDir(), "audit.jsonl")
	return &cliEnv{srv: srv, audit: auditPath, vars: map[string]string{
		"AZURE_TENANT_ID":      srv.TenantID(),
		"AZURE_CLIENT_ID":      pipeline.AppID,
		"AZURE_CLIENT_SECRET":  pipeline.ClientSecret,
		"AZURE_AUTHORITY_HOST": srv.URL() + "/",
		"ELEVATE_ARM_ENDPOINT": srv.URL(),
		"ELEVATE_VAULT_SUFFIX": srv.VaultSuffix(),
		"ELEVATE_CA_FILE":      srv.CAFile(),
		"ELEVATE_AUDIT_LOG":    auditPath,
		"ELEVATE_LOG_LEVEL":    "debug",
		"ELEVATE_LOG_FORMAT":   "json",
	}}
}

// result is what one cli.Main call returned and wrote.
type result struct {
	code   int
	stdout string
	stderr string
}

func (e *cliEnv) main(t *testing.T, ctx context.Context, args ...string) result {
	t.Helper()
	var out, errOut syncBuffer
	code := Main(ctx, args, Streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut,
		Getenv: func(k string) string { return e.vars[k] }})
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// temporaryAssignments counts the live assignments any elevate request made.
func (e *cliEnv) temporaryAssignments() int {
	n := 0
	for _, a := range e.srv.RoleAssignments() {
		if strings.HasPrefix(a.Description, "elevate request ") {
			n++
		}
	}
	return n
}

func TestMainRejectsInvalidFlags(t *testing.T) {
	e := startCLIEnv(t, emulator.Config{})
	run := func(flags ...string) []string { return append([]string{"run"}, flags...) }
	tests := []struct {
		name string
		args []string
		want []string // field, value and fix, as far as the message has them
	}{
		{"missing role", run("--scope", testStorage, "--justification", "j", "--", "true"),
			[]string{"missing --role", `--role "Key Vault Secrets Officer"`}},
		{"missing scope", run("--role", "Reader", "--justification", "j", "--", "true"),
			[]string{"missing --scope", "--scope /subscriptions/"}},
		{"missing justification", run("--role", "Reader", "--scope", testStorage, "--", "true"),
			[]string{"missing --justification", "--justification \""}},
		{"malformed scope", run("--role", "Reader", "--scope", "rg-elevate-demo", "--justification", "j", "--", "true"),
			[]string{"invalid --scope", `"rg-elevate-demo"`, "/subscriptions/"}},
		{"unknown pairing", run("--role", "Reader", "--scope", testStorage, "--pairing", "diagonal", "--justification", "j", "--", "true"),
			[]string{"--pairing", `"diagonal"`, "product"}},
		{"lengths do not pair", run("--role", "Reader", "--role", "Key Vault Secrets Officer",
			"--scope", testStorage, "--scope", testVault, "--scope", testGroup, "--justification", "j", "--", "true"),
			[]string{"--pairing product"}},
		{"invalid request id", run("--role", "Reader", "--scope", testStorage, "--justification", "j", "--request-id", "42", "--", "true"),
			[]string{"invalid --request-id", `"42"`, "UUID"}},
		{"invalid output", run("--role", "Reader", "--scope", testStorage, "--justification", "j", "-o", "yaml", "--", "true"),
			[]string{"invalid --output", `"yaml"`, "text or json"}},
		{"duration too short", run("--role", "Reader", "--scope", testStorage, "--justification", "j", "--duration", "1m", "--", "true"),
			[]string{"--duration", "1m", "5m"}},
		{"missing vault", []string{"rotate-secret", "--scope", testVault, "--secret", "app-db-password", "--justification", "j"},
			[]string{"missing --vault"}},
		{"rotation length too short", []string{"rotate-secret", "--vault", "kv-elevate-demo", "--scope", testVault,
			"--secret", "app-db-password", "--justification", "j", "--length", "8"},
			[]string{"invalid --length 8", "16 to 4096"}},
		{"missing command", run("--role", "Reader", "--scope", testStorage, "--justification", "j"),
			[]string{"put the command to run after `--`"}},
		{"unknown flag", run("--role", "Reader", "--scope", testStorage, "--justification", "j", "--colour", "red", "--", "true"),
			[]string{"--colour"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := e.main(t, context.Background(), tt.args...)
			if got.code != ExitUsage {
				t.Errorf("exit code: got %d; want %d; stderr %q", got.code, ExitUsage, got.stderr)
			}
			for _, want := range tt.want {
				if !strings.Contains(got.stderr, want) {
					t.Errorf("stderr %q: want it to contain %q", got.stderr, want)
				}
			}
			if n := e.temporaryAssignments(); n != 0 {
				t.Errorf("assignments after a usage error: got %d; want 0", n)
			}
		})
	}
}

func TestRunPassesExitCodeThrough(t *testing.T) {
	tests := []struct {
		name    string
		command []string
		want    int
	}{
		{"command succeeds", []string{"true"}, 0},
		{"command exits 7", []string{"sh", "-c", "exit 7"}, 7},
		{"command not found", []string{"/nonexistent/deploy"}, 127},
	}
	e := startCLIEnv(t, emulator.Config{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"run", "--role", "Reader", "--scope", testStorage, "--justification", "exit code test", "--"}, tt.command...)
			got := e.main(t, context.Background(), args...)
			if got.code != tt.want {
				t.Errorf("exit code: got %d; want %d; stderr %q", got.code, tt.want, got.stderr)
			}
			if n := e.temporaryAssignments(); n != 0 {
				t.Errorf("assignments left: got %d; want 0", n)
			}
		})
	}
	if _, err := audit.VerifyFile(e.audit); err != nil {
		t.Errorf("audit.VerifyFile: %v", err)
	}
}

// writeDumpScript writes a validation command that saves its arguments and
// environment to files in dir and exits with code.
func writeDumpScript(t *testing.T, dir, code string) string {
	t.Helper()
	path := filepath.Join(dir, "validate.sh")
	body := "#!/bin/sh\n" +
		`printf '%s\n' "$0" "$@" >> "` + dir + `/args"` + "\n" +
		`env >> "` + dir + `/env"` + "\n" +
		"exit " + code + "\n"
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		t.Fatalf("write script: %v", err)
	}
	return path
}

func TestRotateSecretNeverShowsValue(t *testing.T) {
	tests := []struct {
		name     string
		validate string // exit code of the validation command
		wantCode int
	}{
		{"validation passes", "0", ExitOK},
		{"validation fails", "1", ExitActionFailure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := startCLIEnv(t, emulator.Config{PropagationDelay: 30 * time.Millisecond})
			dir := t.TempDir()
			script := writeDumpScript(t, dir, tt.validate)
			before := e.srv.SecretVersions("kv-elevate-demo", "app-db-password")

			got := e.main(t, context.Background(), "rotate-secret", "--vault", "kv-elevate-demo",
				"--secret", "app-db-password", "--scope", testVault, "--justification", "rotation test",
				"--validate-command", script+" --from-test", "-o", "json")
			if got.code != tt.wantCode {
				t.Fatalf("exit code: got %d; want %d; stderr %q", got.code, tt.wantCode, got.stderr)
			}
			after := e.srv.SecretVersions("kv-elevate-demo", "app-db-password")
			if len(after) <= len(before) {
				t.Fatalf("secret versions: got %d; want more than %d", len(after), len(before))
			}
			newValue := after[len(before)].Value
			if len(newValue) != 32 {
				t.Fatalf("new value length: got %d; want 32", len(newValue))
			}
			if tt.validate != "0" && after[len(after)-1].Value != before[len(before)-1].Value {
				t.Errorf("current value after failed validation: got a new one; want the previous one restored")
			}

			args := readTestFile(t, filepath.Join(dir, "args"))
			env := readTestFile(t, filepath.Join(dir, "env"))
			if !strings.Contains(args, "--from-test") {
				t.Fatalf("validation arguments %q: want --from-test (the script did not run)", args)
			}
			if !strings.Contains(env, "ELEVATE_SECRET_VALUE="+newValue) {
				t.Errorf("validation environment: want ELEVATE_SECRET_VALUE set to the new value")
			}
			auditLog := readTestFile(t, e.audit)
			if !strings.Contains(got.stderr, `"level":"DEBUG"`) {
				t.Errorf("stderr has no debug JSON logs; the scan below would prove little")
			}
			for where, text := range map[string]string{
				"arguments": args, "stdout": got.stdout, "stderr": got.stderr, "audit log": auditLog,
			} {
				if strings.Contains(text, newValue) {
					t.Errorf("%s contains the new secret value", where)
				}
				if strings.Contains(text, "initial-demo-password") {
					t.Errorf("%s contains the previous secret value", where)
				}
			}
			if n := e.temporaryAssignments(); n != 0 {
				t.Errorf("assignments left: got %d; want 0", n)
			}
			if _, err := audit.VerifyFile(e.audit); err != nil {
				t.Errorf("audit.VerifyFile: %v", err)
			}
		})
	}
}

func readTestFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return string(data)
}
