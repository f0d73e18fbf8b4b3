package rotate_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/google/uuid"

	"github.com/elevate-dev/elevate/internal/azure"
	"github.com/elevate-dev/elevate/internal/emulator"
	"github.com/elevate-dev/elevate/internal/rotate"
)

const (
	demoVault    = "kv-elevate-demo"
	demoSecret   = "app-db-password"
	initialValue = "initial-demo-password"
	vaultScope   = "/subscriptions/9d2c6e1f-4a3b-4c5d-8e7f-0a1b2c3d4e50/resourceGroups/rg-elevate-demo/providers/Microsoft.KeyVault/vaults/kv-elevate-demo"
	pipelineName = "elevate-pipeline"
	officerGrant = "6a0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d"
	officerRole  = "Key Vault Secrets Officer"
)

// vaultEnv is the demo vault in an emulator, opened by the pipeline, which
// holds a standing Key Vault Secrets Officer assignment on it.
type vaultEnv struct {
	srv   *emulator.Server
	vault *azure.Vault
}

func startVault(t *testing.T) vaultEnv {
	t.Helper()
	seed := emulator.DefaultSeed()
	var pipeline emulator.Principal
	for _, p := range seed.Principals {
		if p.DisplayName == pipelineName {
			pipeline = p
		}
	}
	seed.RoleAssignments = append(seed.RoleAssignments, emulator.SeedAssignment{
		Name: officerGrant, Scope: vaultScope, RoleName: officerRole, PrincipalID: pipeline.ObjectID,
	})
	srv, err := emulator.Start(context.Background(), emulator.Config{Seed: seed})
	if err != nil {
		t.Fatalf("start emulator: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })

	env := azure.Environment{ARMEndpoint: srv.URL(), AuthorityHost: srv.URL() + "/",
		VaultSuffix: srv.VaultSuffix(), CAFile: srv.CAFile()}
	if err := env.CheckAndSetDefaults(); err != nil {
		t.Fatalf("environment: %v", err)
	}
	client, err := env.HTTPClient()
	if err != nil {
		t.Fatalf("HTTP client: %v", err)
	}
	t.Cleanup(client.CloseIdleConnections) // before the emulator stops
	vars := map[string]string{"AZURE_TENANT_ID": srv.TenantID(), "AZURE_CLIENT_ID": pipeline.AppID,
		"AZURE_CLIENT_SECRET": pipeline.ClientSecret}
	cred, _, err := azure.NewCredential(env, client, azure.CredentialConfig{
		Kind: azure.CredentialSecret, Getenv: func(k string) string { return vars[k] }})
	if err != nil {
		t.Fatalf("credential: %v", err)
	}
	url, err := env.VaultURL(demoVault)
	if err != nil {
		t.Fatalf("vault URL: %v", err)
	}
	retry := policy.RetryOptions{MaxRetries: 2, RetryDelay: 5 * time.Millisecond}
	vault, err := azure.NewVault(url, cred, env.ClientOptions(client, &retry))
	if err != nil {
		t.Fatalf("vault client: %v", err)
	}
	return vaultEnv{srv: srv, vault: vault}
}

// versions returns the secret's versions, oldest first.
func (v vaultEnv) versions(name string) []emulator.SecretVersion {
	return v.srv.SecretVersions(demoVault, name)
}

func (v vaultEnv) latest(t *testing.T, name string) emulator.SecretVersion {
	t.Helper()
	all := v.versions(name)
	if len(all) == 0 {
		t.Fatalf("secret %s has no versions", name)
	}
	return all[len(all)-1]
}

func TestRotationValueMatchesRequest(t *testing.T) {
	tests := []struct {
		charset  string
		length   int
		alphabet string
	}{
		{charset: "alphanumeric", length: 16, alphabet: rotate.Charsets["alphanumeric"]},
		{charset: "hex", length: 40, alphabet: "0123456789abcdef"},
		{charset: "symbols", length: 64, alphabet: rotate.Charsets["symbols"]},
		{charset: "custom:xy", length: 4096, alphabet: "xy"},
	}
	v := startVault(t)
	for _, tt := range tests {
		t.Run(tt.charset, func(t *testing.T) {
			before := v.latest(t, demoSecret)
			requestID := uuid.NewString()
			rot := &rotate.Rotation{Store: v.vault, Secret: demoSecret, RequestID: requestID,
				Length: tt.length, Charset: tt.charset}
			if err := rot.CheckAndSetDefaults(); err != nil {
				t.Fatalf("CheckAndSetDefaults: %v", err)
			}

			res, err := rot.Run(context.Background())
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			after := v.latest(t, demoSecret)
			if len(after.Value) != tt.length {
				t.Errorf("value length: got %d; want %d", len(after.Value), tt.length)
			}
			if bad := strings.Trim(after.Value, tt.alphabet); bad != "" {
				t.Errorf("value characters outside %q: got %q", tt.alphabet, bad)
			}
			if res.SecretVersion != after.Version {
				t.Errorf("result version: got %q; want the latest %q", res.SecretVersion, after.Version)
			}
			if res.PreviousSecretVersion != before.Version {
				t.Errorf("result previous version: got %q; want %q", res.PreviousSecretVersion, before.Version)
			}
			if got := after.Tags[rotate.TagRequestID]; got != requestID {
				t.Errorf("tag %s: got %q; want %q", rotate.TagRequestID, got, requestID)
			}
			if strings.Contains(res.Detail, after.Value) {
				t.Errorf("result detail %q contains the value", res.Detail)
			}
		})
	}
}

func TestRotationDrawsFromRandomSource(t *testing.T) {
	rot := &rotate.Rotation{Secret: demoSecret}
	if err := rot.CheckAndSetDefaults(); err != nil {
		t.Fatalf("CheckAndSetDefaults: %v", err)
	}
	if rot.Rand != rand.Reader {
		t.Errorf("default randomness source: got %T; want crypto/rand.Reader", rot.Rand)
	}

	// A broken source stops the rotation before anything is written.
	v := startVault(t)
	before := len(v.versions(demoSecret))
	rot = &rotate.Rotation{Store: v.vault, Secret: demoSecret, RequestID: uuid.NewString(),
		Rand: iotest.ErrReader(errors.New("entropy exhausted"))}
	if err := rot.CheckAndSetDefaults(); err != nil {
		t.Fatalf("CheckAndSetDefaults: %v", err)
	}
	_, err := rot.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "entropy exhausted") {
		t.Errorf("Run error: got %v; want the randomness source's error", err)
	}
	if after := len(v.versions(demoSecret)); after != before {
		t.Errorf("versions: got %d; want %d (nothing written)", after, before)
	}
}

// writeProbe writes a validation script that saves its arguments, its
// environment and its stdin to files in dir, then exits with code.
func writeProbe(t *testing.T, dir, code string) string {
	t.Helper()
	script := filepath.Join(dir, "probe.sh")
	body := "#!/bin/sh\n" +
		`printf '%s\n' "$0" "$@" > "` + dir + `/args"` + "\n" +
		`env > "` + dir + `/env"` + "\n" +
		`cat > "` + dir + `/stdin"` + "\n" +
		"exit " + code + "\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatalf("write probe: %v", err)
	}
	return script
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return string(data)
}

