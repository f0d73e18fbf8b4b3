package evidence

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/audit"
	"github.com/elevate-dev/elevate/internal/azure"
	"github.com/elevate-dev/elevate/internal/emulator"
	"github.com/elevate-dev/elevate/internal/lifecycle"
)

// Names and ids from the emulator's demo seed.
const (
	subscription   = "9d2c6e1f-4a3b-4c5d-8e7f-0a1b2c3d4e50"
	resourceGroup  = "/subscriptions/" + subscription + "/resourceGroups/rg-elevate-demo"
	vaultName      = "kv-elevate-demo"
	vaultScope     = resourceGroup + "/providers/Microsoft.KeyVault/vaults/" + vaultName
	secretName     = "app-db-password"
	pipelineAppID  = "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e02"
	pipelineSecret = "demo-pipeline-secret"

	roleSecretsOfficer = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"
	roleReader         = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
)

// seedWith returns the demo seed with n extra storage accounts, one per pair
// a test may grant, and the vault's secret set to secretValue when it is not
// empty.
func seedWith(n int, secretValue string) (emulator.Seed, []string) {
	seed := emulator.DefaultSeed()
	rg := &seed.Subscriptions[0].ResourceGroups[0]
	scopes := make([]string, n)
	for i := range n {
		name := fmt.Sprintf("stevidence%03d", i)
		rg.Resources = append(rg.Resources, emulator.Resource{Type: "Microsoft.Storage/storageAccounts", Name: name})
		scopes[i] = resourceGroup + "/providers/Microsoft.Storage/storageAccounts/" + name
	}
	if secretValue != "" {
		for i := range rg.Resources {
			for j := range rg.Resources[i].Secrets {
				if rg.Resources[i].Secrets[j].Name == secretName {
					rg.Resources[i].Secrets[j].Value = secretValue
				}
			}
		}
	}
	return seed, scopes
}

// startEmulator starts an emulator that the test closes.
func startEmulator(tb testing.TB, cfg emulator.Config) *emulator.Server {
	tb.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	srv, err := emulator.Start(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("start emulator: %v", err)
	}
	tb.Cleanup(func() { _ = srv.Close() })
	return srv
}

// cliEnv is the environment of an elevate process that signs in to srv as
// the pipeline identity with its client secret.
func cliEnv(srv *emulator.Server, auditLog string) map[string]string {
	return map[string]string{
		"AZURE_TENANT_ID":      srv.TenantID(),
		"AZURE_CLIENT_ID":      pipelineAppID,
		"AZURE_CLIENT_SECRET":  pipelineSecret,
		"AZURE_AUTHORITY_HOST": srv.URL() + "/",
		"ELEVATE_ARM_ENDPOINT": srv.URL(),
		"ELEVATE_CA_FILE":      srv.CAFile(),
		"ELEVATE_VAULT_SUFFIX": srv.VaultSuffix(),
		"ELEVATE_AUDIT_LOG":    auditLog,
		"PATH":                 os.Getenv("PATH"),
	}
}

// leftAssignments counts the live assignments that request requestID made,
// found by the description Elevate writes on them.
func leftAssignments(srv *emulator.Server, requestID string) int {
	n := 0
	for _, a := range srv.RoleAssignments() {
		if strings.HasPrefix(a.Description, "elevate request "+requestID) {
			n++
		}
	}
	return n
}

// requestRecords returns the events of requestID's records in the audit log
// at path, after checking the hash chain.
func requestRecords(path, requestID string) ([]string, error) {
	if _, err := audit.VerifyFile(path); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var events []string
	for _, r := range decodeRecords(data) {
		if r.RequestID == requestID {
			events = append(events, r.Event)
		}
	}
	return events, nil
}

// decodeRecords decodes the lines of a verified audit log.
func decodeRecords(data []byte) []audit.Record {
	var out []audit.Record
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		var r audit.Record
		if err := json.Unmarshal(line, &r); err == nil {
			out = append(out, r)
		}
	}
	return out
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// crashBinary builds elevate with the crashpoints tag once per test process.
func crashBinary(tb testing.TB) string {
	tb.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "elevate-crash-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "elevate")
		out, err := exec.Command("go", "build", "-tags", "crashpoints", "-o", binPath,
			"github.com/elevate-dev/elevate/cmd/elevate").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build -tags crashpoints: %w\n%s", err, out)
		}
	})
	if binErr != nil {
		tb.Fatalf("build elevate: %v", binErr)
	}
	return binPath
}

// procResult is how one elevate process ended.
type procResult struct {
	Code   int            // exit code, -1 when a signal ended it
	Signal syscall.Signal // 0 unless a signal ended it
	Stdout string
	Stderr string
}

// runBinary runs bin with env and args in its own process group, and kills
// the group when bin ends, so a command that outlived a crashed elevate
// does not linger. timeout bounds the whole run.
func runBinary(tb testing.TB, bin string, env map[string]string, timeout time.Duration, args ...string) procResult {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err := cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	res := procResult{Stdout: stdout.String(), Stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		res.Code = exit.ExitCode()
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.Signal = ws.Signal()
		}
	default:
		tb.Fatalf("run %s %v: %v", bin, args, err)
	}
	if ctx.Err() != nil {
		tb.Fatalf("elevate %s timed out after %s\nstderr:\n%s", strings.Join(args, " "), timeout, res.Stderr)
	}
	return res
}