func TestValidationGetsValueOffArgv(t *testing.T) {
	v := startVault(t)
	for _, via := range []string{rotate.ViaEnv, rotate.ViaStdin} {
		t.Run(via, func(t *testing.T) {
			dir := t.TempDir()
			var stdout, stderr bytes.Buffer
			rot := &rotate.Rotation{Store: v.vault, Secret: demoSecret, RequestID: uuid.NewString(),
				Validate: writeProbe(t, dir, "0") + " --check", ValidateVia: via, Stdout: &stdout, Stderr: &stderr}
			if err := rot.CheckAndSetDefaults(); err != nil {
				t.Fatalf("CheckAndSetDefaults: %v", err)
			}
			if _, err := rot.Run(context.Background()); err != nil {
				t.Fatalf("Run: %v", err)
			}
			value := v.latest(t, demoSecret).Value

			args, env, stdin := readFile(t, dir+"/args"), readFile(t, dir+"/env"), readFile(t, dir+"/stdin")
			if !strings.Contains(args, "--check") {
				t.Fatalf("probe arguments %q: want --check (the probe did not run as expected)", args)
			}
			if strings.Contains(args, value) {
				t.Errorf("probe arguments contain the value")
			}
			inEnv := strings.Contains(env, rotate.EnvValue+"="+value+"\n")
			if got, want := inEnv, via == rotate.ViaEnv; got != want {
				t.Errorf("value in %s: got %t; want %t", rotate.EnvValue, got, want)
			}
			if got, want := stdin == value, via == rotate.ViaStdin; got != want {
				t.Errorf("value on stdin: got %t; want %t", got, want)
			}
			if !strings.Contains(env, "ELEVATE_SECRET_NAME="+demoSecret+"\n") {
				t.Errorf("probe environment: want ELEVATE_SECRET_NAME=%s", demoSecret)
			}
			if strings.Contains(stdout.String()+stderr.String(), value) {
				t.Errorf("rotation output contains the value")
			}
		})
	}
}

func TestValidationFailureRestoresPrevious(t *testing.T) {
	v := startVault(t)
	before := v.latest(t, demoSecret)
	dir := t.TempDir()
	requestID := uuid.NewString()
	var seen []string
	rot := &rotate.Rotation{Store: v.vault, Secret: demoSecret, RequestID: requestID,
		Validate: writeProbe(t, dir, "3"), OnValue: func(s string) { seen = append(seen, s) }}
	if err := rot.CheckAndSetDefaults(); err != nil {
		t.Fatalf("CheckAndSetDefaults: %v", err)
	}

	res, err := rot.Run(context.Background())
	if !errors.Is(err, rotate.ErrValidation) {
		t.Fatalf("Run error: got %v; want it to wrap ErrValidation", err)
	}
	all := v.versions(demoSecret)
	if len(all) < 3 {
		t.Fatalf("versions: got %d; want the original, the rejected and the restored one", len(all))
	}
	rejected, restored := all[len(all)-2], all[len(all)-1]
	if restored.Value != initialValue || restored.Value != before.Value {
		t.Errorf("current value after failed validation: got a different value; want the previous one restored")
	}
	if len(seen) != 1 || seen[0] != rejected.Value {
		t.Errorf("values passed to OnValue: got %d; want exactly the rejected new value", len(seen))
	}
	wantTags := map[string]string{rotate.TagRequestID: requestID, rotate.TagRollbackOf: rejected.Version,
		rotate.TagRestoredVer: before.Version}
	for k, want := range wantTags {
		if got := restored.Tags[k]; got != want {
			t.Errorf("restored version tag %s: got %q; want %q", k, got, want)
		}
	}
	if res.SecretVersion != restored.Version || res.PreviousSecretVersion != before.Version {
		t.Errorf("result versions: got %q (previous %q); want %q (previous %q)",
			res.SecretVersion, res.PreviousSecretVersion, restored.Version, before.Version)
	}
	if res.ExitCode == 0 {
		t.Errorf("result exit code: got 0; want non-zero")
	}
	if strings.Contains(err.Error(), rejected.Value) || strings.Contains(err.Error(), before.Value) {
		t.Errorf("error %q contains a secret value", err)
	}
	if !strings.Contains(err.Error(), "restored as version "+restored.Version) {
		t.Errorf("error %q: want it to name the restored version", err)
	}
}

func TestValidationFailureWithoutPrevious(t *testing.T) {
	v := startVault(t)
	rot := &rotate.Rotation{Store: v.vault, Secret: "brand-new-secret", RequestID: uuid.NewString(), Validate: "exit 1"}
	if err := rot.CheckAndSetDefaults(); err != nil {
		t.Fatalf("CheckAndSetDefaults: %v", err)
	}
	res, err := rot.Run(context.Background())
	if !errors.Is(err, rotate.ErrValidation) {
		t.Fatalf("Run error: got %v; want it to wrap ErrValidation", err)
	}
	if !strings.Contains(err.Error(), "no previous version") {
		t.Errorf("error %q: want it to say no previous version existed", err)
	}
	if got := len(v.versions("brand-new-secret")); got != 1 {
		t.Errorf("versions: got %d; want 1", got)
	}
	if res.PreviousSecretVersion != "" {
		t.Errorf("previous version: got %q; want none", res.PreviousSecretVersion)
	}
}

func TestCheckAndSetDefaultsRejectsBadOptions(t *testing.T) {
	tests := []struct {
		name string
		rot  rotate.Rotation
		want string
	}{
		{"secret name with dot", rotate.Rotation{Secret: "db.password"}, `invalid --secret "db.password"`},
		{"missing secret name", rotate.Rotation{}, `invalid --secret ""`},
		{"length too short", rotate.Rotation{Secret: "s", Length: 8}, "invalid --length 8: use 16 to 4096"},
		{"length too long", rotate.Rotation{Secret: "s", Length: 5000}, "invalid --length 5000"},
		{"unknown charset", rotate.Rotation{Secret: "s", Charset: "emoji"}, `invalid --charset "emoji"`},
		{"custom charset too small", rotate.Rotation{Secret: "s", Charset: "custom:a"}, "at least 2 characters"},
		{"value on argv", rotate.Rotation{Secret: "s", ValidateVia: "argv"}, `invalid --validate-via "argv": use env or stdin`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.rot.CheckAndSetDefaults()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("CheckAndSetDefaults: got %v; want an error containing %q", err, tt.want)
			}
		})
	}
}