// testRetry keeps the SDK's retries short: three tries per call, with a
// MaxRetryDelay of 2s so that `Retry-After: 1` is honoured.
var testRetry = policy.RetryOptions{MaxRetries: 2, RetryDelay: 5 * time.Millisecond, MaxRetryDelay: 2 * time.Second}

// fastOptions are engine options scaled down so that a lifecycle against the
// emulator takes tens of milliseconds.
func fastOptions() lifecycle.Options {
	return lifecycle.Options{
		PrincipalWait:    3 * time.Second,
		EffectiveTimeout: 5 * time.Second,
		RevokeAttempts:   4,
		VerifyTimeout:    3 * time.Second,
		BackoffBase:      5 * time.Millisecond,
		BackoffMax:       40 * time.Millisecond,
		RevokeTimeout:    15 * time.Second,
	}
}

// session is the pipeline's in-process connection to an emulator, built as
// the CLI builds it: environment, CA file, client secret, SDK clients.
type session struct {
	srv    *emulator.Server
	env    azure.Environment
	client *http.Client
	cred   azcore.TokenCredential
	rbac   *azure.RBAC
	caller azure.Caller
}

// connect signs in to srv as the pipeline.
func connect(tb testing.TB, srv *emulator.Server) *session {
	tb.Helper()
	env := azure.Environment{ARMEndpoint: srv.URL(), AuthorityHost: srv.URL() + "/",
		VaultSuffix: srv.VaultSuffix(), CAFile: srv.CAFile()}
	if err := env.CheckAndSetDefaults(); err != nil {
		tb.Fatalf("environment: %v", err)
	}
	base, err := env.HTTPClient()
	if err != nil {
		tb.Fatalf("HTTP client: %v", err)
	}
	tb.Cleanup(base.CloseIdleConnections)
	client := base
	vars := map[string]string{"AZURE_TENANT_ID": srv.TenantID(), "AZURE_CLIENT_ID": pipelineAppID,
		"AZURE_CLIENT_SECRET": pipelineSecret}
	cred, _, err := azure.NewCredential(env, client, azure.CredentialConfig{
		Kind: azure.CredentialSecret, Getenv: func(k string) string { return vars[k] }})
	if err != nil {
		tb.Fatalf("credential: %v", err)
	}
	retry := testRetry
	rbac, err := azure.NewRBAC(cred, env.ARMOptions(client, &retry))
	if err != nil {
		tb.Fatalf("RBAC client: %v", err)
	}
	caller, err := azure.WhoAmI(context.Background(), cred, env)
	if err != nil {
		tb.Fatalf("sign in: %v", err)
	}
	return &session{srv: srv, env: env, client: client, cred: cred, rbac: rbac, caller: caller}
}

// vault opens the demo vault's data plane.
func (s *session) vault(tb testing.TB) *azure.Vault {
	tb.Helper()
	url, err := s.env.VaultURL(vaultName)
	if err != nil {
		tb.Fatalf("vault URL: %v", err)
	}
	retry := testRetry
	v, err := azure.NewVault(url, s.cred, s.env.ClientOptions(s.client, &retry))
	if err != nil {
		tb.Fatalf("vault client: %v", err)
	}
	return v
}

// engine builds a lifecycle engine that audits to path and logs to logs.
func (s *session) engine(tb testing.TB, path string, logs io.Writer, opts lifecycle.Options) (*lifecycle.Engine, *audit.Log) {
	tb.Helper()
	log, err := audit.Open(path)
	if err != nil {
		tb.Fatalf("open audit log: %v", err)
	}
	tb.Cleanup(func() { _ = log.Close() })
	if logs == nil {
		logs = io.Discard
	}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := lifecycle.New(lifecycle.Config{ARM: s.rbac, Audit: log, CallerID: s.caller.ObjectID,
		Logger: logger, Options: opts})
	return e, log
}

// roles resolves role GUIDs into the map Engine.Run takes.
func roles(tb testing.TB, e *lifecycle.Engine, guids ...string) map[string]lifecycle.Role {
	tb.Helper()
	var refs []access.RoleRef
	for _, g := range guids {
		ref, err := access.ParseRoleRef(g)
		if err != nil {
			tb.Fatalf("role %q: %v", g, err)
		}
		refs = append(refs, ref)
	}
	resolved, err := e.ResolveRoles(context.Background(), refs, "/subscriptions/"+subscription)
	if err != nil {
		tb.Fatalf("resolve roles: %v", err)
	}
	out := make(map[string]lifecycle.Role, len(resolved))
	for _, r := range resolved {
		out[r.GUID] = r
	}
	return out
}

// pairs builds one pair of role at each scope.
func pairs(tb testing.TB, role string, scopes ...string) []access.Pair {
	tb.Helper()
	out := make([]access.Pair, len(scopes))
	for i, s := range scopes {
		id, err := access.ParseResourceID(s)
		if err != nil {
			tb.Fatalf("scope %q: %v", s, err)
		}
		out[i] = access.Pair{RoleID: role, Scope: id}
	}
	return out
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// readFileIfExists reads path, returning nil data and no error when it does
// not exist.
func readFileIfExists(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return data, err
}
